"""Schedule and Lock: when syncs run, and the lock that keeps two from overlapping."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from subledger.core.db_types import UTCDateTime, utcnow


class Schedule(SQLModel, table=True):
    """A recurring sync of one connection (or ``all``), every N seconds or on a cron."""

    __tablename__ = "schedule"

    id: str = Field(primary_key=True, max_length=64)
    target: str = Field(max_length=64, description="a connection name, or 'all'")
    every_seconds: int | None = None
    cron: str | None = Field(default=None, max_length=128)
    enabled: bool = True
    next_run_at: datetime = Field(sa_type=UTCDateTime, index=True)
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status: str | None = Field(default=None, max_length=16)
    consecutive_failures: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Lock(SQLModel, table=True):
    """A lease held by one process, renewed while it works; an expired lease, or one whose
    holder is a dead process on this host, may be taken over.

    ``generation`` is the fencing counter: it goes up by one at every takeover, and a
    holder renews only while the row still has its owner and generation, so a holder whose
    lease was taken over finds out at its next renewal and stops before writing.
    """

    __tablename__ = "lock"

    name: str = Field(primary_key=True, max_length=128)
    owner: str = Field(max_length=128)
    acquired_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    generation: int = Field(default=1, description="fencing counter, +1 at every takeover")
