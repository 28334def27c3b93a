"""Stripe sandbox: billing credits applied to invoices, and the credit balance ledger.

Stripe's billing credits (2024) as of the 2026 API: a credit grant's balance moves by
``billing.credit_balance_transaction`` objects, and the balance pays invoice lines of
metered prices *before tax*:

* creating a grant credits it (``credit.type`` ``credits_granted``, effective at the
  grant's ``effective_at``);
* finalizing an invoice applies the customer's grants to each line of a metered price
  (scope ``price_type: metered``) or of a price the grant lists: only grants effective at
  the finalization time, not expired or voided by then, in the invoice's currency; in
  Stripe's order of use: ``priority`` ascending (default 50), then the soonest
  ``expires_at`` (none last), then the oldest ``effective_at`` and ``created``. Each
  application is a debit ``credits_applied`` naming the invoice and the line; the line
  gets ``pretax_credit_amounts``, the invoice ``total_pretax_credit_amounts``, and its
  ``total`` / ``amount_due`` / ``amount_remaining`` drop by the credit (``subtotal`` does
  not);
* a grant whose ``expires_at`` passed with a balance left gets one debit
  ``credits_expired`` effective at ``expires_at``. Expiries are settled whenever time is
  looked at (the clock advancing, invoice finalization, reads of events, grants and
  credit balances), and exactly once per grant;
* voiding a grant debits what is left (``credits_voided``); voiding an invoice gives its
  applied credits back (``credits_application_invoice_voided``).

Each transaction emits ``billing.credit_balance_transaction.created``. Invoices without
credits keep the exact 2023-08-16 shape (no ``pretax_credit_amounts`` keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from subledger.core.sandbox import Call, Router
from subledger.plugins.stripe.sandbox_support import (
    LIST_PARAMS,
    Params,
    invalid,
    list_object,
    missing,
    not_found,
)

if TYPE_CHECKING:
    from subledger.plugins.stripe.sandbox import StripeSandbox

TXNS = "credit_balance_transactions"
DEFAULT_PRIORITY = 50


def routes(sb: StripeSandbox, r: Router) -> None:
    r.add("GET", "/v1/billing/credit_balance_transactions", lambda c: list_transactions(sb, c))
    r.add("GET", "/v1/billing/credit_balance_transactions/{id}", lambda c: get_transaction(sb, c))
    r.add("GET", "/v1/billing/credit_balance_summary", lambda c: balance_summary(sb, c))


# -- the ledger -------------------------------------------------------------------------


def _money(currency: str, value: int) -> dict[str, Any]:
    return {"monetary": {"currency": currency, "value": value}, "type": "monetary"}


def _record(
    sb: StripeSandbox,
    grant: dict[str, Any],
    side: str,
    kind: str,
    amount: int,
    at: int,
    *,
    detail: dict[str, Any] | None = None,
    created: int | None = None,
    request: Any = None,
) -> dict[str, Any]:
    """Store one transaction of ``grant`` (``side`` credit or debit) and emit its event."""
    currency = grant["amount"]["monetary"]["currency"]
    body: dict[str, Any] = {"amount": _money(currency, amount), "type": kind}
    if side == "credit":
        body["credits_application_invoice_voided"] = detail if kind == "credits_application_invoice_voided" else None
    else:
        body["credits_applied"] = detail if kind == "credits_applied" else None
    txn = {
        "id": sb.new_id("cbtxn_test_"),
        "object": "billing.credit_balance_transaction",
        "created": created if created is not None else at,
        "credit": body if side == "credit" else None,
        "credit_grant": grant["id"],
        "debit": body if side == "debit" else None,
        "effective_at": at,
        "livemode": False,
        "test_clock": None,
        "type": side,
        "_customer": grant["customer"],
    }
    sb.store.put(TXNS, txn)
    sb.emit("billing.credit_balance_transaction.created", TXNS, txn, request=request, created=txn["created"])
    return txn


def _signed(txn: dict[str, Any]) -> int:
    side = txn["credit"] if txn["type"] == "credit" else txn["debit"]
    value = int(side["amount"]["monetary"]["value"])
    return value if txn["type"] == "credit" else -value


def transactions(sb: StripeSandbox, grant_id: str) -> list[dict[str, Any]]:
    """The grant's transactions, oldest first."""
    return sb.store.ordered(TXNS, where=lambda t: t["credit_grant"] == grant_id, newest_first=False)


