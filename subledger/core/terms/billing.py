"""Billing cadence: how often a contract is invoiced, and on which day periods start."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from subledger.core.terms.base import TermsModel

_MONTHS = {"month": 1, "quarter": 3, "year": 12}


class Cadence(TermsModel):
    """A repeating interval: every ``interval_count`` months, quarters or years."""

    interval: Literal["month", "quarter", "year"] = "month"
    interval_count: int = Field(default=1, ge=1, le=120, description="e.g. 6 with month: every six months")

    @property
    def months(self) -> int:
        """The interval length in months."""
        return _MONTHS[self.interval] * self.interval_count


class BillingCycle(Cadence):
    """The contract's billing period, and the day of the month periods start on.

    Periods start on ``anchor_day`` of every ``months``-th month counted from the
    contract's start month. A day past a month's end means that month's last day
    (anchor 31 gives 31 January, 28 February, 31 March). Without an anchor day, periods
    start on the day of the contract's start date.
    """

    anchor_day: int | None = Field(default=None, ge=1, le=31)
