"""WebhookEvent: a verified vendor delivery, stored once per provider event id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, JSONDoc, UTCDateTime, utcnow


class WebhookEvent(SQLModel, table=True):
    """One provider event (e.g. a Stripe ``evt_...``), however many times it was delivered.

    Unique per ``(connection, event_id)``: a vendor's retry of the same event is recorded
    (``deliveries``) but processed once. ``signatures`` keeps hashes of the signature
    headers seen, so a byte-for-byte replay of a delivery is recognised and refused.
    """

    __tablename__ = "webhook_event"
    __table_args__ = (UniqueConstraint("connection", "event_id", name="uq_webhook_event"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    connection: str = Field(max_length=64)
    event_id: str = Field(max_length=255)
    type: str = Field(default="", max_length=128)
    streams: list[str] = Field(default_factory=list, sa_type=JSONDoc)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    signatures: list[str] = Field(default_factory=list, sa_type=JSONDoc)
    deliveries: int = 1
    status: str = Field(default="received", max_length=16, description="received, processed, failed")
    error: str | None = Field(default=None, max_length=2048)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
