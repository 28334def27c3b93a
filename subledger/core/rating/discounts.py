"""Discounts: when one applies, and how much it takes off.

A discount applies to every period that overlaps its window ``[starts, until)`` in full
(a period is not split). ``periods: N`` makes the window N billing cycles from the cycle
holding ``starts``. A percent discount is rounded once with the contract's rounding; an
amount discount never takes off more than the charges it applies to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from subledger.core.rating.periods import BillingPeriod


@dataclass(frozen=True, slots=True)
class DiscountPlan:
    """A compiled discount: ``percent`` or ``amount_minor``, a target and a window."""

    id: str
    percent: Decimal | None
    amount_minor: int | None
    applies_to: str | None
    starts: date
    until: date | None

    def active(self, period: BillingPeriod) -> bool:
        return period.end > self.starts and (self.until is None or period.start < self.until)


def discount_off(plan: DiscountPlan, base_minor: int, rounding_mode: str) -> int:
    """The (positive) minor units taken off ``base_minor``; never more than the base."""
    if base_minor <= 0:
        return 0
    if plan.percent is not None:
        off = int((Decimal(base_minor) * plan.percent / 100).quantize(Decimal(1), rounding=rounding_mode))
    else:
        assert plan.amount_minor is not None
        off = plan.amount_minor
    return min(off, base_minor)
