"""Stripe objects -> canonical records (customers, meters, invoices, credit notes, payments, grants).

Each function takes the object as a plain dict (``StripeObject.to_dict()``) and the
connection name, and fills provenance: ``system`` is the connection, ``external_id`` the
Stripe id, ``payload_hash`` the hash of the object as read. The mapping reads both the
``2023-08-16`` shapes the connector pins and the newer shapes (``parent``, ``pricing``,
``quantity_decimal`` on invoice lines), so an account-level version change is harmless.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError
from subledger.core.model import (
    CreditGrant,
    CreditLedgerEntry,
    CreditNote,
    Customer,
    Invoice,
    InvoiceLine,
    Meter,
    Payment,
    PaymentApplication,
    evidence_ref,
    payload_hash,
    record_id,
)
from subledger.core.money import exponent, normalize_currency

# Where Stripe's smallest unit differs from ISO 4217's minor unit (Stripe counts ISK in
# hundredths, ISO in whole krónur).
STRIPE_EXPONENT_OVERRIDES = {"ISK": 2}

# Stripe meter formula -> canonical aggregation of the *daily buckets* the usage stream
# yields: counts arrive pre-counted per day, so they add up.
METER_AGGREGATION = {"sum": "sum", "count": "sum", "last": "latest"}


class UnmappableError(ValueError):
    """A Stripe object the canonical model cannot hold as it is; ``fix`` says what to do."""

    def __init__(self, message: str, *, fix: str, field: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix
        self.field = field


def record_problems(item: Any) -> list[str]:
    """What keeps a mapped record (or a group's records) from being stored: field limits, types.

    Table models skip validation when built, so a 300-character id would only fail at the
    database, taking the whole batch with it; checking here rejects just that record.
    """
    from pydantic import ValidationError
    from sqlmodel import SQLModel

    from subledger.core.connector import RecordGroup

    records = [item.record, *item.children] if isinstance(item, RecordGroup) else [item]
    problems = []
    for record in records:
        if not isinstance(record, SQLModel):
            continue
        try:
            type(record).model_validate(record.model_dump())
        except ValidationError as exc:
            problems += [f"{type(record).__name__}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                         for err in exc.errors(include_input=False)]
    return problems


def ts(value: int | None) -> datetime | None:
    """Unix seconds -> aware UTC datetime."""
    return None if value is None else datetime.fromtimestamp(int(value), UTC)


def day(value: int | None) -> date | None:
    dt = ts(value)
    return None if dt is None else dt.date()


def last_day(start: int | None, end: int | None) -> date | None:
    """The inclusive last service day of a Stripe period ``[start, end)``."""
    if end is None:
        return None
    if start is not None and end <= start:
        return day(start)
    return (datetime.fromtimestamp(int(end), UTC) - timedelta(seconds=1)).date()


def ref_id(value: Any) -> str | None:
    """The id of a reference that may be expanded (``"cus_1"`` or ``{"id": "cus_1", ...}``)."""
    if isinstance(value, dict):
        return value.get("id")
    return value


def currency_code(value: str, *, field: str = "currency") -> str:
    """An ISO currency code from Stripe's lower-case one; UnmappableError naming ``field`` when it is none."""
    try:
        return normalize_currency(value)
    except ConfigError as exc:
        raise UnmappableError(exc.message, fix=exc.fix or "correct the currency in Stripe", field=field) from None


def minor(amount: int | None, currency: str) -> int:
    """A Stripe amount in the ISO minor unit of ``currency`` (they differ for a few codes)."""
    if amount is None:
        return 0
    code = currency_code(currency)
    stripe_exp = STRIPE_EXPONENT_OVERRIDES.get(code)
    if stripe_exp is None:
        return int(amount)
    shift = stripe_exp - exponent(code)
    value, remainder = divmod(int(amount), 10**shift)
    if remainder:
        raise UnmappableError(
            f"{amount} {code} (Stripe hundredths) is not a whole ISO minor unit",
            fix=f"Stripe amounts in {code} must be divisible by {10**shift}; correct the amount in Stripe",
        )
    return value


def major_price(unit_decimal: Any, currency: str) -> Decimal:
    """A Stripe unit amount (minor units, possibly fractional) as a major-unit Decimal price."""
    code = currency_code(currency)
    places = STRIPE_EXPONENT_OVERRIDES.get(code, exponent(code))
    return Decimal(str(unit_decimal)).scaleb(-places)


def _hash(obj: dict[str, Any]) -> str:
    return payload_hash(obj)


def _link(metadata: dict[str, Any] | None, key: str) -> str | None:
    value = (metadata or {}).get(key)
    return str(value) if value else None


# -- customers and meters -----------------------------------------------------------------


def customer(obj: dict[str, Any], system: str, *, link_key: str = "subledger_id") -> Customer:
    email = obj.get("email") or None
    address = obj.get("address") or {}
    deleted = bool(obj.get("deleted"))
    return Customer(
        id=record_id("cus", system, obj["id"]),
        system=system,
        external_id=obj["id"],
        fetched_at=utcnow(),
        payload_hash=_hash(obj),
        name=obj.get("name") or obj.get("description") or "",
        email=email,
        email_domain=email.rsplit("@", 1)[-1].lower() if email and "@" in email else None,
        currency=currency_code(obj["currency"]) if obj.get("currency") else None,
        country=(address.get("country") or None) if isinstance(address, dict) else None,
        canonical_hint=_link(obj.get("metadata"), link_key),
        attributes={
            k: v for k, v in {
                "metadata": obj.get("metadata") or {},
                "description": obj.get("description"),
                "phone": obj.get("phone"),
                "balance_minor": obj.get("balance"),
                "delinquent": obj.get("delinquent"),
                "tax_exempt": obj.get("tax_exempt"),
                "deleted": deleted or None,
                "created": obj.get("created"),
            }.items() if v is not None
        },
    )


def meter(obj: dict[str, Any], system: str) -> Meter:
    formula = obj["default_aggregation"]["formula"]
    if formula not in METER_AGGREGATION:
        raise UnmappableError(
            f"meter aggregation formula {formula!r} is not supported",
            fix="use a sum, count or last meter, or tell subledger's maintainers about this formula",
            field="default_aggregation.formula",
        )
    return Meter(
        id=record_id("mtr", system, obj["id"]),
        system=system,
        external_id=obj["id"],
        fetched_at=utcnow(),
        payload_hash=_hash(obj),
        key=obj["event_name"],
        name=obj.get("display_name") or obj["event_name"],
        unit="unit",
        aggregation=METER_AGGREGATION[formula],
    )


# -- invoices -----------------------------------------------------------------------------


def invoice_subscription(obj: dict[str, Any]) -> str | None:
    """The invoice's subscription, in the pinned or the newer (``parent``) shape."""
    if obj.get("subscription"):
        return ref_id(obj["subscription"])
    parent = obj.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return ref_id(details.get("subscription"))


def _line_parent(line: dict[str, Any]) -> dict[str, Any]:
    parent = line.get("parent") or {}
    return parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}


