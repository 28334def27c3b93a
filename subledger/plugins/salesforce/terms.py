"""A closed-won Opportunity (its line items, products, price book entries and Contract) as contract terms.

Pure functions: records in, a canonical :class:`~subledger.core.model.Contract` (terms
validated by :func:`subledger.core.terms.load_terms`) or problems out. Rules, also in
``docs/connectors/salesforce.md``:

* each line item is a component. A line is **usage** when its charge type (CPQ) says
  ``Usage``, or, without a charge type, when it names a meter; otherwise it is a
  **flat fee** of ``unit_price`` x ``quantity`` per billing period;
* a usage line is priced by its tiers (JSON, ``tier_mode`` graduated or volume) or, without
  tiers, per unit at its overage rate, or, with a package size, per package of that many
  units (rounded up) at its overage rate; its included units are an allotment per period. A
  usage line's own sales price, when not zero and not the field the overage rate is read
  from, is billed as a flat fee beside it;
* ``minimum_commitment`` is a minimum per period (or per term), ``prepaid_credits`` a money
  grant from the term's start, expiring on ``prepaid_credits_expire`` (default: when the term ends);
* any value the mapping cannot read (a malformed tier string, an unknown interval, a missing
  currency or meter) is a :class:`TermProblem` naming the record and the field, and the
  contract is not loaded: nothing is defaulted silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError
from subledger.core.model import Contract, payload_hash, record_id
from subledger.core.money import exponent as minor_units
from subledger.core.terms import load_terms, terms_hash, terms_to_document
from subledger.plugins.salesforce.mapping import SalesforceMapping
from subledger.plugins.salesforce.soql import parse_datetime

INTERVALS: dict[str, tuple[str, int]] = {
    "month": ("month", 1), "monthly": ("month", 1),
    "quarter": ("quarter", 1), "quarterly": ("quarter", 1),
    "semiannual": ("month", 6), "semi-annual": ("month", 6), "semiannually": ("month", 6),
    "year": ("year", 1), "yearly": ("year", 1), "annual": ("year", 1), "annually": ("year", 1),
}
_STATUS = {"activated": "active", "draft": "draft", "inapproval": "draft", "in approval process": "draft",
           "expired": "ended", "terminated": "cancelled"}
_SLUG = re.compile(r"[^a-z0-9_]+")


class TermProblem(Exception):
    """A value the mapping cannot turn into a term."""

    def __init__(self, record: str, field: str, value: Any, problem: str, fix: str) -> None:
        shown = "" if value is None else f" = {str(value)[:120]!r}"
        super().__init__(f"{record}: {field}{shown}: {problem}")
        self.record = record
        self.field = field
        self.fix = fix


@dataclass
class Records:
    """What one opportunity's terms are read from."""

    opportunity: dict[str, Any]
    lines: list[dict[str, Any]] = field(default_factory=list)
    contract: dict[str, Any] | None = None
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of(self, sobject: str, line: dict[str, Any] | None) -> dict[str, Any] | None:
        if sobject == "Opportunity":
            return self.opportunity
        if sobject == "Contract":
            return self.contract
        if line is None:
            return None
        if sobject == "OpportunityLineItem":
            return line
        if sobject == "Product2":
            return self.products.get(line.get("Product2Id") or "")
        return self.entries.get(line.get("PricebookEntryId") or "")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _label(sobject: str, record: dict[str, Any]) -> str:
    return f"{sobject} {record.get('Id')}"


class _Reader:
    def __init__(self, records: Records, mapping: SalesforceMapping) -> None:
        self.records = records
        self.mapping = mapping

    def first(self, term: str, line: dict[str, Any] | None = None) -> tuple[Any, str, str]:
        """``(value, "Object.Field", record label)`` of the first non-empty source of ``term``."""
        sources: list[str] = getattr(self.mapping.terms, term)
        for source in sources:
            sobject, name = source.split(".", 1)
            record = self.records.of(sobject, line)
            if record is not None and not _empty(record.get(name)):
                return record[name], source, _label(sobject, record)
        fallback = line if line is not None else self.records.opportunity
        kind = "OpportunityLineItem" if line is not None else "Opportunity"
        return None, " or ".join(sources) or f"(terms.{term} is not mapped)", _label(kind, fallback)

    def contract_level(self, term: str) -> tuple[Any, str, str]:
        """A contract-wide term; one read from line items must agree across the lines."""
        value, source, where = self.first(term)
        if value is not None:
            return value, source, where
        found = [(self.first(term, line)) for line in self.records.lines]
        found = [f for f in found if f[0] is not None]
        distinct = {str(f[0]).strip().lower() for f in found}
        if len(distinct) > 1:
            raise TermProblem(_label("Opportunity", self.records.opportunity), found[0][1],
                              ", ".join(sorted(distinct)), f"the line items disagree on {term}",
                              f"give every line item the same {term}, or split the opportunity")
        return found[0] if found else (None, source, where)


