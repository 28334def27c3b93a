"""Revenue schedule lines: how much of an obligation is recognized in which period."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, JSONDoc, UTCDateTime, utcnow


class RevenueScheduleLine(SQLModel, table=True):
    """Revenue of one kind recognized for one performance obligation in one month.

    The schedule covers the whole obligation, future months included (the waterfall
    reads them); each recognition run brings it up to date. What was actually posted
    is in the journal. ``amount_minor`` is signed: contra kinds are negative.
    """

    __tablename__ = "revenue_schedule_line"
    __table_args__ = (
        UniqueConstraint("obligation_key", "period", "line_kind", name="uq_revenue_line"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    obligation_key: str = Field(index=True, max_length=255)
    contract_id: str | None = Field(default=None, index=True, max_length=64)
    customer_external_id: str | None = Field(default=None, index=True, max_length=255)
    product: str = Field(default="", max_length=128)
    treatment: str = Field(max_length=32, description="ratable, usage, point_in_time, credit, commitment")
    line_kind: str = Field(
        default="revenue", max_length=32, description="revenue, breakage, discount, refund, promotional"
    )
    period: str = Field(default="", index=True, max_length=7, description="YYYY-MM")
    period_start: date
    period_end: date
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)
    computed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
