"""Stripe sandbox: subscriptions and items, invoices and lines, invoice items, credit notes.

Subscriptions bill like Stripe's with a test clock: an invoice when created (licensed
items in advance, metered items at zero), then one per period boundary the clock
passes (licensed items for the new period, metered items for the period that ended,
priced from the meter's events), finalized at once and paid when collection is
automatic. Quantity changes create proration invoice items.
"""

from __future__ import annotations

import calendar
import copy
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from subledger.core.sandbox import Call, Router
from subledger.plugins.stripe.arithmetic import price_amount
from subledger.plugins.stripe.sandbox_support import (
    LIST_PARAMS,
    Params,
    created_filter,
    decimal_text,
    error,
    invalid,
    list_object,
    list_of,
    missing,
    not_found,
)

if TYPE_CHECKING:
    from subledger.plugins.stripe.sandbox import StripeSandbox

SUBSCRIPTION_PARAMS = (
    "customer", "items", "metadata", "collection_method", "days_until_due", "billing_cycle_anchor",
    "backdate_start_date", "cancel_at", "cancel_at_period_end", "trial_end", "trial_period_days", "description",
    "currency", "default_payment_method", "payment_behavior", "proration_behavior", "off_session",
)
INVOICE_PARAMS = (
    "customer", "auto_advance", "collection_method", "days_until_due", "description", "metadata", "currency",
    "pending_invoice_items_behavior", "subscription", "footer", "due_date", "default_payment_method",
    "statement_descriptor", "automatic_tax",
)
INVOICEITEM_PARAMS = (
    "customer", "amount", "currency", "description", "metadata", "period", "price", "quantity", "unit_amount",
    "unit_amount_decimal", "invoice", "subscription", "discountable", "tax_behavior", "tax_rates", "price_data",
)
CREDIT_NOTE_PARAMS = (
    "invoice", "amount", "lines", "reason", "memo", "metadata", "refund_amount", "credit_amount",
    "out_of_band_amount", "refund", "effective_at",
)
ACTIVE = ("active", "trialing", "past_due", "unpaid")
TIMES = "\u00d7"  # the multiplication sign Stripe writes in line descriptions ("3 <sign> Seats")


def routes(sb: StripeSandbox, r: Router) -> None:
    r.add("POST", "/v1/subscriptions", lambda c: create_subscription(sb, Params(c.params, SUBSCRIPTION_PARAMS), c))
    r.add("GET", "/v1/subscriptions", lambda c: list_subscriptions(sb, c))
    r.add("GET", "/v1/subscriptions/{id}", lambda c: sb.respond(
        "subscriptions", sb.require("subscriptions", c["id"], "subscription"), Params(c.params, ())))
    r.add("POST", "/v1/subscriptions/{id}", lambda c: update_subscription(sb, c))
    r.add("DELETE", "/v1/subscriptions/{id}", lambda c: cancel_subscription(sb, c))
    r.add("GET", "/v1/subscription_items", lambda c: list_subscription_items(sb, c))
    r.add("GET", "/v1/subscription_items/{id}", lambda c: sb.respond(
        "subscription_items", sb.require("subscription_items", c["id"], "subscription item"),
        Params(c.params, ())))
    r.add("POST", "/v1/invoices", lambda c: create_invoice(sb, Params(c.params, INVOICE_PARAMS), c))
    r.add("GET", "/v1/invoices", lambda c: list_invoices(sb, c))
    r.add("GET", "/v1/invoices/{id}", lambda c: get_invoice(sb, c))
    r.add("POST", "/v1/invoices/{id}", lambda c: update_invoice(sb, c))
    r.add("DELETE", "/v1/invoices/{id}", lambda c: delete_invoice(sb, c))
    r.add("GET", "/v1/invoices/{id}/lines", lambda c: list_lines(sb, c))
    r.add("POST", "/v1/invoices/{id}/finalize", lambda c: finalize_endpoint(sb, c))
    r.add("POST", "/v1/invoices/{id}/pay", lambda c: pay_endpoint(sb, c))
    r.add("POST", "/v1/invoices/{id}/void", lambda c: void_invoice(sb, c))
    r.add("POST", "/v1/invoices/{id}/mark_uncollectible", lambda c: mark_uncollectible(sb, c))
    r.add("POST", "/v1/invoices/{id}/send", lambda c: sb.respond(
        "invoices", _open_invoice(sb, c["id"]), Params(c.params, ())))
    r.add("POST", "/v1/invoiceitems", lambda c: create_invoiceitem(sb, Params(c.params, INVOICEITEM_PARAMS), c))
    r.add("GET", "/v1/invoiceitems", lambda c: list_invoiceitems(sb, c))
    r.add("GET", "/v1/invoiceitems/{id}", lambda c: sb.respond(
        "invoiceitems", sb.require("invoiceitems", c["id"], "invoiceitem"), Params(c.params, ())))
    r.add("POST", "/v1/invoiceitems/{id}", lambda c: update_invoiceitem(sb, c))
    r.add("DELETE", "/v1/invoiceitems/{id}", lambda c: delete_invoiceitem(sb, c))
    r.add("POST", "/v1/credit_notes", lambda c: create_credit_note(sb, Params(c.params, CREDIT_NOTE_PARAMS), c))
    r.add("GET", "/v1/credit_notes", lambda c: list_credit_notes(sb, c))
    r.add("GET", "/v1/credit_notes/{id}", lambda c: sb.respond(
        "credit_notes", sb.require("credit_notes", c["id"], "credit note"), Params(c.params, ())))
    r.add("GET", "/v1/credit_notes/{id}/lines", lambda c: list_credit_note_lines(sb, c))
    r.add("POST", "/v1/credit_notes/{id}", lambda c: update_credit_note(sb, c))
    r.add("POST", "/v1/credit_notes/{id}/void", lambda c: void_credit_note(sb, c))


# -- time -------------------------------------------------------------------------------


def add_interval(ts: int, interval: str, count: int, anchor_day: int) -> int:
    """``ts`` moved by ``count`` intervals; months keep the anchor day (clamped to month end)."""
    if interval == "day":
        return ts + 86400 * count
    if interval == "week":
        return ts + 7 * 86400 * count
    dt = datetime.fromtimestamp(ts, UTC)
    months = count * (12 if interval == "year" else 1)
    total = dt.month - 1 + months
    year, month = dt.year + total // 12, total % 12 + 1
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return int(dt.replace(year=year, month=month, day=day).timestamp())


def _round(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}


def _customer(sb: StripeSandbox, cid: str | None, param: str = "customer") -> dict[str, Any]:
    if not cid:
        raise missing(param)
    customer = sb.store.get("customers", cid)
    if customer is None:
        raise not_found("customer", cid, param)
    return customer


