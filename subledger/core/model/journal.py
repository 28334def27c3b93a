"""JournalEntry and JournalLine: a balanced, immutable double-entry journal."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, JSONDoc, UTCDateTime, utcnow
from subledger.core.model.base import make_immutable


class JournalEntry(SQLModel, table=True):
    """A posted journal entry. Immutable: a correction is a reversing entry.

    ``external_id`` is stable across re-runs so an ERP connector can upsert it.
    """

    __tablename__ = "journal_entry"
    __table_args__ = (UniqueConstraint("external_id", name="uq_journal_entry_external_id"),)

    id: str = Field(primary_key=True, max_length=64)
    external_id: str = Field(max_length=255)
    entry_date: date
    period: str = Field(index=True, max_length=7, description="YYYY-MM")
    currency: str = Field(max_length=3)
    memo: str = Field(default="", max_length=1024)
    reverses_entry_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    source: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)


class JournalLine(SQLModel, table=True):
    """One debit or credit of an entry, in minor units of the entry's currency."""

    __tablename__ = "journal_line"
    __table_args__ = (UniqueConstraint("entry_id", "line_no", name="uq_journal_line"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    entry_id: str = Field(foreign_key="journal_entry.id", index=True, max_length=64)
    line_no: int
    account: str = Field(max_length=128)
    debit_minor: int = Field(default=0, sa_type=BigInteger)
    credit_minor: int = Field(default=0, sa_type=BigInteger)
    currency: str = Field(max_length=3)
    customer_external_id: str | None = Field(default=None, max_length=255)
    contract_id: str | None = Field(default=None, max_length=64)
    memo: str = Field(default="", max_length=1024)
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)


make_immutable(JournalEntry, what="journal entries", instead="post a reversing entry")
make_immutable(JournalLine, what="journal lines", instead="post a reversing entry")
