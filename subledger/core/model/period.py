"""Accounting periods and closing: a closed period's journal never changes.

Closing is cumulative: closing ``2026-03`` closes every month up to and including it.
The guard below refuses, at flush time, any journal entry the ORM would post into a
closed period; the database refuses it whatever inserts it, and refuses to update or
delete ``accounting_period`` rows (docs/architecture.md, "Invariants":
``closed_period_frozen``, ``closed_period_final``). The recognition run posts late data
in the first open period.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Mapper
from sqlmodel import Field, SQLModel

from subledger.core.db_types import UTCDateTime, utcnow
from subledger.core.model.base import make_immutable
from subledger.core.model.journal import JournalEntry


class AccountingPeriod(SQLModel, table=True):
    """A closed accounting period (a month). A row exists only once the month is closed."""

    __tablename__ = "accounting_period"

    period: str = Field(primary_key=True, max_length=7, description="YYYY-MM")
    status: str = Field(default="closed", max_length=16)
    closed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    closed_by: str = Field(default="system", max_length=128)


class ClosedPeriodError(RuntimeError):
    """Raised when an entry would be posted into a closed period."""


make_immutable(AccountingPeriod, what="closed periods", instead="periods cannot be reopened")


def refuse_closed_periods(connection: Any, periods: Iterable[str]) -> None:
    """Raise :class:`ClosedPeriodError` when any of ``periods`` (YYYY-MM) is closed.

    The ORM runs this for every entry it inserts; bulk inserts (which skip ORM events)
    call it once for the whole batch.
    """
    wanted = sorted(set(periods))
    if not wanted:
        return
    latest = connection.execute(select(func.max(AccountingPeriod.period))).scalar()
    if latest is not None and wanted[0] <= latest:
        raise ClosedPeriodError(
            f"period {wanted[0]} is closed (closed through {latest}); post the correction in an open period"
        )


@event.listens_for(JournalEntry, "before_insert")
def _refuse_closed_period(mapper: Mapper[Any], connection: Any, target: JournalEntry) -> None:
    refuse_closed_periods(connection, [target.period])
