"""Performance obligations: what is promised, how it is earned, and how it is billed.

An :class:`Obligation` holds one or more :class:`Recognition` streams (a curve and the
kind of line it posts: revenue, breakage or a contra kind) and the :class:`Billing`
events that invoice it. Everything about the journal follows from those two series:
recognized minus billed is a contract asset (unbilled receivable) when positive and a
contract liability (deferred revenue) when negative.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from subledger.core.money import Rounding, normalize_currency
from subledger.core.revrec.calendar import Month, as_utc, through_instant
from subledger.core.revrec.curves import Curve
from subledger.core.revrec.schedule import final_amount, monthly, recognized_before


class Treatment(StrEnum):
    """How an obligation is satisfied (the docs have one page per treatment)."""

    RATABLE = "ratable"  # flat fees over a service period
    USAGE = "usage"  # usage, overage and per-unit fees, as the usage occurs
    POINT_IN_TIME = "point_in_time"  # one-off charges with no service period
    CREDIT = "credit"  # prepaid credits: released as redeemed, plus breakage
    COMMITMENT = "commitment"  # minimum commitments under one of three policies


class LineKind(StrEnum):
    """Which account a recognized amount goes to. Contra kinds reduce revenue."""

    REVENUE = "revenue"
    BREAKAGE = "breakage"
    DISCOUNT = "discount"  # contra: discounts and coupons
    REFUND = "refund"  # contra: credit notes and refunds of revenue already recognized
    PROMOTIONAL = "promotional"  # contra: promotional credits and customer-balance credits

    @property
    def is_contra(self) -> bool:
        return self in (LineKind.DISCOUNT, LineKind.REFUND, LineKind.PROMOTIONAL)


@dataclass(frozen=True, slots=True)
class Recognition:
    """One stream of recognition of an obligation."""

    kind: LineKind
    curve: Curve
    evidence: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Billing:
    """An amount invoiced (or credited, when negative) against an obligation.

    ``document`` names the source document the journal groups by, e.g.
    ``invoice:stripe:in_123`` or ``credit_note:stripe:cn_9``.
    """

    at: datetime
    amount_minor: int
    document: str
    evidence: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", as_utc(self.at))


@dataclass(frozen=True, slots=True)
class ScheduleLine:
    """Minor units of one kind recognized for an obligation in one month."""

    month: Month
    kind: LineKind
    amount_minor: int


@dataclass(frozen=True)
class Obligation:
    """A performance obligation with its recognition streams and its billings.

    Attributes:
        key: stable identifier, unique across the store (used in journal evidence).
        currency: ISO code of every amount.
        treatment: how it is satisfied.
        product: the product or component whose revenue account it posts to.
        group: what the journal groups recognition entries by (usually the contract).
    """

    key: str
    currency: str
    treatment: Treatment
    product: str
    recognitions: tuple[Recognition, ...]
    billings: tuple[Billing, ...] = ()
    group: str = ""
    contract_id: str | None = None
    customer_external_id: str | None = None
    description: str = ""
    evidence: tuple[dict[str, Any], ...] = ()
    rounding: Rounding = Rounding.HALF_UP
    attributes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", normalize_currency(self.currency))
        if not self.group:
            object.__setattr__(self, "group", self.contract_id or self.customer_external_id or self.key)

    def transaction_price(self) -> int:
        """Everything the obligation will ever recognize, net of contra kinds."""
        return sum(final_amount(r.curve, self.rounding) for r in self.recognitions)

    def recognized_before(self, at: datetime, kinds: Iterable[LineKind] | None = None) -> int:
        wanted = set(kinds) if kinds is not None else None
        return sum(
            recognized_before(r.curve, at, self.rounding)
            for r in self.recognitions
            if wanted is None or r.kind in wanted
        )

    def recognized_through(self, through: date) -> int:
        return self.recognized_before(through_instant(through))

    def billed_through(self, through: date) -> int:
        bound = through_instant(through)
        return sum(b.amount_minor for b in self.billings if b.at < bound)

    def schedule(self, *, through: date | None = None) -> list[ScheduleLine]:
        """Recognition per month and kind (each stream rounded cumulatively)."""
        lines: dict[tuple[Month, LineKind], int] = {}
        for r in self.recognitions:
            for s in monthly(r.curve, self.rounding, through=through):
                assert isinstance(s.period, Month)
                lines[(s.period, r.kind)] = lines.get((s.period, r.kind), 0) + s.amount_minor
        return [ScheduleLine(m, k, a) for (m, k), a in sorted(lines.items()) if a]
