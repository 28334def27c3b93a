"""SyncRun: the history of syncs shown by ``subledger runs``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from subledger.core.db_types import JSONDoc, UTCDateTime, utcnow


class SyncRun(SQLModel, table=True):
    """One sync: what triggered it, what it read and wrote, and how it ended."""

    __tablename__ = "sync_run"

    id: str = Field(primary_key=True, max_length=64)
    trigger: str = Field(default="user", max_length=128, description="user, schedule:<id>, api, webhook")
    connections: list[str] = Field(default_factory=list, sa_type=JSONDoc)
    status: str = Field(default="running", max_length=16, description="running, succeeded, failed")
    owner: str | None = Field(
        default=None, max_length=128, description="the lease owner running it (host:pid:random)"
    )
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    records_read: int = 0
    records_written: int = 0
    findings_opened: int = 0
    findings_resolved: int = 0
    actions_planned: int = 0
    actions_applied: int = 0
    errors: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)
