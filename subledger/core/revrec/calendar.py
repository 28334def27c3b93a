"""Accounting periods (calendar months) and the instants that bound them.

Recognition is computed on half-open UTC intervals ``[start, end)``. A date ``d`` used
as a bound means the instant ``d 00:00 UTC``; "through ``d``" means up to the instant
``d + 1 day 00:00 UTC``, so the whole of day ``d`` is included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from subledger.core.errors import ConfigError

_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month, the accounting period: ``Month(2026, 3)`` is ``2026-03``."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ConfigError(f"month {self.month} is out of range", fix="use 1 to 12")

    @classmethod
    def parse(cls, text: str) -> Month:
        """Parse ``YYYY-MM`` (a full ISO date is accepted and truncated to its month)."""
        raw = (text or "").strip()
        if len(raw) == 10 and raw[7] == "-":
            raw = raw[:7]
        match = _PERIOD_RE.match(raw)
        if not match:
            raise ConfigError(
                f"period {text!r} is not a month", fix="write the period as YYYY-MM, e.g. 2026-03"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, moment: date | datetime) -> Month:
        """The month containing a date, or an instant (taken in UTC)."""
        if isinstance(moment, datetime):
            moment = as_utc(moment).date()
        return cls(moment.year, moment.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    @property
    def start(self) -> datetime:
        """The first instant of the month."""
        return day_start(self.first_day)

    @property
    def end(self) -> datetime:
        """The first instant after the month (exclusive bound)."""
        return self.next().start

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def index(self) -> int:
        """Months since year 0: differences of indexes count months."""
        return self.year * 12 + self.month - 1

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def months_between(first: Month, last: Month) -> Iterator[Month]:
    """Every month from ``first`` to ``last`` inclusive."""
    current = first
    while current <= last:
        yield current
        current = current.next()


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive values are refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}; attach a timezone (UTC)")
    return moment.astimezone(UTC)


def day_start(d: date) -> datetime:
    """``d 00:00 UTC``."""
    return datetime.combine(d, time(0), tzinfo=UTC)


def instant(moment: date | datetime) -> datetime:
    """A date as its first instant, or an aware datetime in UTC."""
    if isinstance(moment, datetime):
        return as_utc(moment)
    return day_start(moment)


def through_instant(through: date) -> datetime:
    """The exclusive bound of "through ``through``": the next day's first instant."""
    return day_start(through + timedelta(days=1))
