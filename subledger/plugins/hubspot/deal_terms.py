"""A closed-won deal and its line items, as a canonical contract-terms document (pure, no I/O).

Deal properties give the contract's currency, term dates, billing interval, minimum
commitment and prepaid credits (and when they expire); each line item is one component: a usage
component when it names a meter (included units, an overage rate per unit or, with a package size,
per package, or tiers), else a recurring flat fee (price x
quantity per billing frequency). A term the line item leaves empty is read from its product.

Nothing is guessed: a value the mapping cannot read (a malformed tier string, a missing
currency, a date that is not a date) is a :class:`TermProblem` naming the record and the
property, and the deal is rejected rather than loaded with a default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from subledger.core.errors import ConfigError
from subledger.core.terms import ContractTerms, load_terms
from subledger.plugins.hubspot.mapping import HubSpotMapping

INTERVALS = {
    "monthly": ("month", 1), "month": ("month", 1),
    "quarterly": ("quarter", 1), "quarter": ("quarter", 1),
    "per_six_months": ("month", 6), "semi_annually": ("month", 6),
    "annually": ("year", 1), "annual": ("year", 1), "year": ("year", 1), "yearly": ("year", 1),
    "per_two_years": ("year", 2), "per_three_years": ("year", 3),
}
OPEN = {"inf", "infinity", "+", "", "null"}


@dataclass(frozen=True)
class TermProblem:
    """A property the mapping cannot read: which record, which property, what is wrong, the fix."""

    object_type: str
    object_id: str
    property: str
    value: Any
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.object_type} {self.object_id}: property {self.property} = {self.value!r}: {self.reason}"


@dataclass
class _Reader:
    """Reads one object's properties, collecting problems instead of raising."""

    object_type: str
    object_id: str
    properties: dict[str, Any]
    problems: list[TermProblem]

    def raw(self, prop: str | None) -> str | None:
        if not prop:
            return None
        value = self.properties.get(prop)
        return None if value is None or str(value).strip() == "" else str(value).strip()

    def fail(self, prop: str, value: Any, reason: str, fix: str) -> None:
        self.problems.append(TermProblem(self.object_type, self.object_id, prop, value, reason, fix))

    def decimal(self, prop: str | None) -> Decimal | None:
        text = self.raw(prop)
        if text is None or prop is None:
            return None
        try:
            value = Decimal(plain_number(text))
        except InvalidOperation:
            self.fail(prop, text, "not a number", f"write {prop} as a plain decimal number such as 0.02")
            return None
        if not value.is_finite() or value < 0:
            self.fail(prop, text, "not a non-negative number", f"write {prop} as a number of zero or more")
            return None
        return value

    def day(self, prop: str) -> date | None:
        text = self.raw(prop)
        if text is None:
            return None
        try:
            if text.isdigit():  # HubSpot date properties are midnight UTC in epoch milliseconds
                return datetime.fromtimestamp(int(text) / 1000, UTC).date()
            return date.fromisoformat(text[:10])
        except (ValueError, OverflowError):
            self.fail(prop, text, "not a date", f"set {prop} with HubSpot's date picker (YYYY-MM-DD)")
            return None


_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def plain_number(text: str) -> str:
    """``12,500.50`` -> ``12500.50``; a comma anywhere else (``1.000,00``) is left for Decimal to refuse,
    since reading it either way would be a guess."""
    text = text.strip()
    return text.replace(",", "") if _GROUPED.match(text) else text


def parse_tiers(text: str) -> list[dict[str, str | None]]:
    """Tiers from ``"1000:0.02; 10000:0.015; inf:0.01"`` (``up_to:unit_price[+flat_fee]``).

    ``up_to`` is inclusive; the last tier is open (``inf``, ``+`` or empty). Commas in
    numbers group thousands (``1,000``); separators are ``;`` or new lines.

    Raises:
        ValueError: naming the malformed tier.
    """
    tiers: list[dict[str, str | None]] = []
    parts = [p.strip() for p in text.replace("\n", ";").split(";") if p.strip()]
    if not parts:
        raise ValueError("no tiers")
    for n, part in enumerate(parts, 1):
        if part.count(":") != 1:
            raise ValueError(f"tier {n} {part!r} is not up_to:unit_price")
        bound, price = (s.strip() for s in part.split(":"))
        flat = None
        if "+" in price:
            price, flat = (s.strip() for s in price.split("+", 1))
        up_to = None if bound.lower() in OPEN else plain_number(bound)
        price, flat = plain_number(price), (plain_number(flat) if flat is not None else None)
        for label, value in (("up_to", up_to), ("unit price", price), ("flat fee", flat)):
            if value is None:
                continue
            try:
                Decimal(value)
            except InvalidOperation:
                raise ValueError(f"tier {n} {part!r}: the {label} {value!r} is not a number") from None
        tier: dict[str, str | None] = {"up_to": up_to, "unit_price": price}
        if flat is not None:
            tier["flat_fee"] = flat
        tiers.append(tier)
    return tiers


