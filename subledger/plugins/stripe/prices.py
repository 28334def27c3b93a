"""Stripe subscriptions and prices -> canonical contracts with exact contract terms.

Every Stripe price model has an exact canonical counterpart:

==============================================  ============================================
Stripe price                                    contract-terms component
==============================================  ============================================
licensed, per_unit                              ``flat_fee``: amount = unit, quantity = item quantity
licensed, per_unit + transform_quantity         ``flat_fee``: quantity = item quantity divided, rounded
licensed, tiered (graduated or volume)          ``flat_fee``: amount = the tiered total at the item quantity
metered, per_unit                               ``usage`` + ``per_unit``
metered, per_unit + transform_quantity          ``usage`` + ``package`` (divide_by, round up/down)
metered, tiered graduated / volume              ``usage`` + ``graduated`` / ``volume`` (flat amounts as flat fees)
==============================================  ============================================

A trial becomes a 100 % discount until the trial ends; a coupon becomes a discount.
What terms cannot express is reported, never dropped: a :class:`Finding` that blocks
(the contract is not loaded: a weekly interval, ``last_ever`` usage, an unexpanded tier
list) or one that does not (the contract is loaded and the finding kept for review:
billing thresholds, a paused collection, a subscription schedule, tax-inclusive prices).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from subledger.core.db_types import decimal_text, utcnow
from subledger.core.errors import ConfigError
from subledger.core.model import Contract, payload_hash, record_id
from subledger.core.terms import load_terms, terms_hash, terms_to_document
from subledger.plugins.stripe.arithmetic import price_amount, transformed_quantity
from subledger.plugins.stripe.mapping import currency_code, day, last_day, major_price, ref_id

# Stripe's legacy usage-record aggregation -> canonical aggregation.
AGGREGATE_USAGE = {"sum": "sum", "max": "max", "last_during_period": "latest"}
# Stripe meter formula -> canonical aggregation (a count meter is a sum of 1-valued events).
METER_FORMULA = {"sum": "sum", "count": "sum", "last": "latest"}
STATUS = {
    "active": "active", "trialing": "active", "past_due": "active", "unpaid": "active", "paused": "active",
    "canceled": "cancelled", "incomplete": "draft", "incomplete_expired": "cancelled",
}
_IDENT = re.compile(r"[^A-Za-z0-9_.:\-]")


@dataclass(frozen=True)
class Finding:
    """A Stripe feature the contract terms cannot hold as it is.

    ``blocking`` findings keep the contract out (loading it would misstate what is billed);
    the others are kept beside the loaded contract for review.
    """

    field: str
    reason: str
    fix: str
    blocking: bool = True


@dataclass
class MappedContract:
    """The contract (None when a blocking finding kept it out) and every finding."""

    contract: Contract | None
    findings: list[Finding] = field(default_factory=list)


class _Blocked(Exception):
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.reason)
        self.finding = finding


def _ident(value: str) -> str:
    return _IDENT.sub("_", value)[:128] or "component"


def _price_for_currency(price: dict[str, Any], currency: str, where: str) -> dict[str, Any]:
    """The price in the subscription's currency (a multi-currency price's option if needed)."""
    if price["currency"].lower() == currency.lower():
        return price
    option = (price.get("currency_options") or {}).get(currency.lower())
    if option is None:
        raise _Blocked(Finding(
            f"{where}.currency",
            f"price {price['id']} is in {price['currency'].upper()} and has no {currency.upper()} currency option",
            "read the price with expand[]=currency_options, or give it a currency option for the subscription's "
            "currency",
        ))
    merged = dict(price, currency=currency.lower())
    merged.update({k: v for k, v in option.items() if k in ("unit_amount", "unit_amount_decimal", "tiers",
                                                             "tax_behavior")})
    return merged


def _tiers(price: dict[str, Any], currency: str, where: str) -> list[dict[str, Any]]:
    tiers = price.get("tiers")
    if not tiers:
        raise _Blocked(Finding(
            f"{where}.tiers",
            f"tiered price {price['id']} was read without its tiers (Stripe only returns them when expanded)",
            "read prices with expand[]=tiers; this is a connector bug if it happens, report it",
        ))
    result = []
    for tier in tiers:
        unit = tier.get("unit_amount_decimal")
        if unit is None:
            unit = tier.get("unit_amount") or 0
        flat = tier.get("flat_amount_decimal")
        if flat is None:
            flat = tier.get("flat_amount") or 0
        result.append({
            "up_to": None if tier.get("up_to") is None else int(tier["up_to"]),
            "unit_price": decimal_text(major_price(unit, currency)),
            "flat_fee": decimal_text(major_price(flat, currency)),
        })
    return result


def usage_price_model(price: dict[str, Any], currency: str, where: str = "price") -> dict[str, Any]:
    """The canonical price model (as a terms dict) of a metered Stripe price."""
    price = _price_for_currency(price, currency, where)
    if price["billing_scheme"] == "tiered":
        mode = price.get("tiers_mode")
        if mode not in ("graduated", "volume"):
            raise _Blocked(Finding(f"{where}.tiers_mode", f"tiers_mode {mode!r} is not known",
                                   "use graduated or volume tiers"))
        return {"model": mode, "tiers": _tiers(price, currency, where)}
    unit = price.get("unit_amount_decimal")
    if unit is None:
        raise _Blocked(Finding(f"{where}.unit_amount", f"price {price['id']} has no unit amount",
                               "give the price a unit_amount (custom amounts cannot be rated)"))
    unit_price = decimal_text(major_price(unit, currency))
    tq = price.get("transform_quantity")
    if tq:
        return {"model": "package", "package_size": int(tq["divide_by"]), "package_price": unit_price,
                "rounding": "up" if tq["round"] == "up" else "down"}
    return {"model": "per_unit", "unit_price": unit_price}


def _interval(recurring: dict[str, Any], where: str) -> dict[str, Any]:
    interval, count = recurring["interval"], int(recurring.get("interval_count") or 1)
    if interval not in ("month", "year"):
        raise _Blocked(Finding(
            f"{where}.recurring.interval",
            f"a {interval}ly billing interval cannot be expressed (contract terms bill by month, quarter or year)",
            "bill the subscription monthly or yearly, or keep this contract out of subledger's rating",
        ))
    return {"interval": interval, "interval_count": count}


def _component(
    item: dict[str, Any],
    price: dict[str, Any],
    currency: str,
    *,
    product_name: str,
    meters: dict[str, dict[str, Any]],
    cadence: dict[str, Any] | None,
    findings: list[Finding],
    n: int,
) -> dict[str, Any]:
    where = f"items[{n}]"
    price = _price_for_currency(price, currency, f"{where}.price")
    recurring = price.get("recurring") or {}
    name = " - ".join(x for x in (product_name, price.get("nickname")) if x)
    if price.get("tax_behavior") == "inclusive":
        findings.append(Finding(
            f"{where}.price.tax_behavior",
            f"price {price['id']} is tax-inclusive: Stripe's amounts include tax, the terms treat them as net",
            "review this contract's rated amounts net of tax", blocking=False,
        ))
    if item.get("billing_thresholds"):
        findings.append(Finding(f"{where}.billing_thresholds", "item usage thresholds are not represented",
                                "review invoices triggered by thresholds by hand", blocking=False))
    base: dict[str, Any] = {"id": _ident(item["id"]), "name": name}
    if recurring.get("usage_type") == "metered":
        meter_id = recurring.get("meter")
        if meter_id:
            meter = meters.get(meter_id)
            if meter is None:
                raise _Blocked(Finding(f"{where}.price.recurring.meter", f"meter {meter_id} was not found",
                                       "check the meter exists and the key may read billing meters"))
            aggregation = METER_FORMULA.get(meter["default_aggregation"]["formula"])
            meter_key = meter["event_name"]
        else:
            usage = recurring.get("aggregate_usage") or "sum"
            aggregation = AGGREGATE_USAGE.get(usage)
            meter_key = f"stripe_price:{price['id']}"
            if aggregation is None:
                raise _Blocked(Finding(
                    f"{where}.price.recurring.aggregate_usage",
                    f"aggregate_usage {usage!r} (the last value ever reported, across periods) has no canonical form",
                    "use a billing meter with the last formula, or sum/max/last_during_period",
                ))
        return {**base, "type": "usage", "meter": meter_key, "aggregation": aggregation,
                "price": usage_price_model(price, currency, f"{where}.price")}
    quantity = Decimal(int(item.get("quantity") or 0))
    fee: dict[str, Any] = {**base, "type": "flat_fee", "timing": "advance", "proration": "by_day"}
    if cadence:
        fee["cadence"] = cadence
    if price["billing_scheme"] == "tiered":
        _tiers(price, currency, f"{where}.price")  # blocks when the tiers were not read
        total = price_amount(price, quantity)
        fee.update(amount=decimal_text(major_price(total, currency)), quantity="1",
                   name=f"{name} ({decimal_text(quantity)} at {price.get('tiers_mode')} tiers)")
        return fee
    unit = price.get("unit_amount_decimal")
    if unit is None:
        raise _Blocked(Finding(f"{where}.price.unit_amount", f"price {price['id']} has no unit amount",
                               "give the price a unit_amount (custom amounts cannot be rated)"))
    fee.update(amount=decimal_text(major_price(unit, currency)),
               quantity=decimal_text(transformed_quantity(price, quantity)))
    return fee


def _discounts(sub: dict[str, Any], currency: str, months: int, findings: list[Finding]) -> list[dict[str, Any]]:
    discounts: list[dict[str, Any]] = []
    trial_end = sub.get("trial_end")
    trial_start = sub.get("trial_start") or sub.get("start_date")
    if trial_end and trial_start and trial_end > trial_start:
        # A trial bills nothing, licensed or metered: a whole-invoice 100 % discount.
        discounts.append({"id": "stripe_trial", "percent": "100", "starts": day(trial_start).isoformat(),
                          "ends": day(trial_end).isoformat()})
    entries = [sub["discount"]] if sub.get("discount") else []
    for extra in sub.get("discounts") or []:
        if isinstance(extra, dict) and extra not in entries:
            entries.append(extra)
        elif isinstance(extra, str) and not any(ref_id(e) == extra for e in entries):
            raise _Blocked(Finding("discounts", f"discount {extra} was read without its coupon",
                                   "read subscriptions with expand[]=data.discounts"))
    for entry in entries:
        coupon = entry.get("coupon") or (entry.get("source") or {}).get("coupon") or {}
        if isinstance(coupon, str):
            raise _Blocked(Finding("discount.coupon", f"coupon {coupon} was read without its details",
                                   "read subscriptions with their discount's coupon expanded"))
        doc: dict[str, Any] = {"id": _ident(f"coupon_{coupon.get('id', 'unknown')}")}
        if coupon.get("percent_off") is not None:
            doc["percent"] = decimal_text(Decimal(str(coupon["percent_off"])))
        elif coupon.get("amount_off") is not None:
            if (coupon.get("currency") or "").lower() != currency.lower():
                raise _Blocked(Finding("discount.coupon.currency",
                                       f"coupon {coupon.get('id')} is in {coupon.get('currency')}, the contract in "
                                       f"{currency.upper()}", "use a coupon in the subscription's currency"))
            doc["amount"] = decimal_text(major_price(coupon["amount_off"], currency))
        else:
            raise _Blocked(Finding("discount.coupon", f"coupon {coupon.get('id')} has neither percent nor amount off",
                                   "check the coupon in Stripe"))
        if entry.get("start"):
            doc["starts"] = day(entry["start"]).isoformat()
        duration = coupon.get("duration")
        if entry.get("end"):
            doc["ends"] = day(entry["end"]).isoformat()
        elif duration == "once":
            doc["periods"] = 1
        elif duration == "repeating":
            months_off = int(coupon.get("duration_in_months") or 0)
            if months_off % months:
                findings.append(Finding("discount.coupon.duration_in_months",
                                        f"the coupon lasts {months_off} months, not a whole number of "
                                        f"{months}-month periods", "review the last discounted period",
                                        blocking=False))
            doc["periods"] = max(1, -(-months_off // months))
        discounts.append(doc)
    return discounts


def subscription_contract(
    sub: dict[str, Any],
    items: list[dict[str, Any]],
    *,
    system: str,
    prices: dict[str, dict[str, Any]],
    products: dict[str, dict[str, Any]],
    meters: dict[str, dict[str, Any]],
) -> MappedContract:
    """Map one subscription (with all its items) to a :class:`Contract`.

    ``prices`` holds every price the items use, read with their tiers; ``products`` and
    ``meters`` (by id) give names and meter keys.
    """
    findings: list[Finding] = []
    try:
        contract = _contract(sub, items, system=system, prices=prices, products=products, meters=meters,
                             findings=findings)
    except _Blocked as blocked:
        findings.insert(0, blocked.finding)
        return MappedContract(None, findings)
    return MappedContract(contract, findings)


def _contract(
    sub: dict[str, Any],
    items: list[dict[str, Any]],
    *,
    system: str,
    prices: dict[str, dict[str, Any]],
    products: dict[str, dict[str, Any]],
    meters: dict[str, dict[str, Any]],
    findings: list[Finding],
) -> Contract:
    currency = sub["currency"]
    if not items:
        raise _Blocked(Finding("items", "the subscription has no items", "add a price to the subscription"))
    resolved = []
    for n, item in enumerate(items):
        price = item.get("price") or item.get("plan")
        pid = ref_id(price)
        full = prices.get(pid or "") or (price if isinstance(price, dict) else None)
        if full is None:
            raise _Blocked(Finding(f"items[{n}].price", f"price {pid} was not found",
                                   "check the price exists and the key may read prices"))
        resolved.append((item, full))
    billing_recurring = next((p["recurring"] for _, p in resolved if p.get("recurring")), None)
    if billing_recurring is None:
        raise _Blocked(Finding("items", "no item has a recurring price", "subscriptions need recurring prices"))
    billing = _interval(billing_recurring, "items[0].price")
    anchor = datetime.fromtimestamp(int(sub.get("billing_cycle_anchor") or sub["start_date"]), UTC)
    billing["anchor_day"] = anchor.day
    months = billing["interval_count"] * (12 if billing["interval"] == "year" else 1)
    start = day(sub["start_date"])
    assert start is not None
    if months > 1 and (anchor.year * 12 + anchor.month - start.year * 12 - start.month) % months:
        findings.append(Finding(
            "billing_cycle_anchor",
            f"the billing anchor ({anchor:%Y-%m-%d}) is not a whole number of periods from the start month, "
            "so the first period boundary differs", "review the first period's rated amounts", blocking=False,
        ))
    components = []
    for n, (item, price) in enumerate(resolved):
        own = _interval(price["recurring"], f"items[{n}].price") if price.get("recurring") else None
        cadence = None
        if own and (own["interval"], own["interval_count"]) != (billing["interval"], billing["interval_count"]):
            cadence = own
        product = products.get(ref_id(price.get("product")) or "", {})
        components.append(_component(item, price, currency, product_name=product.get("name", ""), meters=meters,
                                     cadence=cadence, findings=findings, n=n))
    for name, reason in (
        ("billing_thresholds", "threshold billing (an invoice when usage reaches an amount) is not represented"),
        ("pause_collection", "paused collection is not represented (the terms keep billing)"),
        ("schedule", "the subscription schedule's future phases are not represented (only the current prices are)"),
    ):
        if sub.get(name):
            findings.append(Finding(name, reason, "review the contract's future periods by hand", blocking=False))
    end = None
    for moment in (sub.get("ended_at"), sub.get("cancel_at")):
        if moment:
            end = last_day(sub["start_date"], moment)
            break
    else:
        if sub.get("cancel_at_period_end"):
            end = last_day(sub.get("current_period_start"), sub.get("current_period_end"))
    if end is not None and end < start:
        end = start
    document: dict[str, Any] = {
        "currency": currency_code(currency),
        "start_date": start.isoformat(),
        "billing": billing,
        "components": components,
        "discounts": _discounts(sub, currency, months, findings),
        "metadata": {
            "stripe_subscription": sub["id"],
            "stripe_status": sub.get("status") or "",
            "stripe_collection_method": sub.get("collection_method") or "",
        },
    }
    if end is not None:
        document["end_date"] = end.isoformat()
    not_represented = [f.field for f in findings if not f.blocking]
    if not_represented:
        document["metadata"]["not_represented"] = ", ".join(not_represented)
    try:
        terms = load_terms(document, source=f"stripe subscription {sub['id']}")
    except ConfigError as err:
        raise _Blocked(Finding("terms", f"the mapped terms are invalid: {err.message}", err.fix or "")) from None
    names = [c.get("name") for c in components if c.get("name")]
    return Contract(
        id=record_id("ctr", system, sub["id"]),
        system=system,
        external_id=sub["id"],
        fetched_at=utcnow(),
        payload_hash=payload_hash({"subscription": sub, "items": items, "prices": [p for _, p in resolved]}),
        customer_external_id=ref_id(sub["customer"]) or "",
        name=(sub.get("description") or ", ".join(dict.fromkeys(names)) or sub["id"])[:512],
        status=STATUS.get(sub.get("status", ""), "active"),
        currency=currency_code(currency),
        start_date=start,
        end_date=end,
        terms=terms_to_document(terms),
        terms_hash=terms_hash(terms),
    )
