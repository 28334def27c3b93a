"""Exact rounding of recognized-to-date, and cumulative rounding of schedules.

Recognition is computed exactly (``fractions.Fraction`` of minor units) and only the
cumulative amount recognized to date is rounded. Each period posts the difference
between consecutive rounded cumulative amounts, so a schedule always sums exactly to
its transaction price and no period is ever more than one minor unit from its exact
share.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from subledger.core.money import Rounding


def round_fraction(value: Fraction, rounding: Rounding = Rounding.HALF_UP) -> int:
    """Round an exact rational amount of minor units to an integer with ``rounding``.

    Half-up rounds ties away from zero, like ``decimal.ROUND_HALF_UP``.

    >>> round_fraction(Fraction(5, 2))
    3
    >>> round_fraction(Fraction(-5, 2))
    -3
    """
    value = Fraction(value)
    floor = value.numerator // value.denominator
    remainder = value - floor  # in [0, 1)
    if remainder == 0:
        return floor
    ceil = floor + 1
    toward_zero = floor if value > 0 else ceil
    away = ceil if value > 0 else floor
    half = Fraction(1, 2)
    if rounding is Rounding.FLOOR:
        return floor
    if rounding is Rounding.CEILING:
        return ceil
    if rounding is Rounding.DOWN:
        return toward_zero
    if rounding is Rounding.UP:
        return away
    if remainder != half:
        return floor if remainder < half else ceil
    if rounding is Rounding.HALF_EVEN:
        return floor if floor % 2 == 0 else ceil
    return away  # HALF_UP


def cumulative_deltas(targets: Iterable[Fraction], rounding: Rounding = Rounding.HALF_UP) -> list[int]:
    """Rounded increments of a series of exact cumulative amounts, starting from zero.

    >>> cumulative_deltas([Fraction(10, 3), Fraction(20, 3), Fraction(10)])
    [3, 4, 3]
    """
    out: list[int] = []
    posted = 0
    for target in targets:
        rounded = round_fraction(target, rounding)
        out.append(rounded - posted)
        posted = rounded
    return out