def _set_currency(customer: dict[str, Any], currency: str) -> None:
    """A customer takes the currency of its first invoice or subscription, then keeps it."""
    if customer.get("currency") is None:
        customer["currency"] = currency
    elif customer["currency"] != currency:
        raise invalid(
            "currency",
            f"You cannot combine currencies on a single customer. This customer has had a subscription, "
            f"coupon, or invoice item with currency {customer['currency']}",
        )


# -- subscriptions -----------------------------------------------------------------------


def render_subscription(sb: StripeSandbox, sub: dict[str, Any]) -> dict[str, Any]:
    body = _strip(sub)
    items = [i for i in sb.store.ordered("subscription_items", newest_first=False) if i["subscription"] == sub["id"]]
    body["items"] = list_of(sb, "subscription_items", items, f"/v1/subscription_items?subscription={sub['id']}",
                            first=100)
    body["items"].pop("total_count", None)
    return body


def render_subscription_item(sb: StripeSandbox, item: dict[str, Any]) -> dict[str, Any]:
    body = _strip(item)
    body["price"] = sb.render("prices", sb.store.get("prices", item["price"]) or {})
    return body


def _item_prices(sb: StripeSandbox, p: Params) -> list[tuple[dict[str, Any], int | None, dict[str, str]]]:
    raw = p.array("items", required=True) or []
    if not raw:
        raise missing("items")
    result = []
    for i, entry in enumerate(raw):
        ip = Params(entry, ("price", "quantity", "metadata", "tax_rates", "billing_thresholds", "price_data"),
                    f"items[{i}]")
        price_id = ip.str("price")
        if price_id is None:
            raise missing(f"items[{i}][price]")
        price = sb.store.get("prices", price_id)
        if price is None:
            raise not_found("price", price_id, f"items[{i}][price]")
        if price["type"] != "recurring":
            raise invalid(f"items[{i}][price]", f"The price specified ({price_id}) is not a recurring price.")
        metered = price["recurring"]["usage_type"] == "metered"
        quantity = ip.int("quantity", minimum=0)
        if metered and quantity is not None:
            raise invalid(f"items[{i}][quantity]", "Quantity should not be specified where usage_type is `metered`.")
        result.append((price, None if metered else (1 if quantity is None else quantity), ip.metadata()))
    intervals = {(pr["recurring"]["interval"], pr["recurring"]["interval_count"]) for pr, _, _ in result}
    currencies = {pr["currency"] for pr, _, _ in result}
    if len(intervals) > 1 or len(currencies) > 1:
        raise invalid("items", "Currency and interval fields must match across all plans on this subscription.")
    return result


def create_subscription(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    customer = _customer(sb, p.str("customer"))
    entries = _item_prices(sb, p)
    first_price = entries[0][0]
    now = sb.now()
    start = p.int("backdate_start_date") or overrides.get("created") or now
    if start > now:
        raise invalid("backdate_start_date", "backdate_start_date must be in the past.")
    trial_end = p.timestamp("trial_end", now)
    trial_days = p.int("trial_period_days", minimum=1)
    if trial_days and trial_end is None:
        trial_end = start + trial_days * 86400
    anchor = p.int("billing_cycle_anchor") or trial_end or start
    recurring = first_price["recurring"]
    period_start = start
    period_end = anchor if anchor > start else add_interval(
        start, recurring["interval"], recurring["interval_count"], datetime.fromtimestamp(anchor, UTC).day
    )
    collection = p.enum("collection_method", ("charge_automatically", "send_invoice"), default="charge_automatically")
    days_until_due = p.int("days_until_due", minimum=0)
    if collection == "send_invoice" and days_until_due is None:
        raise missing("days_until_due")
    _set_currency(customer, first_price["currency"])
    sid = overrides.get("id") or sb.new_id("sub_")
    sub = {
        "id": sid,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False},
        "billing_cycle_anchor": anchor,
        "billing_thresholds": None,
        "cancel_at": p.int("cancel_at"),
        "cancel_at_period_end": bool(p.bool("cancel_at_period_end", False)),
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": collection,
        "created": overrides.get("created") or now,
        "currency": first_price["currency"],
        "current_period_end": period_end,
        "current_period_start": period_start,
        "customer": customer["id"],
        "days_until_due": days_until_due,
        "default_payment_method": p.str("default_payment_method"),
        "default_source": None,
        "default_tax_rates": [],
        "description": p.str("description", max_length=500),
        "discount": None,
        "ended_at": None,
        "latest_invoice": None,
        "livemode": False,
        "metadata": p.metadata(),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None, "payment_method_types": None, "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": start,
        "status": "trialing" if trial_end and trial_end > start else "active",
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": start if trial_end else None,
        "_anchor_day": datetime.fromtimestamp(anchor, UTC).day,
    }
    sb.store.put("subscriptions", sub)
    for price, quantity, metadata in entries:
        item = {
            "id": sb.new_id("si_", 14),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": sub["created"],
            "metadata": metadata,
            "price": price["id"],
            "quantity": quantity,
            "subscription": sid,
            "tax_rates": [],
        }
        if quantity is None:
            del item["quantity"]
        sb.store.put("subscription_items", item)
    request = call.request if call else None
    sb.emit("customer.subscription.created", "subscriptions", sub, request=request)
    _bill_period(sb, sub, "subscription_create", start, period_start, period_end, None, request=request)
    bill_due_subscriptions(sb)
    return sb.respond("subscriptions", sub, p)


def list_subscriptions(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer", "price", "status", "created", "collection_method",
                             "current_period_end", "current_period_start", "test_clock", "automatic_tax"))
    customer = p.str("customer")
    price = p.str("price")
    status = p.enum("status", ("active", "all", "canceled", "ended", "incomplete", "incomplete_expired",
                               "past_due", "paused", "trialing", "unpaid"))
    collection = p.enum("collection_method", ("charge_automatically", "send_invoice"))
    created = created_filter(p)
    cpe = created_filter(p, "current_period_end")
    cps = created_filter(p, "current_period_start")

    def where(o: dict[str, Any]) -> bool:
        if status is None and o["status"] == "canceled":
            return False  # Stripe omits canceled subscriptions unless asked
        if status == "ended" and o["status"] not in ("canceled", "incomplete_expired"):
            return False
        if status not in (None, "all", "ended") and o["status"] != status:
            return False
        items = sb.store.collection("subscription_items").values()
        if price and not any(i["price"] == price for i in items if i["subscription"] == o["id"]):
            return False
        return (
            created(o) and cpe(o) and cps(o)
            and (customer is None or o["customer"] == customer)
            and (collection is None or o["collection_method"] == collection)
        )

    return list_object(sb, p, "subscriptions", "/v1/subscriptions", where=where, label="subscription")


def list_subscription_items(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "subscription"))
    sid = p.str("subscription", required=True)
    return list_object(
        sb, p, "subscription_items", f"/v1/subscription_items?subscription={sid}",
        where=lambda o: o["subscription"] == sid, label="subscription item",
    )