def _decimal(value: Any, where: str, source: str, what: str) -> Decimal:
    if isinstance(value, bool):
        raise TermProblem(where, source, value, f"{what} must be a number", "store a number in the field")
    if isinstance(value, float):  # never from the SDK (parse_float=Decimal); refuse rather than guess
        raise TermProblem(where, source, value, f"{what} arrived as a binary float", "report this to subledger")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise TermProblem(where, source, value, f"{what} is not a number",
                          "store a plain decimal number such as 0.02") from None
    if not number.is_finite() or number < 0:
        raise TermProblem(where, source, value, f"{what} must be a non-negative number", "correct the value")
    return number


def _date(value: Any, where: str, source: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise TermProblem(where, source, value, "not a date", "store a date (YYYY-MM-DD)") from None


def parse_tiers(value: Any, where: str, source: str) -> list[dict[str, Any]]:
    """The tier text of a ``Pricing_Tiers__c``-style field.

    Format (JSON, numbers exact): ``[{"up_to": 10000, "unit_price": "0.02"},
    {"up_to": null, "unit_price": "0.015", "flat_fee": "0"}]``; ``up_to`` is inclusive and the
    last tier open (``null``).
    """
    fix = ('write the tiers as JSON: [{"up_to": 10000, "unit_price": "0.02"}, {"up_to": null, '
           '"unit_price": "0.015"}] (up_to inclusive, the last tier open)')
    try:
        tiers = json.loads(str(value), parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise TermProblem(where, source, value, f"the tiers are not valid JSON ({exc.msg} at {exc.pos})",
                          fix) from None
    if not isinstance(tiers, list) or not tiers or not all(isinstance(t, dict) for t in tiers):
        raise TermProblem(where, source, value, "the tiers must be a non-empty JSON list of objects", fix)
    out = []
    for i, tier in enumerate(tiers):
        unknown = set(tier) - {"up_to", "unit_price", "flat_fee"}
        if unknown or "unit_price" not in tier:
            raise TermProblem(where, source, value, f"tier {i + 1} needs unit_price and may have up_to, flat_fee "
                              f"(found {', '.join(sorted(tier)) or 'nothing'})", fix)
        entry = {"up_to": None if tier.get("up_to") in (None, "inf") else
                 _decimal(tier["up_to"], where, source, f"tier {i + 1} up_to"),
                 "unit_price": _decimal(tier["unit_price"], where, source, f"tier {i + 1} unit_price")}
        if tier.get("flat_fee") is not None:
            entry["flat_fee"] = _decimal(tier["flat_fee"], where, source, f"tier {i + 1} flat_fee")
        out.append(entry)
    return out


def _component_id(line: dict[str, Any], product: dict[str, Any] | None, meter: str | None, taken: set[str]) -> str:
    base = (product or {}).get("ProductCode") or meter or (product or {}).get("Name") or line.get("Name") or "line"
    slug = _SLUG.sub("_", str(base).lower()).strip("_")[:60] or "line"
    candidate, n = slug, 2
    while candidate in taken:
        candidate, n = f"{slug}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _money(value: Decimal, currency: str, where: str, source: str, what: str) -> Decimal:
    places = minor_units(currency)
    if value != value.quantize(Decimal(1).scaleb(-places)):
        raise TermProblem(where, source, decimal_text(value), f"{what} has more than {places} decimal places for "
                          f"{currency}", f"round it to {places} places")
    return value


def build_terms(records: Records, mapping: SalesforceMapping) -> dict[str, Any]:
    """The contract-terms document of one opportunity (unvalidated), or a :class:`TermProblem`."""
    r = _Reader(records, mapping)
    opp = records.opportunity
    opp_label = _label("Opportunity", opp)

    currency_value, currency_source, where = r.contract_level("currency")
    currency = str(currency_value).strip().upper() if currency_value is not None else mapping.contracts.default_currency
    if not currency:
        raise TermProblem(where, currency_source, None, "no currency",
                          "set the currency on the record (multi-currency orgs), or contracts.default_currency in "
                          "the mapping file (single-currency orgs)")
    try:
        minor_units(currency)
    except ConfigError:
        raise TermProblem(where, currency_source, currency, "not an ISO 4217 currency with a minor unit",
                          "use a code such as USD or EUR") from None

    start_value, start_source, where = r.contract_level("start_date")
    if start_value is None:
        raise TermProblem(where, start_source, None, "no start date", "set the contract's start date")
    start = _date(start_value, where, start_source)
    end_value, end_source, where = r.contract_level("end_date")
    end = _date(end_value, where, end_source) if end_value is not None else None

    doc: dict[str, Any] = {"currency": currency, "start_date": start.isoformat()}
    if end is not None:
        doc["end_date"] = end.isoformat()

    interval_value, interval_source, where = r.contract_level("billing_interval")
    if interval_value is not None:
        key = str(interval_value).strip().lower()
        if key not in INTERVALS:
            raise TermProblem(where, interval_source, interval_value, "not a billing interval subledger knows",
                              "use Monthly, Quarterly, Semiannual or Annual")
        unit, count = INTERVALS[key]
        doc["billing"] = {"interval": unit, "interval_count": count}

    components: list[dict[str, Any]] = []
    taken: set[str] = set()
    for line in records.lines:
        components.extend(_line_components(r, line, taken))
    if not components:
        raise TermProblem(opp_label, "OpportunityLineItem", None, "the opportunity has no line items",
                          "add the products sold to the opportunity")
    doc["components"] = components

    minimum_value, minimum_source, where = r.contract_level("minimum_commitment")
    if minimum_value is not None:
        amount = _money(_decimal(minimum_value, where, minimum_source, "minimum commitment"), currency, where,
                        minimum_source, "the minimum commitment")
        per_value, per_source, per_where = r.contract_level("minimum_commitment_period")
        per = "period" if per_value is None else str(per_value).strip().lower()
        if per in ("term", "contract", "total"):
            per = "term"
        elif per not in ("period", "billing period", "month", "monthly"):
            raise TermProblem(per_where, per_source, per_value, "not a commitment period",
                              "use Period (each billing period) or Term (the whole term)")
        else:
            per = "period"
        if amount > 0:
            doc["commitments"] = [{"id": "minimum", "kind": "minimum", "amount": amount, "per": per}]

    credits_value, credits_source, where = r.contract_level("prepaid_credits")
    if credits_value is not None:
        amount = _money(_decimal(credits_value, where, credits_source, "prepaid credits"), currency, where,
                        credits_source, "the prepaid credits")
        if amount > 0:
            grant: dict[str, Any] = {"id": "prepaid", "amount": amount, "category": "paid", "effective": start}
            expire_value, expire_source, expire_where = r.contract_level("prepaid_credits_expire")
            if expire_value is not None:
                grant["expires"] = _date(expire_value, expire_where, expire_source)
            elif end is not None:
                grant["expires"] = end + timedelta(days=1)
            doc["credits"] = [grant]
    doc["metadata"] = {"salesforce_opportunity": str(opp.get("Id"))}
    if records.contract is not None:
        doc["metadata"]["salesforce_contract"] = str(records.contract.get("Id"))
    return doc


def _line_components(r: _Reader, line: dict[str, Any], taken: set[str]) -> list[dict[str, Any]]:
    where = _label("OpportunityLineItem", line)
    product = r.records.products.get(line.get("Product2Id") or "")
    name = str((product or {}).get("Name") or line.get("Name") or "")
    charge, charge_source, _ = r.first("charge_type", line)
    meter, meter_source, meter_where = r.first("meter", line)
    if charge is not None:
        kind = str(charge).strip().lower().replace("-", "").replace(" ", "")
        if kind not in ("usage", "recurring", "onetime"):
            raise TermProblem(where, charge_source, charge, "not a charge type subledger knows",
                              "use Usage, Recurring or One-Time")
        if kind == "onetime":
            raise TermProblem(where, charge_source, charge, "one-time charges are not part of recurring contract "
                              "terms", "bill one-time charges outside the contract terms, or change the charge type")
        usage = kind == "usage"
        if usage and meter is None:
            raise TermProblem(meter_where, meter_source, None, "a usage line without a meter",
                              "set the meter key (the name usage events carry) on the line item or its product")
    else:
        usage = meter is not None
    qty_value, qty_source, qty_where = r.first("quantity", line)
    quantity = Decimal(1) if qty_value is None else _decimal(qty_value, qty_where, qty_source, "quantity")
    price_value, price_source, price_where = r.first("unit_price", line)
    timing_value, timing_source, timing_where = r.first("billing_timing", line)
    timing = None
    if timing_value is not None:
        timing = str(timing_value).strip().lower()
        if timing not in ("advance", "arrears"):
            raise TermProblem(timing_where, timing_source, timing_value, "not a billing type",
                              "use Advance or Arrears")
    out: list[dict[str, Any]] = []
    if usage:
        cid = _component_id(line, product, str(meter), taken)
        component: dict[str, Any] = {"type": "usage", "id": cid, "name": name, "meter": str(meter).strip()}
        tiers_value, tiers_source, tiers_where = r.first("tiers", line)
        rate_value, rate_source, rate_where = r.first("overage_rate", line)
        if tiers_value is not None:
            mode_value, mode_source, mode_where = r.first("tier_mode", line)
            mode = "graduated" if mode_value is None else str(mode_value).strip().lower()
            if mode not in ("graduated", "volume"):
                raise TermProblem(mode_where, mode_source, mode_value, "not a tier mode",
                                  "use Graduated or Volume")
            component["price"] = {"model": mode, "tiers": parse_tiers(tiers_value, tiers_where, tiers_source)}
        elif rate_value is not None:
            rate = _decimal(rate_value, rate_where, rate_source, "overage rate")
            size_value, size_source, size_where = r.first("package_size", line)
            if size_value is None:
                component["price"] = {"model": "per_unit", "unit_price": rate}
            else:
                size = _decimal(size_value, size_where, size_source, "package size")
                if size != size.to_integral_value() or size < 1:
                    raise TermProblem(size_where, size_source, size_value, "a package size must be a whole number "
                                      "of units", "store a whole number such as 10000 (units per package)")
                component["price"] = {"model": "package", "package_size": int(size), "package_price": rate,
                                      "rounding": "up"}
        else:
            raise TermProblem(where, f"{rate_source}, {tiers_source}", None, "a usage line without an overage rate "
                              "or tiers", "set the overage rate (or the pricing tiers) of the line item")
        included_value, included_source, included_where = r.first("included_units", line)
        if included_value is not None:
            included = _decimal(included_value, included_where, included_source, "included units")
            if included > 0:
                component["allotment"] = {"quantity": included, "per": "period"}
        out.append(component)
        overage_fields = set(r.mapping.terms.overage_rate)
        if price_value is not None and price_source not in overage_fields:
            price = _decimal(price_value, price_where, price_source, "sales price")
            if price > 0:
                fee = {"type": "flat_fee", "id": f"{cid}_fee", "name": f"{name} (fee)", "amount": price,
                       "quantity": quantity}
                if timing:
                    fee["timing"] = timing
                taken.add(fee["id"])
                out.append(fee)
        return out
    if price_value is None:
        raise TermProblem(price_where, price_source, None, "a recurring line without a price",
                          "set the line item's sales price")
    fee = {"type": "flat_fee", "id": _component_id(line, product, None, taken), "name": name,
           "amount": _decimal(price_value, price_where, price_source, "sales price"), "quantity": quantity}
    if timing:
        fee["timing"] = timing
    return [fee]


def contract_status(records: Records, end: date | None, today: date) -> str:
    """Salesforce's contract status in subledger's words (no Contract: active until the end date)."""
    if records.contract is not None:
        code = str(records.contract.get("StatusCode") or records.contract.get("Status") or "").strip().lower()
        if code in _STATUS:
            status = _STATUS[code]
            return "ended" if status == "active" and end is not None and end < today else status
    return "ended" if end is not None and end < today else "active"


def opportunity_contract(records: Records, mapping: SalesforceMapping, *, system: str, today: date) -> Contract:
    """The canonical contract of one closed-won opportunity.

    Raises:
        TermProblem: a value the mapping cannot read, naming the record and the field.
    """
    opp = records.opportunity
    doc = build_terms(records, mapping)
    try:
        terms = load_terms(doc, source=f"Salesforce Opportunity {opp.get('Id')} terms")
    except ConfigError as exc:
        raise TermProblem(_label("Opportunity", opp), "terms", None, exc.message, exc.fix or "correct the fields"
                          ) from None
    stored = terms_to_document(terms)
    end = terms.end_date
    status = contract_status(records, end, today)
    used_products = {str(ln.get("Product2Id")) for ln in records.lines}
    used_entries = {str(ln.get("PricebookEntryId")) for ln in records.lines}
    source = {"opportunity": opp, "lines": records.lines, "contract": records.contract, "status": status,
              "products": {k: v for k, v in records.products.items() if k in used_products},
              "entries": {k: v for k, v in records.entries.items() if k in used_entries}}
    return Contract(
        id=record_id("ctr", system, str(opp["Id"])),
        system=system,
        external_id=str(opp["Id"]),
        customer_external_id=str(opp.get("AccountId") or ""),
        name=str(opp.get("Name") or ""),
        status=status,
        currency=terms.currency,
        start_date=terms.start_date,
        end_date=end,
        terms=stored,
        terms_hash=terms_hash(terms),
        payload_hash=payload_hash(source),
    )


def modstamp(record: dict[str, Any]) -> str | None:
    """The record's ``SystemModstamp`` as ISO UTC text (None when absent)."""
    value = record.get("SystemModstamp")
    return None if value is None else parse_datetime(str(value)).isoformat()
