"""Ratable recognition of a fixed price over a service period, under four policies.

* ``by_day`` (default): actual days. Each UTC calendar day from the start date up to,
  but not including, the end date earns an equal share; a partial last day is cut off.
* ``by_second``: each second of ``[start, end)`` earns an equal share.
* ``monthly_even``: the price is split evenly over ``n`` months, starting with the month
  of the start, where ``n`` is the number of month boundaries between start and end (a
  partial last month is cut off; at least one month).
* ``monthly_prorated``: a partial first or last month earns its share by the second of
  the whole period; the fully covered months split the rest evenly.

Monthly policies recognize a month's share when the month ends. Every policy yields the
exact elapsed fraction; rounding happens once, on the cumulative amount (see
:mod:`subledger.core.revrec.rounding`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from subledger.core.errors import ConfigError
from subledger.core.revrec.calendar import Month, as_utc, day_start, months_between

_MICRO = timedelta(microseconds=1)
_DAY = timedelta(days=1)


class AmortizationPolicy(StrEnum):
    """How a fixed price is spread over its service period."""

    BY_DAY = "by_day"
    BY_SECOND = "by_second"
    MONTHLY_EVEN = "monthly_even"
    MONTHLY_PRORATED = "monthly_prorated"

    @classmethod
    def parse(cls, value: str | AmortizationPolicy | None) -> AmortizationPolicy:
        """Read a policy name from a terms document or a CLI flag (default ``by_day``)."""
        if value is None or value == "":
            return cls.BY_DAY
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ConfigError(
                f"amortization policy {value!r} is not known", fix=f"use one of: {names}"
            ) from None


@dataclass(frozen=True, slots=True)
class ServicePeriod:
    """A half-open service period ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start))
        object.__setattr__(self, "end", as_utc(self.end))
        if self.end < self.start:
            raise ConfigError(
                f"service period ends ({self.end.isoformat()}) before it starts "
                f"({self.start.isoformat()})",
                fix="swap the dates or correct the service end",
            )

    @classmethod
    def from_dates(cls, first_day: date, last_day: date) -> ServicePeriod:
        """A period of whole days, ``first_day`` to ``last_day`` inclusive."""
        return cls(day_start(first_day), day_start(last_day) + _DAY)

    @property
    def first_month(self) -> Month:
        return Month.of(self.start)

    @property
    def last_month(self) -> Month:
        """The last month the period touches (the month of its last instant)."""
        return Month.of(self.end - _MICRO) if self.end > self.start else Month.of(self.start)


def _micros(delta: timedelta) -> int:
    return delta // _MICRO


def _clamp(value: Fraction) -> Fraction:
    return min(max(value, Fraction(0)), Fraction(1))


def elapsed_fraction(period: ServicePeriod, policy: AmortizationPolicy, at: datetime) -> Fraction:
    """The exact share of the price earned before instant ``at``, from 0 to 1."""
    at = as_utc(at)
    if policy is AmortizationPolicy.BY_SECOND:
        total = _micros(period.end - period.start)
        if total == 0:
            return Fraction(int(at > period.start))
        return _clamp(Fraction(_micros(at - period.start), total))
    if policy is AmortizationPolicy.BY_DAY:
        first = period.start.date()
        days = max((period.end.date() - first).days, 1)
        elapsed_days = (at - day_start(first)) // _DAY
        return _clamp(Fraction(elapsed_days, days))
    weights = month_weights(period, policy)
    earned = sum((w for month, w in weights.items() if month.end <= at), Fraction(0))
    return earned


def month_weights(period: ServicePeriod, policy: AmortizationPolicy) -> dict[Month, Fraction]:
    """The share of the price each month earns under a monthly policy (sums to 1)."""
    first = period.first_month
    if policy is AmortizationPolicy.MONTHLY_EVEN:
        n = max(Month.of(period.end).index() - first.index(), 1)
        months = [first]
        while len(months) < n:
            months.append(months[-1].next())
        return {m: Fraction(1, n) for m in months}
    if policy is not AmortizationPolicy.MONTHLY_PRORATED:
        raise ValueError(f"{policy} is not a monthly policy")
    months = list(months_between(first, period.last_month))
    if len(months) == 1:
        return {months[0]: Fraction(1)}
    total = _micros(period.end - period.start)
    weights: dict[Month, Fraction] = {}
    partial_share = Fraction(0)
    full: list[Month] = []
    for m in months:
        overlap = min(period.end, m.end) - max(period.start, m.start)
        if overlap < m.end - m.start:
            weights[m] = Fraction(_micros(overlap), total)
            partial_share += weights[m]
        else:
            full.append(m)
    for m in full:
        weights[m] = (1 - partial_share) / len(full)
    return dict(sorted(weights.items()))


def recognition_end(period: ServicePeriod, policy: AmortizationPolicy) -> datetime:
    """The instant by which the whole price has been recognized under ``policy``."""
    if policy in (AmortizationPolicy.MONTHLY_EVEN, AmortizationPolicy.MONTHLY_PRORATED):
        return max(month_weights(period, policy)).end
    if policy is AmortizationPolicy.BY_DAY:
        first = period.start.date()
        days = max((period.end.date() - first).days, 1)
        return day_start(first + timedelta(days=days))
    return period.end if period.end > period.start else period.start + _MICRO
