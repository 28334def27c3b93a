"""Rated lines: one priced charge (or adjustment) with everything needed to explain it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

from subledger.core.db_types import decimal_text
from subledger.core.money import to_major

# Line kinds, in the order a period's lines are built.
FLAT_FEE = "flat_fee"
USAGE = "usage"
DISCOUNT = "discount"
MINIMUM_TRUE_UP = "minimum_true_up"
MAXIMUM_CAP = "maximum_cap"
CREDIT = "credit"

CHARGE_KINDS = frozenset({FLAT_FEE, USAGE})


class TierCharge(NamedTuple):
    """What one tier contributed: its units at its price, plus its flat fee (exact, unrounded)."""

    tier: int
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "quantity": decimal_text(self.quantity),
            "unit_price": decimal_text(self.unit_price),
            "flat_fee": decimal_text(self.flat_fee),
            "amount": decimal_text(self.amount),
        }


class RatedLine(NamedTuple):
    """One line of a rated period (an immutable record; a named tuple because periods make
    millions of them and a frozen dataclass costs four times as much to build).

    ``exact_amount`` is the unrounded major-unit amount; ``amount`` is it rounded once to
    minor units with the contract's rounding. A period's total is the sum of ``amount``.

    Attributes:
        key: stable identity of the line within the contract (kind, component, dimension,
            service start); a re-rating of the same period produces the same keys, which
            is how late-usage deltas are found.
        kind: flat_fee, usage, discount, minimum_true_up, maximum_cap or credit.
        component: the component id (or the discount, commitment or grant id).
        dimension: the dimension values a matrix line is for, else empty.
        quantity: the billed quantity (after allotments and unit credits).
        usage: the aggregated usage before allotments and unit credits (usage lines).
        included: units covered by the allotment.
        credited: units covered by unit credit grants.
        unit_price: the price per unit, when one price applies to every unit.
        tiers: the tier breakdown (graduated and volume prices).
        exact_amount: the unrounded amount in major units.
        amount: the line amount in minor units.
        service_start, service_end: the service period ``[start, end)``.
        billed_on: when the line is due: the start of an advance fee's period, else its end.
        proration: ``(days charged, days in the full cycle)`` for a prorated line.
        detail: model-specific facts (package blocks, transaction count, percent rate).
        evidence: references to what the number came from (aggregates, contract, grant).
    """

    key: str
    kind: str
    component: str
    name: str
    quantity: Decimal
    exact_amount: Decimal
    amount: int
    service_start: date
    service_end: date
    billed_on: date
    dimension: tuple[tuple[str, str], ...] = ()
    usage: Decimal | None = None
    included: Decimal | None = None
    credited: Decimal | None = None
    unit_price: Decimal | None = None
    tiers: tuple[TierCharge, ...] = ()
    proration: tuple[int, int] | None = None
    detail: tuple[tuple[str, str], ...] = ()
    evidence: tuple[dict[str, Any], ...] = ()

    def to_json(self, currency: str) -> dict[str, Any]:
        """JSON-safe dict; amounts as major-unit decimal strings (``"12.34"``)."""
        out: dict[str, Any] = {
            "key": self.key,
            "kind": self.kind,
            "component": self.component,
            "name": self.name,
            "dimension": dict(self.dimension),
            "quantity": decimal_text(self.quantity),
            "unit_price": None if self.unit_price is None else decimal_text(self.unit_price),
            "tiers": [t.to_json() for t in self.tiers],
            "exact_amount": decimal_text(self.exact_amount),
            "amount": decimal_text(to_major(self.amount, currency)),
            "amount_minor": self.amount,
            "service_period": {"start": self.service_start.isoformat(), "end": self.service_end.isoformat()},
            "billed_on": self.billed_on.isoformat(),
            "evidence": list(self.evidence),
        }
        for name in ("usage", "included", "credited"):
            value = getattr(self, name)
            if value is not None:
                out[name] = decimal_text(value)
        if self.proration is not None:
            out["proration"] = {"days": self.proration[0], "cycle_days": self.proration[1]}
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


def line_key(
    kind: str, component: str, start: date | str, dimension: tuple[tuple[str, str], ...] = ()
) -> str:
    """The stable key of a line: ``usage:api_calls:2026-03-01`` (plus ``:region=eu`` per value)."""
    key = f"{kind}:{component}:{start if isinstance(start, str) else start.isoformat()}"
    if dimension:
        key += ":" + ",".join(f"{k}={v}" for k, v in dimension)
    return key