def line_price(line: dict[str, Any]) -> dict[str, Any] | str | None:
    """The line's price (an object when the pinned version embeds it, else an id)."""
    if line.get("price"):
        return line["price"]
    pricing = line.get("pricing") or {}
    details = pricing.get("price_details") or {}
    return details.get("price")


def line_proration(line: dict[str, Any]) -> bool:
    if "proration" in line:
        return bool(line["proration"])
    return bool(_line_parent(line).get("proration"))


def line_quantity(line: dict[str, Any]) -> Decimal | None:
    if line.get("quantity_decimal") is not None:
        return Decimal(str(line["quantity_decimal"]))
    return None if line.get("quantity") is None else Decimal(int(line["quantity"]))


CONTRACT_LINK_KEY = "subledger_contract"
"""Invoice metadata naming the contract an invoice subledger wrote is for (a correction)."""


def line_link(line: dict[str, Any], key: str) -> str | None:
    """``metadata[key]`` of a line, else of its invoice item (when expanded).

    subledger writes ``subledger_component``, ``subledger_meter``, ``subledger_kind`` and
    ``subledger_quantity`` on the invoice items it creates; Stripe shows an invoice item's
    metadata on its line.
    """
    item = line.get("invoice_item")
    return _link(line.get("metadata"), key) or (_link(item.get("metadata"), key) if isinstance(item, dict) else None)