def _usage_component(li: _Reader, product: _Reader | None, meter: str, m: HubSpotMapping) -> dict[str, Any] | None:
    lm, pm = m.line_item, m.product

    def pick(li_prop: str, product_prop: str | None) -> tuple[_Reader, str] | None:
        if li.raw(li_prop) is not None:
            return li, li_prop
        if product is not None and product_prop and product.raw(product_prop) is not None:
            return product, product_prop
        return None

    component: dict[str, Any] = {"type": "usage", "id": f"line_item_{li.object_id}",
                                 "name": li.raw("name") or meter, "meter": meter}
    if found := pick(lm.included_units, pm.included_units):
        included = found[0].decimal(found[1])
        if included is not None and included > 0:
            component["allotment"] = {"quantity": str(included)}
    tiers_at, rate_at = pick(lm.tiers, pm.tiers), pick(lm.overage_rate, pm.overage_rate)
    if tiers_at is not None:
        reader, prop = tiers_at
        try:
            tiers = parse_tiers(reader.raw(prop) or "")
        except ValueError as err:
            reader.fail(prop, reader.raw(prop), f"malformed tiers: {err}",
                        f'write {prop} as "up_to:unit_price; ...; inf:unit_price", e.g. "1000:0.02; inf:0.015"')
            return None
        model = (li.raw(lm.tier_model) or "graduated").lower()
        if model not in ("graduated", "volume"):
            li.fail(lm.tier_model, model, "unknown tier model", f"set {lm.tier_model} to graduated or volume")
            return None
        component["price"] = {"model": model, "tiers": tiers}
    elif rate_at is not None:
        rate = rate_at[0].decimal(rate_at[1])
        if rate is None:
            return None
        size_at = pick(lm.package_size, pm.package_size) if lm.package_size else None
        if size_at is None:
            component["price"] = {"model": "per_unit", "unit_price": str(rate)}
        else:
            # With a package size the overage rate is the price of one package, a partial one rounded up.
            reader, prop = size_at
            size = reader.decimal(prop)
            if size is None:
                return None
            if size != size.to_integral_value() or size < 1:
                reader.fail(prop, reader.raw(prop), "a package size must be a whole number of units",
                            f"write {prop} as a whole number such as 10000 (units per package)")
                return None
            component["price"] = {"model": "package", "package_size": str(int(size)), "package_price": str(rate),
                                  "rounding": "up"}
    else:
        li.fail(lm.overage_rate, None, f"the usage line for meter {meter!r} has no overage rate and no tiers",
                f"set {lm.overage_rate} or {lm.tiers} on the line item or its product")
        return None
    return component


def _flat_fee(li: _Reader, m: HubSpotMapping, cycle: tuple[str, int]) -> dict[str, Any] | None:
    lm = m.line_item
    frequency = li.raw(lm.billing_frequency)
    if frequency is None:
        return None  # a one-time item: not a recurring term (kept in the contract's metadata)
    cadence = INTERVALS.get(frequency.lower())
    if cadence is None:
        li.fail(lm.billing_frequency, frequency, "unknown billing frequency",
                f"use one of {', '.join(sorted(INTERVALS))}")
        return None
    price = li.decimal(lm.price)
    quantity = li.decimal(lm.quantity)
    if price is None:
        if li.raw(lm.price) is None:
            li.fail(lm.price, None, "a recurring line item without a price", f"set {lm.price} on the line item")
        return None
    fee: dict[str, Any] = {"type": "flat_fee", "id": f"line_item_{li.object_id}", "name": li.raw("name") or "",
                           "amount": str(price), "quantity": str(quantity if quantity is not None else 1)}
    if cadence != cycle:
        fee["cadence"] = {"interval": cadence[0], "interval_count": cadence[1]}
    return fee


