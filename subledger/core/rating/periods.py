"""Billing periods: where each period of a contract starts and ends.

Periods are whole UTC days, half-open ``[start, end)``. A contract's periods start on
its anchor day every ``months`` months, counted from the start date's month; an anchor
past a month's end falls on that month's last day (as Stripe does). The first and last
periods are clipped to the term and are then *partial*: ``cycle_start``/``cycle_end``
keep the full cycle so a fee can be prorated by day.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from subledger.core.errors import ConfigError
from subledger.core.terms.bounds import DATE_FIX, DATE_RANGE, FIRST_DAY, LAST_DAY, date_problem

MAX_CYCLE_MONTHS = 1440
"""The longest billing cycle (120 years, what ``interval_count`` allows): cycle starts stay in range."""

MAX_PERIODS = (LAST_DAY.year - FIRST_DAY.year + 1) * 12
"""The most periods a contract has: monthly from 2000-01 through 2100-12. Rating never goes further
back than :data:`~subledger.core.terms.bounds.FIRST_DAY` (the back-billing horizon)."""


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """One billing period of a contract.

    Attributes:
        index: the cycle number counted from the cycle holding the start date (0 first).
        start: first day of service in the period.
        end: first day after the period (exclusive).
        cycle_start: start of the full cycle the period belongs to.
        cycle_end: end of the full cycle (exclusive).
        days, cycle_days: the period's and the full cycle's length in days.
        start_at, end_at: ``start`` and ``end`` as midnight UTC datetimes.
    """

    index: int
    start: date
    end: date
    cycle_start: date
    cycle_end: date
    # Derived once: the engine reads these for every line of the period.
    days: int = field(init=False, compare=False)
    cycle_days: int = field(init=False, compare=False)
    start_at: datetime = field(init=False, compare=False, repr=False)
    end_at: datetime = field(init=False, compare=False, repr=False)
    start_text: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        setter = object.__setattr__
        setter(self, "days", (self.end - self.start).days)
        setter(self, "cycle_days", (self.cycle_end - self.cycle_start).days)
        setter(self, "start_at", midnight(self.start))
        setter(self, "end_at", midnight(self.end))
        setter(self, "start_text", self.start.isoformat())

    @property
    def is_partial(self) -> bool:
        return self.start != self.cycle_start or self.end != self.cycle_end

    def to_json(self) -> dict[str, str | int | bool]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "index": self.index,
            "partial": self.is_partial,
            "cycle_start": self.cycle_start.isoformat(),
            "cycle_end": self.cycle_end.isoformat(),
        }


def midnight(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def add_months(year: int, month: int, months: int, day: int) -> date:
    """The date ``months`` after (year, month), on ``day`` clamped to the month's end."""
    total = year * 12 + (month - 1) + months
    y, m = divmod(total, 12)
    m += 1
    return date(y, m, min(day, calendar.monthrange(y, m)[1]))


@dataclass(frozen=True, slots=True)
class Schedule:
    """The cycle grid of a contract: anchor, length in months, and the term."""

    base_year: int
    base_month: int
    anchor_day: int
    months: int
    term_start: date
    term_end: date | None  # exclusive

    def cycle_start(self, k: int) -> date:
        return add_months(self.base_year, self.base_month, k * self.months, self.anchor_day)

    def first_cycle(self) -> int:
        """The cycle holding the term start (0, or -1 when the anchor falls after the start)."""
        return 0 if self.cycle_start(0) <= self.term_start else -1

    def cycle_of(self, day: date) -> int:
        """The cycle number holding ``day``."""
        months = (day.year - self.base_year) * 12 + (day.month - self.base_month)
        k = months // self.months
        while self.cycle_start(k) > day:
            k -= 1
        while self.cycle_start(k + 1) <= day:
            k += 1
        return k

    def period(self, k: int) -> BillingPeriod | None:
        """Cycle ``k`` clipped to the term, or None when it lies outside the term."""
        cs, ce = self.cycle_start(k), self.cycle_start(k + 1)
        start = max(cs, self.term_start)
        end = ce if self.term_end is None else min(ce, self.term_end)
        if start >= end:
            return None
        return BillingPeriod(k - self.first_cycle(), start, end, cs, ce)

    def periods(self, until: date | None = None) -> list[BillingPeriod]:
        """The term's periods in order, up to the one holding ``until`` when given.

        No period starts after :data:`LAST_DAY`, so a term has at most
        :data:`MAX_PERIODS` periods however far ``until`` is.

        Raises:
            ValueError: the term is open-ended and no ``until`` is given.
        """
        if self.term_end is None and until is None:
            raise ValueError("an open-ended term needs an until date to list its periods")
        if until is not None and until > LAST_DAY:
            until = LAST_DAY
        out: list[BillingPeriod] = []
        k = self.first_cycle()
        while (period := self.period(k)) is not None:
            if (until is not None and period.start > until) or period.start > LAST_DAY:
                break
            out.append(period)
            k += 1
        return out