def line_explicit_quantity(line: dict[str, Any]) -> Decimal | None:
    """The quantity subledger wrote on a line (``subledger_quantity``); None when absent or not a number."""
    text = line_link(line, "subledger_quantity")
    if text is None:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    return value if value.is_finite() else None


def line_kind(line: dict[str, Any], price: dict[str, Any] | None) -> str:
    explicit = line_link(line, "subledger_kind")
    if explicit in ("recurring", "usage", "true_up", "credit", "discount", "tax", "other"):
        return explicit
    if line.get("amount", 0) < 0:
        return "credit"
    recurring = (price or {}).get("recurring") or {}
    if recurring.get("usage_type") == "metered":
        return "usage"
    if recurring or line.get("type") == "subscription" or line_proration(line):
        return "recurring"
    return "other"


GRANT_LINK_KEY = "subledger_credit_grant"
"""Metadata on an invoice line (or its invoice item) naming the credit grant the line sells."""


def credits_applied(line: dict[str, Any]) -> list[tuple[str, int, str | None]]:
    """The billing credits applied to a line before tax: (transaction id, amount, grant id if expanded)."""
    found = []
    for entry in line.get("pretax_credit_amounts") or []:
        if entry.get("type") != "credit_balance_transaction" or not entry.get("credit_balance_transaction"):
            continue
        txn = entry["credit_balance_transaction"]
        grant = ref_id(txn.get("credit_grant")) if isinstance(txn, dict) else None
        found.append((str(ref_id(txn)), int(entry.get("amount") or 0), grant))
    return found


def line_grant_link(line: dict[str, Any]) -> str | None:
    """The credit grant a line sells: ``metadata.subledger_credit_grant`` of the line or its invoice item."""
    return line_link(line, GRANT_LINK_KEY)


