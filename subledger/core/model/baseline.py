"""Baseline: the last state a rule saw of something, to tell who changed what since."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from subledger.core.db_types import JSONDoc, UTCDateTime, utcnow


class Baseline(SQLModel, table=True):
    """What was seen at the last sync under ``key`` (e.g. both sides' terms hashes)."""

    __tablename__ = "baseline"

    key: str = Field(primary_key=True, max_length=255)
    value: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
