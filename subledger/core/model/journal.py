"""JournalEntry and JournalLine: a balanced, immutable double-entry journal."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, JSONDoc, UTCDateTime, utcnow
from subledger.core.model.base import make_immutable


class JournalEntry(SQLModel, table=True):
    """A posted journal entry. Immutable: a correction is a reversing entry.

    ``external_id`` is stable across re-runs so an ERP connector can upsert it: it is
    ``key`` (what the entry is about, e.g. ``invoice:stripe:in_1`` or
    ``recognition:<contract>:2026-01``) plus a hash of the content. ``period`` is where
    the entry is posted; ``origin_period`` is the period its content belongs to, which
    differs when late data for a closed period is posted in the first open period.
    """

    __tablename__ = "journal_entry"
    __table_args__ = (UniqueConstraint("external_id", name="uq_journal_entry_external_id"),)

    id: str = Field(primary_key=True, max_length=64)
    external_id: str = Field(max_length=255)
    key: str = Field(default="", index=True, max_length=255)
    kind: str = Field(default="", max_length=32, description="invoice, credit_note, recognition, payment, reversal")
    entry_date: date
    period: str = Field(index=True, max_length=7, description="YYYY-MM")
    origin_period: str = Field(default="", max_length=7)
    currency: str = Field(max_length=3)
    memo: str = Field(default="", max_length=1024)
    content_hash: str = Field(default="", max_length=64)
    reverses_entry_id: str | None = Field(default=None, index=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    source: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)


class JournalLine(SQLModel, table=True):
    """One debit or credit of an entry, in minor units of the entry's currency.

    ``role`` is the chart-of-accounts role (``contract_liability``, ``revenue``, ...)
    and ``account`` the GL account it was mapped to when posted.
    """

    __tablename__ = "journal_line"
    __table_args__ = (UniqueConstraint("entry_id", "line_no", name="uq_journal_line"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    # Deferred: an entry is posted lines first, then the entry row, which seals it (the
    # database refuses lines for an entry that already exists; see docs/architecture.md).
    entry_id: str = Field(
        index=True, max_length=64,
        sa_column_args=[ForeignKey("journal_entry.id", deferrable=True, initially="DEFERRED")],
    )
    line_no: int
    role: str = Field(default="", max_length=64)
    account: str = Field(max_length=128)
    debit_minor: int = Field(default=0, sa_type=BigInteger)
    credit_minor: int = Field(default=0, sa_type=BigInteger)
    currency: str = Field(max_length=3)
    customer_external_id: str | None = Field(default=None, max_length=255)
    contract_id: str | None = Field(default=None, max_length=64)
    obligation_key: str | None = Field(default=None, max_length=255)
    product: str | None = Field(default=None, max_length=128)
    memo: str = Field(default="", max_length=1024)
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)


def journal_payload(entry: JournalEntry, lines: list[JournalLine]) -> dict[str, Any]:
    """The canonical ``create_journal_entry`` payload an ERP connector posts (JSON-safe)."""
    return {
        "external_id": entry.external_id,
        "key": entry.key,
        "kind": entry.kind,
        "entry_date": entry.entry_date.isoformat(),
        "period": entry.period,
        "currency": entry.currency,
        "memo": entry.memo,
        "reverses_entry_id": entry.reverses_entry_id,
        "lines": [
            {
                "line_no": ln.line_no,
                "role": ln.role,
                "account": ln.account,
                "product": ln.product,
                "debit_minor": ln.debit_minor,
                "credit_minor": ln.credit_minor,
                "currency": ln.currency,
                "memo": ln.memo,
                "customer_external_id": ln.customer_external_id,
                "contract_id": ln.contract_id,
            }
            for ln in sorted(lines, key=lambda ln: ln.line_no)
        ],
    }


make_immutable(JournalEntry, what="journal entries", instead="post a reversing entry")
make_immutable(JournalLine, what="journal lines", instead="post a reversing entry")