def balance(sb: StripeSandbox, grant_id: str, at: int | None = None) -> int:
    """The grant's ledger balance (of the transactions effective at ``at``, when given)."""
    return sum(_signed(t) for t in transactions(sb, grant_id) if at is None or t["effective_at"] <= at)


def grant_created(sb: StripeSandbox, grant: dict[str, Any], *, request: Any = None) -> None:
    """The credit of a new grant (``credits_granted``)."""
    _record(sb, grant, "credit", "credits_granted", grant["amount"]["monetary"]["value"], grant["effective_at"],
            created=grant["created"], request=request)


def grant_voided(sb: StripeSandbox, grant: dict[str, Any], *, request: Any = None) -> None:
    """Void: debit what is left (``credits_voided``), once."""
    settle(sb, grant["voided_at"])
    if grant.get("_closed"):
        return
    left = balance(sb, grant["id"])
    grant["_closed"] = "voided"
    if left > 0:
        _record(sb, grant, "debit", "credits_voided", left, grant["voided_at"], request=request)


def settle(sb: StripeSandbox, until: int | None = None, *, customer: str | None = None) -> None:
    """Expire every grant whose ``expires_at`` is at or before ``until`` (default: now), once.

    The leftover balance is debited (``credits_expired``) effective at ``expires_at``.
    While a fixture seeds history (:func:`~subledger.plugins.stripe.sandbox_seed.seed`),
    only settlements at a given time happen: the clock already shows "today", and
    expiring a grant before the backdated invoices it pays are billed would be wrong.
    """
    if until is None and sb.seeding_history:
        return
    until = sb.now() if until is None else until
    for grant in sb.store.ordered("credit_grants", newest_first=False):
        if grant.get("_closed") or grant["expires_at"] is None or grant["expires_at"] > until:
            continue
        if customer is not None and grant["customer"] != customer:
            continue
        if grant["voided_at"] is not None and grant["voided_at"] <= grant["expires_at"]:
            continue  # closed by the void
        grant["_closed"] = "expired"
        left = balance(sb, grant["id"])
        if left > 0:
            _record(sb, grant, "debit", "credits_expired", left, grant["expires_at"])


def _usable(grant: dict[str, Any], currency: str, at: int) -> bool:
    return (
        grant["amount"]["monetary"]["currency"] == currency
        and grant["effective_at"] <= at
        and (grant["expires_at"] is None or grant["expires_at"] > at)
        and (grant["voided_at"] is None or grant["voided_at"] > at)
    )


def _applies_to(grant: dict[str, Any], price: dict[str, Any] | None) -> bool:
    if not price or not price.get("recurring"):
        return False
    scope = grant["applicability_config"]["scope"]
    if scope.get("prices"):
        return price["id"] in {p["id"] for p in scope["prices"]}
    return scope.get("price_type") == "metered" and price["recurring"].get("usage_type") == "metered"


def order_of_use(grant: dict[str, Any]) -> tuple[Any, ...]:
    """Stripe's order: priority, soonest expiry (none last), oldest effective, oldest created."""
    expires = grant["expires_at"]
    return (grant.get("priority", DEFAULT_PRIORITY), expires is None, expires or 0, grant["effective_at"],
            grant["created"])


def apply_to_invoice(sb: StripeSandbox, inv: dict[str, Any], at: int, *, request: Any = None) -> int:
    """Pay the invoice's metered lines from the customer's grants (at finalization). Returns the credit."""
    settle(sb, at, customer=inv["customer"])  # only this customer's: seeding bills one history at a time
    grants = sorted(
        (g for g in sb.store.ordered("credit_grants", newest_first=False)
         if g["customer"] == inv["customer"] and _usable(g, inv["currency"], at)),
        key=order_of_use,
    )
    if not grants:
        return 0
    left = {g["id"]: balance(sb, g["id"]) for g in grants}
    applied = 0
    for lid in inv["_lines"]:
        line = sb.store.get("invoice_lines", lid)
        if line is None or line["amount"] <= 0:
            continue
        price = sb.store.get("prices", line["price"]) if line.get("price") else None
        due = line["amount"]
        for grant in grants:
            if due <= 0:
                break
            take = min(due, left[grant["id"]])
            if take <= 0 or not _applies_to(grant, price):
                continue
            txn = _record(sb, grant, "debit", "credits_applied", take, at,
                          detail={"invoice": inv["id"], "invoice_line_item": lid}, request=request)
            left[grant["id"]] -= take
            due -= take
            applied += take
            line.setdefault("pretax_credit_amounts", []).append({
                "amount": take, "credit_balance_transaction": txn["id"], "discount": None, "margin": None,
                "type": "credit_balance_transaction",
            })
            inv.setdefault("total_pretax_credit_amounts", []).append({
                "amount": take, "credit_balance_transaction": txn["id"], "discount": None, "margin": None,
                "type": "credit_balance_transaction",
            })
    return applied