def update_subscription(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*SUBSCRIPTION_PARAMS, "cancellation_details", "proration_date"))
    sub = sb.require("subscriptions", call["id"], "subscription")
    if sub["status"] == "canceled":
        raise error(400, "A canceled subscription can only update its cancellation_details and metadata.")
    before = {k: copy.deepcopy(sub[k]) for k in ("metadata", "cancel_at_period_end", "cancel_at", "description",
                                                  "collection_method", "days_until_due")}
    behavior = p.enum("proration_behavior", ("always_invoice", "create_prorations", "none"),
                      default="create_prorations")
    now = p.int("proration_date") or sb.now()
    if p.has("cancel_at_period_end"):
        sub["cancel_at_period_end"] = bool(p.bool("cancel_at_period_end"))
    if p.has("cancel_at"):
        sub["cancel_at"] = p.int("cancel_at")
    if p.has("description"):
        sub["description"] = p.str("description") or None
    if p.has("collection_method"):
        sub["collection_method"] = p.enum("collection_method", ("charge_automatically", "send_invoice"))
    if p.has("days_until_due"):
        sub["days_until_due"] = p.int("days_until_due", minimum=0)
    sub["metadata"] = p.metadata(sub["metadata"])
    prorations: list[dict[str, Any]] = []
    for i, entry in enumerate(p.array("items") or []):
        prorations += _update_item(sb, sub, Params(entry, ("id", "price", "quantity", "deleted", "metadata",
                                                           "clear_usage"), f"items[{i}]"), behavior, now)
    if prorations and behavior == "always_invoice":
        customer = sb.store.get("customers", sub["customer"]) or {}
        inv = _new_invoice(sb, customer, sub["currency"], "subscription_update", sub["collection_method"],
                           sub["days_until_due"], subscription=sub["id"])
        for ii in prorations:
            _attach_item(sb, inv, ii)
        sub["latest_invoice"] = inv["id"]
        finalize(sb, inv)
        if sub["collection_method"] == "charge_automatically":
            pay(sb, inv, out_of_band=False)
    previous = {k: v for k, v in before.items() if sub[k] != v}
    if previous or p.has("items"):
        sb.emit("customer.subscription.updated", "subscriptions", sub, previous or None, request=call.request)
    return sb.respond("subscriptions", sub, p)


def _update_item(
    sb: StripeSandbox, sub: dict[str, Any], ip: Params, behavior: str | None, now: int
) -> list[dict[str, Any]]:
    item_id = ip.str("id")
    if item_id is None:  # a new item
        price_id = ip.str("price", required=True) or ""
        price = sb.store.get("prices", price_id)
        if price is None:
            raise not_found("price", price_id, f"{ip.prefix}[price]")
        metered = price["recurring"]["usage_type"] == "metered"
        item = {
            "id": sb.new_id("si_", 14), "object": "subscription_item", "billing_thresholds": None,
            "created": now, "metadata": ip.metadata(), "price": price_id,
            "quantity": None if metered else (ip.int("quantity", minimum=0) or 1),
            "subscription": sub["id"], "tax_rates": [],
        }
        if metered:
            del item["quantity"]
        sb.store.put("subscription_items", item)
        return _prorate(sb, sub, item, 0, item.get("quantity") or 0, behavior, now)
    item = sb.store.get("subscription_items", item_id)
    if item is None or item["subscription"] != sub["id"]:
        raise not_found("subscription item", item_id, f"{ip.prefix}[id]")
    if ip.bool("deleted"):
        old = item.get("quantity") or 0
        sb.store.delete("subscription_items", item_id)
        return _prorate(sb, sub, item, old, 0, behavior, now)
    item["metadata"] = ip.metadata(item["metadata"])
    if ip.has("quantity"):
        price = sb.store.get("prices", item["price"]) or {}
        if price.get("recurring", {}).get("usage_type") == "metered":
            raise invalid(f"{ip.prefix}[quantity]", "Quantity should not be specified where usage_type is `metered`.")
        old, new = item.get("quantity") or 0, ip.int("quantity", minimum=0) or 0
        item["quantity"] = new
        return _prorate(sb, sub, item, old, new, behavior, now)
    return []


def _prorate(
    sb: StripeSandbox, sub: dict[str, Any], item: dict[str, Any], old: int, new: int, behavior: str | None, now: int
) -> list[dict[str, Any]]:
    """Proration invoice items for a licensed quantity change, as Stripe computes them."""
    price = sb.store.get("prices", item["price"]) or {}
    if behavior == "none" or old == new or price.get("recurring", {}).get("usage_type") == "metered":
        return []
    start, end = sub["current_period_start"], sub["current_period_end"]
    if not start <= now < end:
        return []
    fraction = Decimal(end - now) / Decimal(end - start)
    product = (sb.store.get("products", price["product"]) or {}).get("name", price["product"])
    created = []
    for qty, sign, label in ((old, -1, "Unused time on"), (new, 1, "Remaining time on")):
        if qty == 0:
            continue
        amount = sign * _round(price_amount(price, Decimal(qty)) * fraction)
        ii = _make_invoiceitem(
            sb, customer=sub["customer"], currency=price["currency"], amount=amount, quantity=qty,
            description=f"{label} {qty} {TIMES} {product} after {datetime.fromtimestamp(now, UTC):%d %b %Y}",
            period={"start": now, "end": end}, price=price["id"], proration=True, subscription=sub["id"],
            subscription_item=item["id"], unit_amount=None, unit_amount_decimal=None, metadata={}, invoice=None,
            created=now,
        )
        created.append(ii)
    return created


def cancel_subscription(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("invoice_now", "prorate", "cancellation_details"))
    sub = sb.require("subscriptions", call["id"], "subscription")
    if sub["status"] == "canceled":
        raise error(404, f"No such subscription: '{sub['id']}'", param="id", code="resource_missing")
    now = sb.now()
    if p.bool("invoice_now"):
        _bill_period(sb, sub, "subscription_cycle", now, sub["current_period_start"], now, None,
                     licensed=False, request=call.request)
    sub.update(status="canceled", canceled_at=now, ended_at=now)
    sub["cancellation_details"]["reason"] = "cancellation_requested"
    sb.emit("customer.subscription.deleted", "subscriptions", sub, request=call.request)
    return sb.respond("subscriptions", sub, p)


def bill_due_subscriptions(sb: StripeSandbox) -> None:
    """Bill every period boundary the clock passed (renewals, trial ends, cancellations)."""
    now = sb.now()
    for sub in list(sb.store.ordered("subscriptions", newest_first=False)):
        while sub["status"] in ACTIVE and sub["current_period_end"] <= now:
            start, end = sub["current_period_start"], sub["current_period_end"]
            if sub["cancel_at"] and sub["cancel_at"] <= end:
                _end_subscription(sb, sub, sub["cancel_at"])
                break
            if sub["cancel_at_period_end"]:
                _end_subscription(sb, sub, end)
                break
            items = _items(sb, sub)
            price = sb.store.get("prices", items[0]["price"]) if items else None
            if price is None:
                break
            rec = price["recurring"]
            next_end = add_interval(end, rec["interval"], rec["interval_count"], sub["_anchor_day"])
            previous_status = sub["status"]
            if sub["status"] == "trialing" and sub["trial_end"] and sub["trial_end"] <= end:
                sub["status"] = "active"
            sub["current_period_start"], sub["current_period_end"] = end, next_end
            _bill_period(sb, sub, "subscription_cycle", end, end, next_end, (start, end))
            sb.emit("customer.subscription.updated", "subscriptions", sub,
                    {"current_period_start": start, "current_period_end": end,
                     **({"status": previous_status} if previous_status != sub["status"] else {})},
                    created=end)


