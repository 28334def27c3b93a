"""Finding: one drift a reconciliation rule found, with its amount, evidence and history."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, JSONDoc, UTCDateTime, utcnow
from subledger.core.model.base import make_immutable

FINDING_STATUSES = ("open", "acknowledged", "resolved", "ignored")


class Finding(SQLModel, table=True):
    """A drift between what should be and what is.

    ``id`` is derived from the rule and the drift's ``key`` (for example customer,
    contract, component and period), so the same drift found on the next sync updates this
    row (``last_seen``, amount) instead of adding one. A finding whose drift is no longer
    found is resolved automatically; its history stays in :class:`FindingEvent`.
    """

    __tablename__ = "finding"

    id: str = Field(primary_key=True, max_length=64)
    rule: str = Field(index=True, max_length=64)
    key: str = Field(max_length=512, description="what identifies the drift within its rule")
    status: str = Field(default="open", index=True, max_length=16)
    status_reason: str = Field(default="", max_length=1024)
    customer: str | None = Field(
        default=None, index=True, max_length=255, description="canonical customer id"
    )
    contract_id: str | None = Field(default=None, max_length=64)
    period_start: date | None = None
    period_end: date | None = None
    amount_minor: int = Field(default=0, sa_type=BigInteger, description="the amount at stake, signed")
    currency: str | None = Field(default=None, max_length=3)
    summary: str = Field(default="", max_length=2048)
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    first_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_seen: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class FindingEvent(SQLModel, table=True):
    """One change of a finding: opened, amount changed, status changed. Append-only."""

    __tablename__ = "finding_event"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    finding_id: str = Field(foreign_key="finding.id", index=True, max_length=64)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    event: str = Field(max_length=32, description="opened, updated, reopened, status")
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str | None = Field(default=None, max_length=16)
    amount_minor: int | None = Field(default=None, sa_type=BigInteger)
    actor: str = Field(default="system", max_length=128)
    reason: str = Field(default="", max_length=1024)


make_immutable(FindingEvent, what="finding history", instead="add a new event")
