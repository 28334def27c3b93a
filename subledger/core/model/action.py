"""Action: a planned write-back, and the outbox row that makes it exactly-once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import JSONDoc, UTCDateTime, utcnow

ACTION_STATUSES = ("planned", "approved", "in_flight", "done", "failed", "rejected", "superseded")


class Action(SQLModel, table=True):
    """A write the engine plans, and its progress through the outbox.

    ``idempotency_key`` is derived from the action's content, so planning the same fix
    twice yields the same row. Apply marks the row ``in_flight`` and commits *before* it
    calls the target, so after a crash the engine knows to look the write up
    (find-before-create) rather than repeat it.
    """

    __tablename__ = "action"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_action_key"),)

    id: str = Field(primary_key=True, max_length=64)
    idempotency_key: str = Field(max_length=128)
    kind: str = Field(max_length=64, description="the connector write kind, e.g. create_invoice")
    connection: str = Field(index=True, max_length=64, description="where it writes")
    finding_id: str | None = Field(default=None, index=True, max_length=64)
    rule: str | None = Field(default=None, max_length=64)
    customer: str | None = Field(default=None, max_length=255)
    summary: str = Field(default="", max_length=2048)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    target_external_id: str | None = Field(default=None, max_length=255)
    base_version: dict[str, Any] | None = Field(default=None, sa_type=JSONDoc)
    amount_minor: int = Field(default=0, sa_type=BigInteger)
    currency: str | None = Field(default=None, max_length=3)
    status: str = Field(default="planned", index=True, max_length=16)
    approved_by: str | None = Field(default=None, max_length=128)
    attempts: int = 0
    external_id: str | None = Field(default=None, max_length=255, description="what the write created")
    result: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    error: str | None = Field(default=None, max_length=4096)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