def _end_subscription(sb: StripeSandbox, sub: dict[str, Any], at: int) -> None:
    start = sub["current_period_start"]
    _bill_period(sb, sub, "subscription_cycle", at, start, at, (start, at), licensed=False)
    sub.update(status="canceled", canceled_at=sub["canceled_at"] or at, ended_at=at)
    sub["cancellation_details"]["reason"] = "cancellation_requested"
    sb.emit("customer.subscription.deleted", "subscriptions", sub, created=at)


def _items(sb: StripeSandbox, sub: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in sb.store.ordered("subscription_items", newest_first=False) if i["subscription"] == sub["id"]]


def _bill_period(
    sb: StripeSandbox,
    sub: dict[str, Any],
    reason: str,
    at: int,
    start: int,
    end: int,
    usage_period: tuple[int, int] | None,
    *,
    licensed: bool = True,
    request: Any = None,
) -> dict[str, Any]:
    """One subscription invoice: licensed items for [start, end), metered for ``usage_period``."""
    from subledger.plugins.stripe.sandbox_metering import aggregate_usage

    customer = sb.store.get("customers", sub["customer"]) or {}
    inv = _new_invoice(sb, customer, sub["currency"], reason, sub["collection_method"], sub["days_until_due"],
                       subscription=sub["id"], created=at)
    inv["period_start"], inv["period_end"] = usage_period or (at, at)
    trialing = sub["status"] == "trialing" and (sub["trial_end"] or 0) > start
    for item in _items(sb, sub):
        price = sb.store.get("prices", item["price"])
        if price is None:
            continue
        product = (sb.store.get("products", price["product"]) or {}).get("name", price["product"])
        if price["recurring"]["usage_type"] == "metered":
            if usage_period is None:
                quantity, period = Decimal(0), {"start": start, "end": end}
            else:
                quantity = aggregate_usage(sb, price, sub["customer"], *usage_period)
                period = {"start": usage_period[0], "end": usage_period[1]}
        elif licensed:
            quantity, period = Decimal(item.get("quantity") or 0), {"start": start, "end": end}
        else:
            continue
        amount = 0 if trialing else _round(price_amount(price, quantity))
        label = "Trial period for" if trialing else f"{decimal_text(quantity)} {TIMES}"
        _add_line(sb, inv, {
            "amount": amount, "currency": price["currency"], "description": f"{label} {product}",
            "discountable": True, "invoice_item": None, "metadata": dict(item["metadata"]), "period": period,
            "price": price["id"], "proration": False, "quantity": _line_quantity(quantity),
            "subscription": sub["id"], "subscription_item": item["id"], "type": "subscription",
        })
    for ii in sb.store.ordered("invoiceitems", newest_first=False):
        if ii["invoice"] is None and ii["customer"] == sub["customer"] and ii.get("subscription") in (None, sub["id"]):
            _attach_item(sb, inv, ii)
    sub["latest_invoice"] = inv["id"]
    sb.emit("invoice.created", "invoices", inv, request=request, created=at)
    finalize(sb, inv, at=at)
    if sub["collection_method"] == "charge_automatically" and inv["status"] == "open":
        pay(sb, inv, out_of_band=False, at=at)
    return inv


def _line_quantity(quantity: Decimal) -> int | None:
    return int(quantity) if quantity == quantity.to_integral_value() else None


# -- invoices ---------------------------------------------------------------------------