def invoice(
    obj: dict[str, Any],
    lines: list[dict[str, Any]],
    system: str,
    *,
    prices: dict[str, dict[str, Any]] | None = None,
    meter_keys: dict[str, str] | None = None,
    credit_grants: dict[str, str] | None = None,
) -> tuple[Invoice, list[InvoiceLine]]:
    """An invoice and its lines. ``lines`` is the complete list (``obj['lines']`` holds 10 at most).

    ``prices`` (by id) fills in prices a newer API version leaves unexpanded;
    ``meter_keys`` maps meter ids to their event names; ``credit_grants`` maps credit
    balance transaction ids to their grant (for credits applied whose transaction is not
    expanded). Billing credits applied to a line become a ``credit`` line right after it
    (``-amount``, same service period, component and meter), so the lines add up to the
    invoice's total before tax.

    An invoice subledger wrote reads back as written: ``metadata.subledger_contract`` is its
    ``contract_external_id`` (else the subscription), and a line's ``subledger_component``,
    ``subledger_meter``, ``subledger_kind`` and ``subledger_quantity`` metadata are its
    component, meter, kind and quantity.
    """
    cur = currency_code(obj["currency"])
    invoice_id = record_id("inv", system, obj["id"])
    mapped: list[InvoiceLine] = []
    starts, ends = [], []
    for n, line in enumerate(lines):
        price = line_price(line)
        if isinstance(price, str):
            price = (prices or {}).get(price) or {"id": price}
        recurring = (price or {}).get("recurring") or {}
        meter_id = recurring.get("meter")
        explicit_quantity = line_explicit_quantity(line)
        quantity = line_quantity(line) if explicit_quantity is None else explicit_quantity
        unit_price = None
        if explicit_quantity is not None:
            # A line subledger wrote: its amount is for the quantity it names, whatever price Stripe made for it.
            unit_price = major_price(Decimal(line["amount"]) / quantity, cur) if quantity else None
        elif price and price.get("billing_scheme") == "per_unit" and price.get("unit_amount_decimal") is not None:
            unit_price = major_price(price["unit_amount_decimal"], cur)
            tq = price.get("transform_quantity")
            if tq:
                unit_price = unit_price / Decimal(tq["divide_by"])  # per single unit, for display only
        elif quantity:
            unit_price = major_price(Decimal(line["amount"]) / quantity, cur)
        period = line.get("period") or {}
        start, end = day(period.get("start")), last_day(period.get("start"), period.get("end"))
        if start:
            starts.append(start)
        if end:
            ends.append(end)
        line_ref = evidence_ref(system, "invoice_line", line.get("id") or f"{obj['id']}#{n}", invoice=obj["id"])
        sold = line_grant_link(line)
        base = InvoiceLine(
            invoice_id=invoice_id,
            line_key=line.get("id") or str(n),
            kind=line_kind(line, price),
            description=(line.get("description") or "")[:1024],
            # What subledger wrote on a line wins over what Stripe made of it (an ad-hoc price).
            component=line_link(line, "subledger_component") or (price or {}).get("id"),
            meter=line_link(line, "subledger_meter") or
            ((meter_keys or {}).get(meter_id, meter_id) if meter_id else None),
            quantity=quantity,
            unit_price=unit_price,
            amount_minor=minor(line["amount"], cur),
            currency=cur,
            service_start=start,
            service_end=end,
            proration=line_proration(line),
            evidence=[line_ref, *([evidence_ref(system, "credit_grant", sold)] if sold else [])],
        )
        mapped.append(base)
        for txn_id, amount, grant_id in credits_applied(line):
            grant_id = grant_id or (credit_grants or {}).get(txn_id)
            if not grant_id:
                raise UnmappableError(
                    f"credit balance transaction {txn_id} applied to line {base.line_key} names no credit grant",
                    fix="check the transaction in Stripe (GET /v1/billing/credit_balance_transactions/{id})",
                    field="lines.pretax_credit_amounts",
                )
            mapped.append(InvoiceLine(
                invoice_id=invoice_id,
                line_key=f"{base.line_key}:credit:{txn_id}",
                kind="credit",
                description=f"Billing credits applied ({grant_id})"[:1024],
                component=base.component,
                meter=base.meter,
                amount_minor=-minor(amount, cur),
                currency=cur,
                service_start=start,
                service_end=end,
                proration=base.proration,
                evidence=[line_ref, evidence_ref(system, "credit_balance_transaction", txn_id),
                          evidence_ref(system, "credit_grant", grant_id)],
            ))
    transitions = obj.get("status_transitions") or {}
    tax = obj.get("tax")
    if tax is None and obj.get("total_taxes"):
        tax = sum(int(t.get("amount", 0)) for t in obj["total_taxes"])
    record = Invoice(
        id=invoice_id,
        system=system,
        external_id=obj["id"],
        fetched_at=utcnow(),
        payload_hash=_hash({"invoice": obj, "lines": lines}),
        customer_external_id=ref_id(obj["customer"]) or "",
        contract_external_id=_link(obj.get("metadata"), CONTRACT_LINK_KEY) or invoice_subscription(obj),
        number=obj.get("number"),
        status=obj.get("status") or "draft",
        currency=cur,
        issued_at=ts(transitions.get("finalized_at")),
        due_at=ts(obj.get("due_date")),
        period_start=min(starts) if starts else None,
        period_end=max(ends) if ends else None,
        subtotal_minor=minor(obj.get("subtotal"), cur),
        tax_minor=minor(tax or 0, cur),
        total_minor=minor(obj.get("total"), cur),
        amount_paid_minor=minor(obj.get("amount_paid"), cur),
        amount_due_minor=minor(obj.get("amount_remaining"), cur),
        attributes={k: v for k, v in {
            "billing_reason": obj.get("billing_reason"),
            "collection_method": obj.get("collection_method"),
            "hosted_invoice_url": obj.get("hosted_invoice_url"),
            "metadata": obj.get("metadata") or {},
            "paid_out_of_band": obj.get("paid_out_of_band"),
            "pre_payment_credit_notes_minor": obj.get("pre_payment_credit_notes_amount"),
            "post_payment_credit_notes_minor": obj.get("post_payment_credit_notes_amount"),
            "created": obj.get("created"),
            "paid_at": transitions.get("paid_at"),
            "voided_at": transitions.get("voided_at"),
        }.items() if v is not None},
    )
    return record, mapped


