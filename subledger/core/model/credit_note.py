"""CreditNote: a reduction of an issued invoice."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field

from subledger.core.db_types import JSONDoc, UTCDateTime
from subledger.core.model.base import Provenance


class CreditNote(Provenance, table=True):
    """A credit note (credit memo) against an invoice. ``lines`` keeps the source lines."""

    __tablename__ = "credit_note"
    __table_args__ = (UniqueConstraint("system", "external_id", name="uq_credit_note_source"),)

    id: str = Field(primary_key=True, max_length=64)
    customer_external_id: str = Field(index=True, max_length=255)
    invoice_external_id: str | None = Field(default=None, index=True, max_length=255)
    number: str | None = Field(default=None, max_length=128)
    status: str = Field(default="issued", max_length=32)
    reason: str | None = Field(default=None, max_length=255)
    currency: str = Field(max_length=3)
    total_minor: int = Field(sa_type=BigInteger)
    issued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lines: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)
