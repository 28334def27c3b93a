"""Notification: one alert delivered (or being delivered) to one notifier, exactly once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, JSONDoc, UTCDateTime, utcnow


class Notification(SQLModel, table=True):
    """An alert for one channel. Unique per ``(channel, alert_key)``: never sent twice.

    ``status`` is ``pending`` until the notifier accepted it (``sent``), or it ran out of
    attempts (``failed``); ``next_attempt_at`` spaces retries with backoff.
    """

    __tablename__ = "notification"
    __table_args__ = (UniqueConstraint("channel", "alert_key", name="uq_notification"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    channel: str = Field(max_length=128, description="the configured notifier's name")
    alert_key: str = Field(max_length=512, description="what the alert is about: finding id, run id")
    kind: str = Field(max_length=32, description="threshold, finding, sync_failed")
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    status: str = Field(default="pending", index=True, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=2048)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