def schedule(
    start_date: date, end_date_inclusive: date | None, months: int, anchor_day: int | None
) -> Schedule:
    """The cycle grid of a term from ``start_date`` to ``end_date_inclusive`` (or open).

    Raises:
        ConfigError: a date lies outside the dates subledger rates (2000-01-01 to
            2100-12-31), which bounds a contract's back-billing horizon and its periods.
    """
    for name, day in (("start_date", start_date), ("end_date", end_date_inclusive)):
        problem = None if day is None else date_problem(day)
        if problem:
            raise ConfigError(f"the contract's {name} {day} {problem}", fix=DATE_FIX)
    if not 1 <= months <= MAX_CYCLE_MONTHS:
        raise ConfigError(f"a billing cycle of {months} months is not one subledger rates",
                          fix=f"use a cycle from 1 to {MAX_CYCLE_MONTHS} months")
    term_end = None if end_date_inclusive is None else end_date_inclusive + timedelta(days=1)
    return Schedule(
        start_date.year, start_date.month, anchor_day or start_date.day, months, start_date, term_end
    )


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def select_period(grid: Schedule, selector: str) -> BillingPeriod:
    """The period a user means by ``2026-03`` (the cycle starting in that month) or ``2026-03-15``.

    Raises:
        ConfigError: the selector is malformed, or no period of the term matches.
    """
    text = selector.strip()
    day: date | None = None
    if m := _MONTH.match(text):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise ConfigError(f"period {selector!r} has no month {month}", fix="write the period as YYYY-MM")
        if not FIRST_DAY.year <= year <= LAST_DAY.year:
            raise ConfigError(f"period {selector!r} is outside the dates subledger rates ({DATE_RANGE})",
                              fix=f"choose a month from {FIRST_DAY:%Y-%m} to {LAST_DAY:%Y-%m} within the contract term")
        first = date(year, month, 1)
        k = grid.cycle_of(first)
        if grid.cycle_start(k) < first:
            k += 1
        cs = grid.cycle_start(k)
        if (cs.year, cs.month) != (year, month):
            raise ConfigError(
                f"no billing period starts in {text}: this contract's periods start on "
                f"{grid.cycle_start(k - 1).isoformat()} and {cs.isoformat()}",
                fix=f"use the month a period starts in (e.g. {cs:%Y-%m}) or a day such as {text}-15",
            )
    elif m := _DAY.match(text):
        try:
            day = date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            raise ConfigError(f"period {selector!r} is not a date", fix="write YYYY-MM or YYYY-MM-DD") from None
        if date_problem(day):
            raise ConfigError(f"period {selector!r} is outside the dates subledger rates ({DATE_RANGE})",
                              fix=f"choose a day from {FIRST_DAY} to {LAST_DAY} within the contract term")
        k = grid.cycle_of(day)
    else:
        raise ConfigError(
            f"period {selector!r} is not YYYY-MM or YYYY-MM-DD",
            fix="write the month a billing period starts in, e.g. 2026-03, or a day inside it",
        )
    period = grid.period(k)
    if period is None or (day is not None and not period.start <= day < period.end):
        end = "open" if grid.term_end is None else (grid.term_end - timedelta(days=1)).isoformat()
        raise ConfigError(
            f"period {text} is outside the contract term ({grid.term_start.isoformat()} to {end})",
            fix="choose a period within the term",
        )
    return period