def invoice_voided(sb: StripeSandbox, inv: dict[str, Any], at: int, *, request: Any = None) -> None:
    """Give back the credits a voided invoice used (``credits_application_invoice_voided``)."""
    for entry in inv.get("total_pretax_credit_amounts") or []:
        txn = sb.store.get(TXNS, entry["credit_balance_transaction"])
        grant = sb.store.get("credit_grants", txn["credit_grant"]) if txn else None
        if txn is None or grant is None:
            continue
        _record(sb, grant, "credit", "credits_application_invoice_voided", entry["amount"], at,
                detail=dict(txn["debit"]["credits_applied"]), request=request)


def credited(inv: dict[str, Any]) -> int:
    """What credit grants paid of an invoice."""
    return sum(int(e["amount"]) for e in inv.get("total_pretax_credit_amounts") or [])


# -- endpoints --------------------------------------------------------------------------


def list_transactions(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer", "customer_account", "credit_grant"))
    customer = p.str("customer")
    if not customer and not p.str("customer_account"):
        raise missing("customer")
    grant_id = p.str("credit_grant")
    if grant_id is not None:
        grant = sb.store.get("credit_grants", grant_id)
        if grant is None:
            raise not_found("billing credit grant", grant_id, "credit_grant")
    settle(sb)
    return list_object(
        sb, p, TXNS, "/v1/billing/credit_balance_transactions", label="billing credit balance transaction",
        where=lambda t: t["_customer"] == customer and (grant_id is None or t["credit_grant"] == grant_id),
    )


def get_transaction(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    settle(sb)
    return sb.respond(TXNS, sb.require(TXNS, call["id"], "billing credit balance transaction"),
                      Params(call.params, ()))


def balance_summary(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("customer", "customer_account", "filter"))
    customer = p.str("customer")
    if not customer:
        raise missing("customer")
    if sb.store.get("customers", customer) is None:
        raise not_found("customer", customer, "customer")
    filt = p.hash("filter", ("type", "credit_grant", "applicability_scope"), required=True)
    assert filt is not None
    kind = filt.enum("type", ("applicability_scope", "credit_grant"), required=True)
    settle(sb)
    now = sb.now()
    grants = [g for g in sb.store.ordered("credit_grants", newest_first=False) if g["customer"] == customer]
    if kind == "credit_grant":
        gid = filt.str("credit_grant")
        if not gid:
            raise missing("filter[credit_grant]")
        grants = [g for g in grants if g["id"] == gid]
        if not grants:
            raise not_found("billing credit grant", gid, "filter[credit_grant]")
    else:
        scope = filt.hash("applicability_scope", ("price_type", "prices"), required=True)
        assert scope is not None
        price_type = scope.enum("price_type", ("metered",))
        prices = {str((pr or {}).get("id")) for pr in scope.array("prices") or [] if isinstance(pr, dict)}
        if price_type is None and not prices:
            raise missing("filter[applicability_scope][price_type]")
        if price_type and prices:
            raise invalid("filter[applicability_scope]", "You may only specify one of price_type and prices.")

        def matches(g: dict[str, Any]) -> bool:
            own = g["applicability_config"]["scope"]
            if price_type:
                return own.get("price_type") == price_type
            return bool(prices & {pr["id"] for pr in own.get("prices") or []})

        grants = [g for g in grants if matches(g)]
    totals: dict[str, list[int]] = {}
    for g in grants:
        cur = g["amount"]["monetary"]["currency"]
        ledger = balance(sb, g["id"])
        available = ledger if _usable(g, cur, now) else 0
        pair = totals.setdefault(cur, [0, 0])
        pair[0] += available
        pair[1] += ledger
    return sb.expand({
        "object": "billing.credit_balance_summary",
        "balances": [{"available_balance": _money(cur, a), "ledger_balance": _money(cur, ledger)}
                     for cur, (a, ledger) in sorted(totals.items())],
        "customer": customer,
        "customer_account": None,
        "livemode": False,
    }, p.expand())

