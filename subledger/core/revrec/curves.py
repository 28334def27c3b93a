"""Recognition curves: the exact amount recognized before any instant.

A curve answers one question, ``value(at)``: how many minor units (an exact
``Fraction``) have been earned before instant ``at``. Treatments build curves; the
schedule and the journal only ever evaluate them at period bounds and round the
cumulative value (:mod:`subledger.core.revrec.rounding`). Curves are immutable and pure.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from subledger.core.revrec.amortization import (
    AmortizationPolicy,
    ServicePeriod,
    elapsed_fraction,
    recognition_end,
)
from subledger.core.revrec.calendar import as_utc, instant

_MICRO = timedelta(microseconds=1)

NEVER = datetime(9999, 1, 1, tzinfo=UTC)
"""``begins`` and ``settles`` of a curve that never recognizes anything."""


class Curve(Protocol):
    """Exact recognized-to-date, in minor units, as a function of time."""

    @property
    def begins(self) -> datetime:
        """Nothing is recognized before this instant."""
        ...

    @property
    def settles(self) -> datetime:
        """The value never changes at or after this instant."""
        ...

    def value(self, at: datetime) -> Fraction:
        """Minor units recognized before ``at``."""
        ...


def as_fraction(amount: int | Decimal | Fraction) -> Fraction:
    """An exact Fraction of an int, Decimal or Fraction (never a float)."""
    if isinstance(amount, float):
        raise TypeError("amounts must not be floats")
    return Fraction(amount)


@dataclass(frozen=True, slots=True)
class Ratable:
    """A fixed price (minor units) earned over a service period under a policy."""

    price_minor: int | Fraction
    period: ServicePeriod
    policy: AmortizationPolicy = AmortizationPolicy.BY_DAY

    @property
    def begins(self) -> datetime:
        return self.period.start

    @property
    def settles(self) -> datetime:
        return recognition_end(self.period, self.policy)

    def value(self, at: datetime) -> Fraction:
        return as_fraction(self.price_minor) * elapsed_fraction(self.period, self.policy, at)


@dataclass(frozen=True, slots=True)
class Incurred:
    """Amounts earned at the instant they occur (usage, redemptions, point-in-time sales).

    ``steps`` are ``(occurred_at, amount)`` in time order; an amount counts for every
    ``at`` after the instant it occurred, so usage on day ``d`` (stamped ``d 00:00``)
    belongs to day ``d``.
    """

    steps: tuple[tuple[datetime, Fraction], ...]
    _times: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    _running: tuple[Fraction, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Running totals make value() a binary search: schedules evaluate it often.
        running, total = [], Fraction(0)
        for _, amount in self.steps:
            total += amount
            running.append(total)
        object.__setattr__(self, "_times", tuple(when for when, _ in self.steps))
        object.__setattr__(self, "_running", tuple(running))

    @classmethod
    def of(cls, steps: Iterable[tuple[date | datetime, int | Decimal | Fraction]]) -> Incurred:
        normalized = sorted((instant(at), as_fraction(amount)) for at, amount in steps)
        return cls(tuple(normalized))

    @property
    def begins(self) -> datetime:
        return self.steps[0][0] if self.steps else NEVER

    @property
    def settles(self) -> datetime:
        return self.steps[-1][0] + _MICRO if self.steps else self.begins

    @property
    def total(self) -> Fraction:
        return self._running[-1] if self._running else Fraction(0)

    def value(self, at: datetime) -> Fraction:
        n = bisect_left(self._times, as_utc(at))
        return self._running[n - 1] if n else Fraction(0)


@dataclass(frozen=True, slots=True)
class Scaled:
    """``factor`` times another curve (e.g. a discount as a negative share of a fee)."""

    base: Curve
    factor: Fraction

    @property
    def begins(self) -> datetime:
        return self.base.begins

    @property
    def settles(self) -> datetime:
        return self.base.settles

    def value(self, at: datetime) -> Fraction:
        return self.factor * self.base.value(at)


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The part of ``base`` already earned when an event happened at ``at``.

    Zero before ``at``; afterwards frozen at ``base.value(at)``. A credit note uses it to
    reverse, in its own period, what was recognized before it (the rest of the reduction
    lowers the future schedule, see :class:`Remainder`).
    """

    base: Curve
    at: datetime

    @property
    def begins(self) -> datetime:
        return self.at

    @property
    def settles(self) -> datetime:
        return self.at + _MICRO

    def value(self, at: datetime) -> Fraction:
        return self.base.value(self.at) if as_utc(at) > self.at else Fraction(0)


@dataclass(frozen=True, slots=True)
class Remainder:
    """What ``base`` earns after instant ``at`` (``base - CatchUp(base, at)``)."""

    base: Curve
    at: datetime

    @property
    def begins(self) -> datetime:
        return max(self.at, self.base.begins)

    @property
    def settles(self) -> datetime:
        return max(self.base.settles, self.at + _MICRO)

    def value(self, at: datetime) -> Fraction:
        at = as_utc(at)
        if at <= self.at:
            return Fraction(0)
        return self.base.value(at) - self.base.value(self.at)


@dataclass(frozen=True)
class Computed:
    """A curve given by a function, for treatments that combine several inputs."""

    fn: Callable[[datetime], Fraction]
    begins: datetime
    settles: datetime
    label: str = field(default="")

    def value(self, at: datetime) -> Fraction:
        return self.fn(as_utc(at))


@dataclass(frozen=True)
class Sum:
    """The sum of several curves (an obligation's net price, gross plus its discounts)."""

    parts: tuple[Curve, ...]

    @property
    def begins(self) -> datetime:
        return min(p.begins for p in self.parts)

    @property
    def settles(self) -> datetime:
        return max((p.settles for p in self.parts if p.settles < NEVER), default=NEVER)

    def value(self, at: datetime) -> Fraction:
        return sum((p.value(at) for p in self.parts), Fraction(0))
