"""Usage: raw, immutable usage events and the daily rollup the engine queries."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, ExactDecimal, JSONDoc, UTCDateTime, utcnow
from subledger.core.model.base import make_immutable


class UsageEvent(SQLModel, table=True):
    """One usage event as received. Never updated: a correction is a new event.

    Unique per ``(system, event_id)``: the same event read twice is stored once.
    """

    __tablename__ = "usage_event"
    __table_args__ = (
        UniqueConstraint("system", "event_id", name="uq_usage_event_source"),
        # Time only: usage arrives roughly in time order, so this index is appended to
        # cheaply; a (customer, meter, time) index made bulk loads 2x slower. Queries by
        # customer read whole days from the rollup and scan raw events only at the edges.
        Index("ix_usage_event_time", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    system: str = Field(max_length=64)
    event_id: str = Field(max_length=255)
    customer_external_id: str = Field(max_length=255)
    meter: str = Field(max_length=128)
    quantity: Decimal = Field(sa_type=ExactDecimal)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    properties: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    payload_hash: str = Field(max_length=64)
    fetched_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


make_immutable(UsageEvent, what="usage events", instead="send a correcting event instead")


class UsageRollup(SQLModel, table=True):
    """Per system, customer, meter and UTC day: sum, count, max and latest quantity.

    Maintained by the store as events are inserted (only newly inserted events count),
    so the rating engine can aggregate a period without scanning raw events. Unique
    counts need the raw events and are computed from them.
    """

    __tablename__ = "usage_rollup"

    system: str = Field(primary_key=True, max_length=64)
    customer_external_id: str = Field(primary_key=True, max_length=255)
    meter: str = Field(primary_key=True, max_length=128)
    day: date = Field(primary_key=True)
    quantity_sum: Decimal = Field(sa_type=ExactDecimal)
    event_count: int = Field(sa_type=BigInteger)
    quantity_max: Decimal = Field(sa_type=ExactDecimal)
    latest_at: datetime = Field(sa_type=UTCDateTime)
    latest_quantity: Decimal = Field(sa_type=ExactDecimal)