def credit_note(obj: dict[str, Any], lines: list[dict[str, Any]], system: str) -> CreditNote:
    cur = currency_code(obj["currency"])
    return CreditNote(
        id=record_id("cn", system, obj["id"]),
        system=system,
        external_id=obj["id"],
        fetched_at=utcnow(),
        payload_hash=_hash({"credit_note": obj, "lines": lines}),
        customer_external_id=ref_id(obj["customer"]) or "",
        invoice_external_id=ref_id(obj.get("invoice")),
        number=obj.get("number"),
        status=obj.get("status") or "issued",
        reason=obj.get("reason"),
        currency=cur,
        total_minor=minor(obj.get("total"), cur),
        issued_at=ts(obj.get("effective_at") or obj.get("created")),
        lines=[
            {
                "line_key": ln.get("id"),
                "type": ln.get("type"),
                "description": ln.get("description"),
                "amount_minor": minor(ln.get("amount"), cur),
                "quantity": None if ln.get("quantity") is None else str(ln["quantity"]),
                "invoice_line": ln.get("invoice_line_item"),
                "evidence": [evidence_ref(system, "credit_note_line", ln.get("id") or "", credit_note=obj["id"])],
            }
            for ln in lines
        ],
    )


# -- payments -----------------------------------------------------------------------------

# A charge's status as a payment's: only succeeded charges moved money.
CHARGE_STATUS = {"succeeded": "succeeded", "pending": "pending", "failed": "failed"}


def charge(obj: dict[str, Any], system: str) -> tuple[Payment, list[PaymentApplication]]:
    cur = currency_code(obj["currency"])
    payment_id = record_id("pay", system, obj["id"])
    amount = obj.get("amount_captured") if obj.get("captured") else obj.get("amount")
    details = obj.get("payment_method_details") or {}
    record = Payment(
        id=payment_id,
        system=system,
        external_id=obj["id"],
        fetched_at=utcnow(),
        payload_hash=_hash(obj),
        customer_external_id=ref_id(obj.get("customer")) or "",
        currency=cur,
        amount_minor=minor(amount, cur),
        received_at=ts(obj["created"]),  # type: ignore[arg-type]
        status=CHARGE_STATUS.get(obj.get("status", ""), obj.get("status") or "unknown"),
        method=details.get("type"),
        reference=ref_id(obj.get("payment_intent")) or obj.get("receipt_number"),
    )
    applications = []
    invoice_id = ref_id(obj.get("invoice"))
    if invoice_id and obj.get("status") == "succeeded":
        applications.append(PaymentApplication(
            payment_id=payment_id, invoice_external_id=invoice_id, amount_minor=record.amount_minor,
            currency=cur, applied_at=record.received_at,
        ))
    return record, applications


def refund(obj: dict[str, Any], system: str, *, charge_obj: dict[str, Any] | None = None
           ) -> tuple[Payment, list[PaymentApplication]]:
    """A refund as a negative payment, applied (negatively) to the refunded charge's invoice."""
    cur = currency_code(obj["currency"])
    payment_id = record_id("pay", system, obj["id"])
    record = Payment(
        id=payment_id,
        system=system,
        external_id=obj["id"],
        fetched_at=utcnow(),
        payload_hash=_hash({"refund": obj, "charge_invoice": ref_id((charge_obj or {}).get("invoice"))}),
        customer_external_id=ref_id((charge_obj or {}).get("customer")) or "",
        currency=cur,
        amount_minor=-minor(obj.get("amount"), cur),
        received_at=ts(obj["created"]),  # type: ignore[arg-type]
        status=obj.get("status") or "succeeded",
        method="refund",
        reference=ref_id(obj.get("charge")),
    )
    applications = []
    invoice_id = ref_id((charge_obj or {}).get("invoice"))
    if invoice_id and obj.get("status") in ("succeeded", "pending"):
        applications.append(PaymentApplication(
            payment_id=payment_id, invoice_external_id=invoice_id, amount_minor=record.amount_minor,
            currency=cur, applied_at=record.received_at,
        ))
    return record, applications


