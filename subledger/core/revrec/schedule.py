"""Schedules: a curve cut into periods, with cumulative rounding.

A schedule lists what is recognized in each month (or day). Amounts are the
differences of the rounded cumulative amount at consecutive period bounds, so the
lines of a schedule always add up to the rounded final value of the curve, which for
every treatment is its transaction price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from subledger.core.money import Rounding
from subledger.core.revrec.calendar import Month, as_utc, day_start, months_between, through_instant
from subledger.core.revrec.curves import Curve
from subledger.core.revrec.rounding import round_fraction

_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Slice:
    """Minor units recognized in one period."""

    period: Month | date
    amount_minor: int


def recognized_before(curve: Curve, at: datetime, rounding: Rounding = Rounding.HALF_UP) -> int:
    """Rounded cumulative amount recognized before instant ``at``."""
    return round_fraction(curve.value(as_utc(at)), rounding)


def recognized_through(curve: Curve, through: date, rounding: Rounding = Rounding.HALF_UP) -> int:
    """Rounded cumulative amount recognized through the end of day ``through``."""
    return recognized_before(curve, through_instant(through), rounding)


def final_amount(curve: Curve, rounding: Rounding = Rounding.HALF_UP) -> int:
    """The whole amount the curve ever recognizes (its transaction price)."""
    return recognized_before(curve, curve.settles + _MICRO, rounding)


def monthly(
    curve: Curve, rounding: Rounding = Rounding.HALF_UP, *, through: date | None = None,
    keep_zero: bool = False,
) -> list[Slice]:
    """Recognition per calendar month, from the curve's first month to its last.

    With ``through``, the last month is cut at the end of that day.
    """
    first = Month.of(curve.begins)
    last = Month.of(curve.settles - _MICRO) if curve.settles > curve.begins else first
    if through is not None:
        last = min(last, Month.of(through))
    out: list[Slice] = []
    posted = round_fraction(curve.value(first.start), rounding)  # zero unless the curve goes back
    for month in months_between(first, last):
        bound = month.end
        if through is not None:
            bound = min(bound, through_instant(through))
        rounded = round_fraction(curve.value(bound), rounding)
        if rounded != posted or keep_zero:
            out.append(Slice(month, rounded - posted))
        posted = rounded
    return out


def daily(curve: Curve, rounding: Rounding = Rounding.HALF_UP, *, keep_zero: bool = False) -> list[Slice]:
    """Recognition per UTC day, from the curve's first day to its last."""
    day = curve.begins.date()
    last = (curve.settles - _MICRO).date() if curve.settles > curve.begins else day
    out: list[Slice] = []
    posted = round_fraction(curve.value(day_start(day)), rounding)
    while day <= last:
        rounded = round_fraction(curve.value(day_start(day + timedelta(days=1))), rounding)
        if rounded != posted or keep_zero:
            out.append(Slice(day, rounded - posted))
        posted = rounded
        day += timedelta(days=1)
    return out


def as_table(slices: list[Slice]) -> dict[str, int]:
    """``{"2026-01": 1700, ...}``: a schedule as a plain mapping (handy in tests and JSON)."""
    return {str(s.period): s.amount_minor for s in slices}
