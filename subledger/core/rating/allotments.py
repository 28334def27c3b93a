"""Allotments: included units, per period (optionally rolling over) or as a term pool.

``carried`` is what the state holds for the component: units rolled over from earlier
periods, or what is left of the term pool. Included units are not prorated for a partial
period. Unused units (including any carried in) roll over, up to ``rollover_cap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class AllotmentPlan:
    """A compiled allotment."""

    quantity: Decimal
    per_term: bool
    rollover: bool
    rollover_cap: Decimal | None

    def opening(self) -> Decimal:
        """What the state holds before the first period: the pool, or nothing carried."""
        return self.quantity if self.per_term else ZERO


def apply_allotment(plan: AllotmentPlan, carried: Decimal, usage: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """Take included units from ``usage``: returns (included used, billable, carried to next)."""
    available = carried if plan.per_term else plan.quantity + carried
    used = usage if usage < available else available
    if used < 0:
        used = ZERO
    left = available - used
    if plan.per_term:
        carry = left
    elif plan.rollover:
        carry = left if plan.rollover_cap is None or left < plan.rollover_cap else plan.rollover_cap
    else:
        carry = ZERO
    return used, usage - used, carry