# -- credit grants ------------------------------------------------------------------------


# credit balance transaction (credit.type / debit.type) -> ledger entry kind
LEDGER_KINDS = {
    "credits_granted": "grant",
    "credits_application_invoice_voided": "reversal",
    "credits_applied": "draw_down",
    "credits_expired": "expiry",
    "credits_voided": "void",
}


def credit_ledger(obj: dict[str, Any], transactions: list[dict[str, Any]], system: str, grant_id: str
                  ) -> list[CreditLedgerEntry]:
    """A grant's credit balance transactions (as listed: newest first) as ledger entries, oldest first.

    Signed: credits positive, debits negative.
    """
    entries = []
    for txn in sorted(reversed(transactions), key=lambda t: (t.get("effective_at") or 0, t.get("created") or 0)):
        side = txn.get("credit") if txn.get("type") == "credit" else txn.get("debit")
        kind = LEDGER_KINDS.get((side or {}).get("type") or "")
        amount = (side or {}).get("amount") or {}
        if txn.get("type") not in ("credit", "debit") or kind is None or amount.get("type") != "monetary":
            raise UnmappableError(
                f"credit balance transaction {txn['id']} of grant {obj['id']} has an unsupported type "
                f"({txn.get('type')}/{(side or {}).get('type')}/{amount.get('type')})",
                fix="tell subledger's maintainers about this transaction type; the grant is kept out until then",
                field="credit_balance_transaction.type",
            )
        cur = currency_code(amount["monetary"]["currency"])
        value = minor(amount["monetary"]["value"], cur)
        entries.append(CreditLedgerEntry(
            entry_key=f"stripe:{system}:{txn['id']}"[:128],
            grant_id=grant_id,
            kind=kind,
            amount_minor=value if txn["type"] == "credit" else -value,
            currency=cur,
            occurred_at=ts(txn.get("effective_at") or txn.get("created")),  # type: ignore[arg-type]
            evidence=[evidence_ref(system, "credit_balance_transaction", txn["id"])],
        ))
    return entries


def credit_grant(obj: dict[str, Any], system: str, transactions: list[dict[str, Any]] | None = None
                 ) -> CreditGrant:
    """The grant; its payload hash covers ``transactions`` too, so a new one rewrites the ledger."""
    amount = obj.get("amount") or {}
    if amount.get("type") != "monetary":
        raise UnmappableError(
            f"credit grant amount type {amount.get('type')!r} is not supported",
            fix="only monetary credit grants can be read; tell subledger's maintainers about this type",
            field="amount.type",
        )
    monetary = amount["monetary"]
    cur = currency_code(monetary["currency"])
    expires = obj.get("expires_at")
    voided = obj.get("voided_at")
    if voided is not None:  # a voided grant can no longer be used from that moment
        expires = voided if expires is None else min(expires, voided)
    effective = obj.get("effective_at") or obj.get("created")
    return CreditGrant(
        id=record_id("cg", system, obj["id"]),
        system=system,
        external_id=obj["id"],
        fetched_at=utcnow(),
        payload_hash=_hash(obj if transactions is None else
                           {"credit_grant": obj, "transactions": sorted(t["id"] for t in transactions)}),
        customer_external_id=ref_id(obj["customer"]) or "",
        category=obj.get("category") or "paid",
        currency=cur,
        amount_minor=minor(monetary["value"], cur),
        cost_basis=Decimal(1) if obj.get("category") == "paid" else Decimal(0),
        priority=int(obj.get("priority") if obj.get("priority") is not None else 50),
        effective_at=ts(effective),  # type: ignore[arg-type]
        expires_at=ts(expires),
    )