def deal_terms(
    deal: dict[str, Any],
    line_items: list[dict[str, Any]],
    products: dict[str, dict[str, Any]],
    mapping: HubSpotMapping,
) -> tuple[ContractTerms | None, list[TermProblem]]:
    """The contract terms of a deal, or the problems that stop them being read exactly.

    Args:
        deal: the deal's ``properties`` with ``id``: ``{"id": "9001", "properties": {...}}``.
        line_items: the deal's line items, same shape.
        products: products by id, same shape (for terms a line item leaves empty).
        mapping: which properties hold which term.
    """
    problems: list[TermProblem] = []
    d = _Reader("deal", str(deal["id"]), deal.get("properties") or {}, problems)
    dm = m_deal = mapping.deal
    currency = d.raw(dm.currency)
    if currency is None:
        d.fail(dm.currency, None, "the deal has no currency",
               f"set {dm.currency} on the deal (an ISO code such as USD); subledger never assumes one")
    start, end = d.day(dm.start_date), d.day(dm.end_date)
    if start is None and d.raw(dm.start_date) is None:
        d.fail(dm.start_date, None, "the deal has no term start date", f"set {dm.start_date} on the deal")
    interval_text = d.raw(dm.billing_interval)
    cycle = ("month", 1)
    if interval_text is None:
        d.fail(dm.billing_interval, None, "the deal has no billing interval",
               f"set {dm.billing_interval} to monthly, quarterly or annually")
    elif interval_text.lower() not in INTERVALS:
        d.fail(dm.billing_interval, interval_text, "unknown billing interval",
               f"set {dm.billing_interval} to one of {', '.join(sorted(INTERVALS))}")
    else:
        cycle = INTERVALS[interval_text.lower()]
    components: list[dict[str, Any]] = []
    one_time: list[str] = []
    for item in sorted(line_items, key=lambda i: str(i["id"])):
        li = _Reader("line_item", str(item["id"]), item.get("properties") or {}, problems)
        product_id = li.raw(mapping.line_item.product_id)
        product = products.get(product_id or "")
        pr = _Reader("product", str(product["id"]), product.get("properties") or {}, problems) if product else None
        meter = li.raw(mapping.line_item.meter) or (pr.raw(mapping.product.meter) if pr else None)
        component = _usage_component(li, pr, meter, mapping) if meter else _flat_fee(li, mapping, cycle)
        if component is not None:
            components.append(component)
        elif not meter and li.raw(mapping.line_item.billing_frequency) is None:
            one_time.append(li.object_id)
    if not components and not problems:
        d.fail("line_items", None, "the deal has no recurring or usage line items",
               "add the contract's line items to the deal (a meter on usage lines, a billing frequency on fees)")
    doc: dict[str, Any] = {
        "currency": (currency or "").upper(),
        "start_date": start.isoformat() if start else None,
        "billing": {"interval": cycle[0], "interval_count": cycle[1]},
        "components": components,
        "metadata": {"hubspot_deal_id": d.object_id},
    }
    if one_time:
        doc["metadata"]["hubspot_one_time_line_items"] = ",".join(one_time)
    if end is not None:
        doc["end_date"] = end.isoformat()
    if (minimum := d.decimal(m_deal.minimum_commitment)) is not None and minimum > 0:
        doc["commitments"] = [{"id": "minimum", "kind": "minimum", "amount": str(minimum), "per": dm.minimum_per}]
    if (prepaid := d.decimal(m_deal.prepaid_credits)) is not None and prepaid > 0:
        grant: dict[str, Any] = {"id": "prepaid", "amount": str(prepaid), "category": "paid"}
        # The first day the credits can no longer be used; by default the day after the term ends.
        expires = d.day(m_deal.prepaid_credits_expire) if m_deal.prepaid_credits_expire else None
        if expires is None and end is not None:
            expires = end + timedelta(days=1)
        if expires is not None:  # effective from the start (the default), said so the expiry is checked against it
            grant.update(effective=start.isoformat() if start else None, expires=expires.isoformat())
        doc["credits"] = [grant]
    if problems:
        return None, problems
    try:
        return load_terms(doc, source=f"HubSpot deal {d.object_id}"), []
    except ConfigError as err:
        # The mapping read every property, but together they are not valid terms
        # (tiers out of order, money with too many decimals, an end before the start).
        return None, [TermProblem("deal", d.object_id, _blame(err.message, mapping), None, err.message,
                                  err.fix or "correct the deal's terms properties")]


def _blame(message: str, mapping: HubSpotMapping) -> str:
    """The mapped property an error about the assembled terms points at, as best as can be told."""
    m = mapping
    for needle, prop in (("tiers", m.line_item.tiers), ("unit_price", m.line_item.overage_rate),
                         ("end_date", m.deal.end_date), ("start_date", m.deal.start_date),
                         ("currency", m.deal.currency), ("commitments", m.deal.minimum_commitment or ""),
                         ("expires", m.deal.prepaid_credits_expire or ""),
                         ("credits", m.deal.prepaid_credits or ""), ("amount", m.line_item.price)):
        if needle in message:
            return prop
    return "terms"
