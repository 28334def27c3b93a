"""Connections, per-stream incremental state, and quarantined (rejected) records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, JSONDoc, UTCDateTime, utcnow


class Connection(SQLModel, table=True):
    """A configured connector instance. ``config`` never holds a plain-text secret."""

    __tablename__ = "connection"

    name: str = Field(primary_key=True, max_length=64)
    plugin: str = Field(max_length=64)
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_complete_pull_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime,
        description="when every stream of a pull last finished; None: never read completely, so nothing judges it",
    )


class StreamState(SQLModel, table=True):
    """The checkpoint of one stream of one connection, committed with its records."""

    __tablename__ = "stream_state"

    connection: str = Field(primary_key=True, max_length=64)
    stream: str = Field(primary_key=True, max_length=64)
    state: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Reject(SQLModel, table=True):
    """A record that could not be loaded, kept for review with what to fix."""

    __tablename__ = "reject"
    __table_args__ = (UniqueConstraint("connection", "fingerprint", name="uq_reject"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    connection: str = Field(index=True, max_length=64)
    stream: str = Field(max_length=64)
    location: str = Field(default="", max_length=1024, description="file or object")
    line: int | None = None
    field: str | None = Field(default=None, max_length=255)
    reason: str = Field(max_length=2048)
    fix: str = Field(default="", max_length=2048)
    raw: str = Field(default="")
    fingerprint: str = Field(max_length=64)
    status: str = Field(
        default="open", max_length=16,
        description="open, resolved, or released (quarantined usage stored once its customer and meter were known)",
    )
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