def _new_invoice(
    sb: StripeSandbox,
    customer: dict[str, Any],
    currency: str,
    reason: str,
    collection: str,
    days_until_due: int | None,
    *,
    subscription: str | None = None,
    created: int | None = None,
    auto_advance: bool = True,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    now = created or sb.now()
    inv = {
        "id": sb.new_id("in_"),
        "object": "invoice",
        "account_country": "US",
        "account_name": "subledger sandbox",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "application_fee_amount": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": {"enabled": False, "status": None},
        "billing_reason": reason,
        "charge": None,
        "collection_method": collection,
        "created": now,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_address": copy.deepcopy(customer.get("address")),
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "customer_phone": customer.get("phone"),
        "customer_shipping": None,
        "customer_tax_exempt": customer.get("tax_exempt", "none"),
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discount": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "last_finalization_error": None,
        "latest_revision": None,
        "livemode": False,
        "metadata": metadata or {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "paid": False,
        "paid_out_of_band": False,
        "payment_intent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": now,
        "period_start": now,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "quote": None,
        "receipt_number": None,
        "rendering_options": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None, "marked_uncollectible_at": None, "paid_at": None, "voided_at": None,
        },
        "subscription": subscription,
        "subscription_details": {"metadata": None},
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "tax": None,
        "test_clock": None,
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_tax_amounts": [],
        "transfer_data": None,
        "webhooks_delivered_at": now,
        "_days_until_due": days_until_due,
        "_lines": [],
    }
    if subscription:
        sub = sb.store.get("subscriptions", subscription) or {}
        inv["subscription_details"] = {"metadata": dict(sub.get("metadata") or {})}
    _set_currency(customer, currency)
    sb.store.put("invoices", inv)
    return inv


def _add_line(sb: StripeSandbox, inv: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    line = {
        "id": sb.new_id("il_"),
        "object": "line_item",
        "amount_excluding_tax": fields["amount"],
        "discount_amounts": [],
        "discounts": [],
        "livemode": False,
        "proration_details": {"credited_items": None},
        "tax_amounts": [],
        "tax_rates": [],
        "unit_amount_excluding_tax": None,
        **fields,
        "_invoice": inv["id"],
    }
    if line.get("quantity"):
        line["unit_amount_excluding_tax"] = decimal_text(Decimal(line["amount"]) / Decimal(line["quantity"]))
    if line.get("invoice_item") is None:
        line.pop("invoice_item", None)
    if line["type"] != "subscription":
        line.pop("subscription_item", None)
    sb.store.put("invoice_lines", line)
    inv["_lines"].append(line["id"])
    _recompute(sb, inv)
    return line


def _recompute(sb: StripeSandbox, inv: dict[str, Any]) -> None:
    from subledger.plugins.stripe.sandbox_credits import credited

    subtotal = sum((sb.store.get("invoice_lines", lid) or {}).get("amount", 0) for lid in inv["_lines"])
    inv["subtotal"] = inv["subtotal_excluding_tax"] = subtotal
    total = subtotal - credited(inv)  # billing credits apply before tax
    inv["total"] = inv["total_excluding_tax"] = total
    due = max(0, total - inv["pre_payment_credit_notes_amount"] + inv["starting_balance"])
    inv["amount_due"] = due
    inv["amount_remaining"] = max(0, due - inv["amount_paid"])


def render_invoice(sb: StripeSandbox, inv: dict[str, Any]) -> dict[str, Any]:
    body = _strip(inv)
    lines = [sb.store.get("invoice_lines", lid) for lid in inv["_lines"]]
    body["lines"] = list_of(sb, "invoice_lines", [ln for ln in lines if ln], f"/v1/invoices/{inv['id']}/lines")
    body["lines"].pop("total_count", None)
    return body


def render_line(sb: StripeSandbox, line: dict[str, Any]) -> dict[str, Any]:
    body = _strip(line)
    if line.get("price"):
        body["price"] = sb.render("prices", sb.store.get("prices", line["price"]) or {})
    return body


def create_invoice(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    customer = _customer(sb, p.str("customer"))
    collection = p.enum("collection_method", ("charge_automatically", "send_invoice"), default="charge_automatically")
    days = p.int("days_until_due", minimum=0)
    due_date = p.int("due_date")
    if collection == "send_invoice" and days is None and due_date is None:
        raise error(400, "Missing required param: days_until_due or due_date (collection_method is send_invoice).",
                    param="days_until_due", code="parameter_missing")
    if collection == "charge_automatically" and (days is not None or due_date is not None):
        raise invalid("days_until_due", "days_until_due can only be set when collection_method is send_invoice.")
    behavior = p.enum("pending_invoice_items_behavior", ("exclude", "include", "include_and_require"),
                      default="exclude")
    subscription = p.str("subscription")
    if subscription:
        sb.require("subscriptions", subscription, "subscription", "subscription")
    pending = [
        ii for ii in sb.store.ordered("invoiceitems", newest_first=False)
        if ii["invoice"] is None and ii["customer"] == customer["id"]
        and (subscription is None or ii.get("subscription") == subscription)
    ]
    if behavior == "include_and_require" and not pending:
        raise error(400, "Nothing to invoice for customer", code="invoice_no_customer_line_items")
    currency = (p.str("currency") or (pending[0]["currency"] if pending else None) or customer.get("currency")
                or "usd").lower()
    inv = _new_invoice(
        sb, customer, currency, "manual", collection, days, subscription=subscription,
        created=overrides.get("created"), auto_advance=bool(p.bool("auto_advance", True)),
        metadata=p.metadata(), description=p.str("description", max_length=1500),
    )
    inv["footer"] = p.str("footer")
    if due_date is not None:
        inv["due_date"] = due_date
    if overrides.get("id"):
        sb.store.delete("invoices", inv["id"])
        inv["id"] = overrides["id"]
        sb.store.put("invoices", inv)
    if behavior in ("include", "include_and_require"):
        for ii in pending:
            _attach_item(sb, inv, ii)
    sb.emit("invoice.created", "invoices", inv, request=call.request if call else None)
    return sb.respond("invoices", inv, p)


def get_invoice(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ())
    inv = sb.store.get("invoices", call["id"])
    if inv is None:
        deleted = sb.store.get("deleted", call["id"])
        if deleted is not None:
            raise not_found("invoice", call["id"])
        raise not_found("invoice", call["id"])
    return sb.respond("invoices", inv, p)


def list_invoices(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer", "status", "subscription", "collection_method", "created",
                             "due_date", "test_clock"))
    customer = p.str("customer")
    status = p.enum("status", ("draft", "open", "paid", "uncollectible", "void"))
    subscription = p.str("subscription")
    collection = p.enum("collection_method", ("charge_automatically", "send_invoice"))
    created = created_filter(p)
    due = created_filter(p, "due_date")

    def where(o: dict[str, Any]) -> bool:
        return (
            created(o) and (p.raw("due_date") is None or due(o))
            and (customer is None or o["customer"] == customer)
            and (status is None or o["status"] == status)
            and (subscription is None or o["subscription"] == subscription)
            and (collection is None or o["collection_method"] == collection)
        )

    return list_object(sb, p, "invoices", "/v1/invoices", where=where, label="invoice")


def list_lines(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, LIST_PARAMS)
    inv = sb.require("invoices", call["id"], "invoice")
    lines = [ln for ln in (sb.store.get("invoice_lines", lid) for lid in inv["_lines"]) if ln]
    return list_object(sb, p, "invoice_lines", f"/v1/invoices/{inv['id']}/lines", items=lines, label="line item")


def update_invoice(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("auto_advance", "description", "metadata", "footer", "days_until_due", "due_date",
                             "collection_method", "statement_descriptor", "default_payment_method"))
    inv = sb.require("invoices", call["id"], "invoice")
    before = {k: copy.deepcopy(inv[k]) for k in ("metadata", "description", "auto_advance", "footer", "due_date")}
    if inv["status"] != "draft" and any(p.has(k) for k in ("description", "footer", "days_until_due",
                                                           "collection_method")):
        raise error(400, "You can only update the description, footer and payment terms of a draft invoice.")
    if p.has("description"):
        inv["description"] = p.str("description") or None
    if p.has("footer"):
        inv["footer"] = p.str("footer") or None
    if p.has("auto_advance"):
        inv["auto_advance"] = bool(p.bool("auto_advance"))
    if p.has("days_until_due"):
        inv["_days_until_due"] = p.int("days_until_due", minimum=0)
    if p.has("due_date"):
        inv["due_date"] = p.int("due_date")
    inv["metadata"] = p.metadata(inv["metadata"])
    previous = {k: v for k, v in before.items() if inv[k] != v}
    if previous:
        sb.emit("invoice.updated", "invoices", inv, previous, request=call.request)
    return sb.respond("invoices", inv, p)


def delete_invoice(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    inv = sb.require("invoices", call["id"], "invoice")
    if inv["status"] != "draft":
        raise error(400, "You can only delete draft invoices.", code="invoice_not_editable")
    for lid in inv["_lines"]:
        line = sb.store.delete("invoice_lines", lid) or {}
        if line.get("invoice_item"):
            ii = sb.store.get("invoiceitems", line["invoice_item"])
            if ii is not None:
                ii["invoice"] = None  # the item goes back to pending, as on Stripe
    sb.store.delete("invoices", inv["id"])
    sb.store.put("deleted", {"id": inv["id"], "object": "invoice", "deleted": True})
    sb.emit("invoice.deleted", "invoices", inv, request=call.request)
    return {"id": inv["id"], "object": "invoice", "deleted": True}


def finalize(sb: StripeSandbox, inv: dict[str, Any], *, at: int | None = None, request: Any = None) -> None:
    """Draft -> open (or paid when nothing is due): credit grants applied, number, due date, hosted URL."""
    from subledger.plugins.stripe.sandbox_credits import apply_to_invoice

    now = at or sb.now()
    if apply_to_invoice(sb, inv, now, request=request):
        _recompute(sb, inv)
    customer = sb.store.get("customers", inv["customer"]) or {}
    seq = customer.get("next_invoice_sequence", 1)
    customer["next_invoice_sequence"] = seq + 1
    inv["number"] = f"{customer.get('invoice_prefix', 'SANDBOX')}-{seq:04d}"
    inv["status"] = "open"
    inv["status_transitions"]["finalized_at"] = now
    inv["effective_at"] = now
    inv["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{inv['id']}"
    inv["invoice_pdf"] = f"https://pay.stripe.com/invoice/{inv['id']}/pdf"
    inv["ending_balance"] = 0
    if inv["collection_method"] == "send_invoice" and inv["due_date"] is None:
        inv["due_date"] = now + 86400 * (inv["_days_until_due"] or 30)
    sb.emit("invoice.finalized", "invoices", inv, request=request, created=now)
    if inv["amount_due"] == 0:
        _mark_paid(sb, inv, now, request=request)


def _mark_paid(sb: StripeSandbox, inv: dict[str, Any], now: int, *, request: Any = None) -> None:
    inv["amount_paid"] += inv["amount_remaining"]
    inv["amount_remaining"] = 0
    inv["paid"] = True
    inv["status"] = "paid"
    inv["attempted"] = True
    inv["status_transitions"]["paid_at"] = now
    sb.emit("invoice.paid", "invoices", inv, request=request, created=now)


def finalize_endpoint(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("auto_advance",))
    inv = sb.require("invoices", call["id"], "invoice")
    if inv["status"] != "draft":
        raise error(400, "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                    code="invoice_not_editable")
    if p.has("auto_advance"):
        inv["auto_advance"] = bool(p.bool("auto_advance"))
    finalize(sb, inv, request=call.request)
    return sb.respond("invoices", inv, p)


def pay(sb: StripeSandbox, inv: dict[str, Any], *, out_of_band: bool, at: int | None = None,
        request: Any = None) -> None:
    """Collect an open invoice: a succeeded payment intent and charge, or out of band."""
    from subledger.plugins.stripe.sandbox_payments import charge_for_invoice

    now = at or sb.now()
    inv["attempt_count"] += 1
    if out_of_band:
        inv["paid_out_of_band"] = True
    elif inv["amount_remaining"] > 0:
        intent, charge = charge_for_invoice(sb, inv, now, request=request)
        inv["payment_intent"], inv["charge"] = intent["id"], charge["id"]
    _mark_paid(sb, inv, now, request=request)


def _open_invoice(sb: StripeSandbox, iid: str) -> dict[str, Any]:
    inv = sb.require("invoices", iid, "invoice")
    if inv["status"] != "open":
        raise error(400, f"Invoice is {inv['status']}; this action needs an open invoice.", code="invoice_not_open")
    return inv


def pay_endpoint(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("paid_out_of_band", "payment_method", "source", "off_session", "forgive"))
    inv = sb.require("invoices", call["id"], "invoice")
    if inv["status"] == "paid":
        raise error(400, "Invoice is already paid", code="invoice_already_paid")
    if inv["status"] == "draft":
        finalize(sb, inv, request=call.request)
    if inv["status"] == "open":
        pay(sb, inv, out_of_band=bool(p.bool("paid_out_of_band", False)), request=call.request)
    return sb.respond("invoices", inv, p)


def void_invoice(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ())
    inv = _open_invoice(sb, call["id"])
    void(sb, inv, sb.now(), request=call.request)
    return sb.respond("invoices", inv, p)


def void(sb: StripeSandbox, inv: dict[str, Any], at: int, *, request: Any = None) -> None:
    """Open -> void; credits the invoice used go back to their grants."""
    from subledger.plugins.stripe.sandbox_credits import invoice_voided

    inv["status"] = "void"
    inv["amount_remaining"] = 0
    inv["status_transitions"]["voided_at"] = at
    sb.emit("invoice.voided", "invoices", inv, {"status": "open"}, request=request, created=at)
    invoice_voided(sb, inv, at, request=request)


def mark_uncollectible(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ())
    inv = _open_invoice(sb, call["id"])
    inv["status"] = "uncollectible"
    inv["status_transitions"]["marked_uncollectible_at"] = sb.now()
    sb.emit("invoice.marked_uncollectible", "invoices", inv, {"status": "open"}, request=call.request)
    return sb.respond("invoices", inv, p)


# -- invoice items ----------------------------------------------------------------------


def render_invoiceitem(sb: StripeSandbox, ii: dict[str, Any]) -> dict[str, Any]:
    body = _strip(ii)
    if ii.get("price"):
        body["price"] = sb.render("prices", sb.store.get("prices", ii["price"]) or {})
    return body


def _make_invoiceitem(sb: StripeSandbox, **f: Any) -> dict[str, Any]:
    ii = {
        "id": f.pop("id", None) or sb.new_id("ii_"),
        "object": "invoiceitem",
        "amount": f["amount"],
        "currency": f["currency"],
        "customer": f["customer"],
        "date": f.get("created") or sb.now(),
        "description": f["description"],
        "discountable": f.get("discountable", not f["proration"] and f["amount"] >= 0),
        "discounts": [],
        "invoice": None,
        "livemode": False,
        "metadata": f["metadata"],
        "period": f["period"],
        "price": f["price"],
        "proration": f["proration"],
        "quantity": f["quantity"],
        "subscription": f.get("subscription"),
        "subscription_item": f.get("subscription_item"),
        "tax_rates": [],
        "test_clock": None,
        "unit_amount": f["unit_amount"],
        "unit_amount_decimal": f["unit_amount_decimal"],
    }
    if ii["subscription_item"] is None:
        del ii["subscription_item"]
    sb.store.put("invoiceitems", ii)
    sb.emit("invoiceitem.created", "invoiceitems", ii, created=ii["date"])
    return ii


def _attach_item(sb: StripeSandbox, inv: dict[str, Any], ii: dict[str, Any]) -> None:
    ii["invoice"] = inv["id"]
    _add_line(sb, inv, {
        "amount": ii["amount"], "currency": ii["currency"], "description": ii["description"],
        "discountable": ii["discountable"], "invoice_item": ii["id"], "metadata": dict(ii["metadata"]),
        "period": dict(ii["period"]), "price": ii["price"], "proration": ii["proration"],
        "quantity": ii["quantity"], "subscription": ii.get("subscription"),
        "subscription_item": ii.get("subscription_item"), "type": "invoiceitem",
    })


def create_invoiceitem(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    customer = _customer(sb, p.str("customer"))
    amount = p.int("amount")
    price_id = p.str("price")
    unit = p.int("unit_amount")
    unit_dec = p.decimal("unit_amount_decimal")
    quantity = p.int("quantity", minimum=0)
    given = [k for k, v in (("amount", amount), ("price", price_id), ("unit_amount", unit),
                            ("unit_amount_decimal", unit_dec)) if v is not None]
    if len(given) > 1 and not (set(given) <= {"unit_amount", "unit_amount_decimal"}):
        raise error(400, f"You may only specify one of these parameters: {', '.join(given)}.", param=given[1])
    if unit is not None and unit_dec is not None:
        raise error(400, "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
                    param="unit_amount_decimal")
    price = None
    if price_id is not None:
        price = sb.store.get("prices", price_id)
        if price is None:
            raise not_found("price", price_id, "price")
        currency = price["currency"]
    else:
        if not given:
            raise error(400, "Missing required param: amount.", param="amount", code="parameter_missing")
        currency = (p.str("currency") or "").lower()
        if not currency:
            raise missing("currency")
    qty = 1 if quantity is None else quantity
    if amount is not None:
        if quantity is not None and quantity != 1:
            raise invalid("quantity", "quantity can only be used together with unit_amount or price.")
        unit_text = decimal_text(Decimal(amount))
        total = amount
    else:
        unit_decimal = (
            Decimal(unit) if unit is not None else unit_dec if unit_dec is not None
            else Decimal(price["unit_amount_decimal"] or 0) if price else Decimal(0)
        )
        if price is not None and price["billing_scheme"] == "tiered":
            total = _round(price_amount(price, Decimal(qty)))
            unit_decimal = Decimal(total) / qty if qty else Decimal(0)
        else:
            total = _round(unit_decimal * qty)
        unit_text = decimal_text(unit_decimal)
    invoice_id = p.str("invoice")
    inv = None
    if invoice_id is not None:
        inv = sb.store.get("invoices", invoice_id)
        if inv is None:
            raise not_found("invoice", invoice_id, "invoice")
        if inv["status"] != "draft":
            raise error(400, f"You can only add invoice items to draft invoices. Invoice {invoice_id} is "
                        f"{inv['status']}.", param="invoice", code="invoice_not_editable")
        if inv["customer"] != customer["id"]:
            raise invalid("invoice", "The invoice belongs to a different customer than the invoice item.")
        if inv["currency"] != currency:
            raise invalid("currency", f"The invoice item's currency ({currency}) must match the invoice's "
                          f"({inv['currency']}).")
    _set_currency(customer, currency)
    now = overrides.get("created") or sb.now()
    period = p.hash("period", ("start", "end"))
    if period is not None:
        start, end = period.int("start", required=True), period.int("end", required=True)
        if start is not None and end is not None and end < start:
            raise invalid("period[end]", "The period end must be after the period start.")
        period_doc = {"start": start, "end": end}
    else:
        period_doc = {"start": now, "end": now}
    subscription = p.str("subscription")
    if subscription:
        sb.require("subscriptions", subscription, "subscription", "subscription")
    ii = _make_invoiceitem(
        sb, id=overrides.get("id"), customer=customer["id"], currency=currency, amount=total,
        description=p.str("description") or (None if price is None else _product_name(sb, price)),
        discountable=p.bool("discountable", total >= 0), metadata=p.metadata(), period=period_doc,
        price=price["id"] if price else None, proration=False, quantity=qty, subscription=subscription,
        unit_amount=int(Decimal(unit_text)) if Decimal(unit_text) == Decimal(unit_text).to_integral_value()
        else None,
        unit_amount_decimal=unit_text, created=now,
    )
    if inv is not None:
        _attach_item(sb, inv, ii)
        sb.emit("invoice.updated", "invoices", inv, {"total": inv["total"] - total}, created=now)
    return sb.respond("invoiceitems", ii, p)


def _product_name(sb: StripeSandbox, price: dict[str, Any]) -> str:
    return (sb.store.get("products", price["product"]) or {}).get("name", price["product"])


def list_invoiceitems(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer", "invoice", "pending", "created", "test_clock"))
    customer = p.str("customer")
    invoice = p.str("invoice")
    pending = p.bool("pending")
    created = created_filter(p, "created")

    def where(o: dict[str, Any]) -> bool:
        return (
            created({"created": o["date"]})
            and (customer is None or o["customer"] == customer)
            and (invoice is None or o["invoice"] == invoice)
            and (pending is None or (o["invoice"] is None) == pending)
        )

    return list_object(sb, p, "invoiceitems", "/v1/invoiceitems",
                       items=sorted(sb.store.ordered("invoiceitems", where=where), key=lambda o: -o["date"]),
                       label="invoiceitem")


def update_invoiceitem(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("amount", "description", "metadata", "period", "quantity", "unit_amount",
                             "unit_amount_decimal", "discountable", "price", "tax_rates"))
    ii = sb.require("invoiceitems", call["id"], "invoiceitem")
    if ii["invoice"] is not None:
        inv = sb.store.get("invoices", ii["invoice"]) or {}
        if inv.get("status") != "draft" and any(p.has(k) for k in ("amount", "quantity", "unit_amount", "period")):
            raise error(400, "The invoice item is on a finalized invoice and cannot be changed.",
                        code="invoice_not_editable")
    before = {"metadata": dict(ii["metadata"]), "description": ii["description"]}
    if p.has("description"):
        ii["description"] = p.str("description") or None
    ii["metadata"] = p.metadata(ii["metadata"])
    previous = {k: v for k, v in before.items() if ii[k] != v}
    if previous:
        sb.emit("invoiceitem.updated", "invoiceitems", ii, previous, request=call.request)
    return sb.respond("invoiceitems", ii, p)


def delete_invoiceitem(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    ii = sb.require("invoiceitems", call["id"], "invoiceitem")
    if ii["invoice"] is not None:
        inv = sb.store.get("invoices", ii["invoice"]) or {}
        if inv.get("status") != "draft":
            raise error(400, "You cannot delete an invoice item on a finalized invoice.", code="invoice_not_editable")
        inv["_lines"] = [lid for lid in inv["_lines"]
                         if (sb.store.get("invoice_lines", lid) or {}).get("invoice_item") != ii["id"]]
        _recompute(sb, inv)
    sb.store.delete("invoiceitems", ii["id"])
    sb.emit("invoiceitem.deleted", "invoiceitems", ii, request=call.request)
    return {"id": ii["id"], "object": "invoiceitem", "deleted": True}


# -- credit notes -----------------------------------------------------------------------


def render_credit_note(sb: StripeSandbox, cn: dict[str, Any]) -> dict[str, Any]:
    body = _strip(cn)
    body["lines"] = list_of(sb, "credit_note_lines", cn["_lines"], f"/v1/credit_notes/{cn['id']}/lines")
    body["lines"].pop("total_count", None)
    return body


def create_credit_note(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    from subledger.plugins.stripe.sandbox_payments import refund_charge

    invoice_id = p.str("invoice", required=True) or ""
    inv = sb.store.get("invoices", invoice_id)
    if inv is None:
        raise not_found("invoice", invoice_id, "invoice")
    if inv["status"] not in ("open", "paid"):
        raise error(400, f"Credit notes can only be issued on open or paid invoices; {invoice_id} is "
                    f"{inv['status']}.", param="invoice")
    lines: list[dict[str, Any]] = []
    for i, raw in enumerate(p.array("lines") or []):
        lp = Params(raw, ("type", "invoice_line_item", "amount", "quantity", "unit_amount", "unit_amount_decimal",
                          "description", "tax_rates", "tax_amounts"), f"lines[{i}]")
        kind = lp.enum("type", ("custom_line_item", "invoice_line_item"), required=True)
        line = {
            "id": sb.new_id("cnli_"), "object": "credit_note_line_item", "discount_amount": 0,
            "discount_amounts": [], "livemode": False, "tax_amounts": [], "tax_rates": [], "type": kind,
            "description": lp.str("description"), "quantity": lp.int("quantity", minimum=1) or 1,
            "unit_amount": None, "unit_amount_decimal": None,
        }
        if kind == "invoice_line_item":
            lid = lp.str("invoice_line_item", required=True) or ""
            inv_line = sb.store.get("invoice_lines", lid)
            if inv_line is None or inv_line["_invoice"] != inv["id"]:
                raise not_found("invoice line item", lid, f"lines[{i}][invoice_line_item]")
            amount = lp.int("amount", minimum=0)
            if amount is None:
                amount = inv_line["amount"]
            line.update(invoice_line_item=lid, description=line["description"] or inv_line["description"])
        else:
            unit = lp.int("unit_amount", minimum=0)
            unit_dec = Decimal(unit) if unit is not None else (
                lp.decimal("unit_amount_decimal", required=True) or Decimal(0))
            amount = _round(unit_dec * line["quantity"])
            line.update(unit_amount=unit, unit_amount_decimal=decimal_text(unit_dec))
        line["amount"] = line["amount_excluding_tax"] = amount
        line["unit_amount_excluding_tax"] = decimal_text(Decimal(amount) / line["quantity"])
        lines.append(line)
    total = sum(ln["amount"] for ln in lines) if lines else p.int("amount", minimum=1)
    if total is None:
        raise error(400, "You must pass either `amount` or `lines`.", param="amount", code="parameter_missing")
    credited = sum(c["total"] for c in sb.store.collection("credit_notes").values()
                   if c["invoice"] == inv["id"] and c["status"] == "issued")
    if credited + total > inv["total"]:
        raise invalid("amount", f"The sum of credit amount, refund amount and out of band amount "
                      f"({total}) must be less than or equal to the invoice's remaining creditable amount "
                      f"({inv['total'] - credited}).")
    now = overrides.get("created") or sb.now()
    kind = "pre_payment" if inv["status"] == "open" else "post_payment"
    refund_amount = p.int("refund_amount", minimum=0) or 0
    credit_amount = p.int("credit_amount", minimum=0) or 0
    out_of_band = p.int("out_of_band_amount", minimum=0)
    refund_id = None
    if kind == "post_payment":
        if refund_amount and inv.get("charge"):
            refund_id = refund_charge(sb, inv["charge"], refund_amount, "requested_by_customer", now)["id"]
        if credit_amount:
            customer = sb.store.get("customers", inv["customer"]) or {}
            customer["balance"] = customer.get("balance", 0) - credit_amount
        inv["post_payment_credit_notes_amount"] += total
    else:
        inv["pre_payment_credit_notes_amount"] += total
        _recompute(sb, inv)
        if inv["amount_remaining"] == 0 and inv["status"] == "open":
            _mark_paid(sb, inv, now)
    count = sum(1 for c in sb.store.collection("credit_notes").values() if c["invoice"] == inv["id"]) + 1
    cn = {
        "id": overrides.get("id") or sb.new_id("cn_"),
        "object": "credit_note",
        "amount": total,
        "amount_shipping": 0,
        "created": now,
        "currency": inv["currency"],
        "customer": inv["customer"],
        "customer_balance_transaction": f"cbtxn_{inv['id'][3:]}" if credit_amount else None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": p.int("effective_at") or now,
        "invoice": inv["id"],
        "livemode": False,
        "memo": p.str("memo"),
        "metadata": p.metadata(),
        "number": f"{inv['number']}-CN-{count:02d}",
        "out_of_band_amount": out_of_band,
        "pdf": f"https://pay.stripe.com/credit_notes/{inv['id']}/pdf",
        "reason": p.enum("reason", ("duplicate", "fraudulent", "order_change", "product_unsatisfactory")),
        "refund": refund_id,
        "shipping_cost": None,
        "status": "issued",
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "tax_amounts": [],
        "total": total,
        "total_excluding_tax": total,
        "type": kind,
        "voided_at": None,
        "_lines": lines,
    }
    sb.store.put("credit_notes", cn)
    sb.emit("credit_note.created", "credit_notes", cn, request=call.request if call else None, created=now)
    return sb.respond("credit_notes", cn, p)


def list_credit_notes(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer", "invoice"))
    customer = p.str("customer")
    invoice = p.str("invoice")

    def where(o: dict[str, Any]) -> bool:
        return (customer is None or o["customer"] == customer) and (invoice is None or o["invoice"] == invoice)

    return list_object(sb, p, "credit_notes", "/v1/credit_notes", where=where, label="credit note")


def list_credit_note_lines(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, LIST_PARAMS)
    cn = sb.require("credit_notes", call["id"], "credit note")
    return list_object(sb, p, "credit_note_lines", f"/v1/credit_notes/{cn['id']}/lines", items=cn["_lines"],
                       label="credit note line item")


def update_credit_note(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("memo", "metadata"))
    cn = sb.require("credit_notes", call["id"], "credit note")
    before = {"memo": cn["memo"], "metadata": dict(cn["metadata"])}
    if p.has("memo"):
        cn["memo"] = p.str("memo") or None
    cn["metadata"] = p.metadata(cn["metadata"])
    previous = {k: v for k, v in before.items() if cn[k] != v}
    if previous:
        sb.emit("credit_note.updated", "credit_notes", cn, previous, request=call.request)
    return sb.respond("credit_notes", cn, p)


def void_credit_note(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ())
    cn = sb.require("credit_notes", call["id"], "credit note")
    if cn["status"] == "void":
        raise error(400, "This credit note is already voided.")
    cn["status"] = "void"
    cn["voided_at"] = sb.now()
    inv = sb.store.get("invoices", cn["invoice"]) or {}
    if cn["type"] == "pre_payment" and inv:
        inv["pre_payment_credit_notes_amount"] -= cn["total"]
        _recompute(sb, inv)
    elif inv:
        inv["post_payment_credit_notes_amount"] -= cn["total"]
    sb.emit("credit_note.voided", "credit_notes", cn, {"status": "issued"}, request=call.request)
    return sb.respond("credit_notes", cn, p)
