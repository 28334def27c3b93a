"""Invoice and InvoiceLine, each line with its service period and evidence."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, ExactDecimal, JSONDoc, UTCDateTime
from subledger.core.model.base import Provenance


class Invoice(Provenance, table=True):
    """An invoice as one system holds it (billing system or ERP). Amounts in minor units."""

    __tablename__ = "invoice"
    __table_args__ = (UniqueConstraint("system", "external_id", name="uq_invoice_source"),)

    id: str = Field(primary_key=True, max_length=64)
    customer_external_id: str = Field(index=True, max_length=255)
    contract_external_id: str | None = Field(default=None, max_length=255)
    number: str | None = Field(default=None, max_length=128)
    status: str = Field(default="open", max_length=32, description="draft, open, paid, void, uncollectible")
    currency: str = Field(max_length=3)
    issued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    period_start: date | None = None
    period_end: date | None = None
    subtotal_minor: int = Field(default=0, sa_type=BigInteger)
    tax_minor: int = Field(default=0, sa_type=BigInteger)
    total_minor: int = Field(default=0, sa_type=BigInteger)
    amount_paid_minor: int = Field(default=0, sa_type=BigInteger)
    amount_due_minor: int = Field(default=0, sa_type=BigInteger)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)


class InvoiceLine(SQLModel, table=True):
    """One line of an invoice. ``service_start``/``service_end`` are inclusive dates."""

    __tablename__ = "invoice_line"
    __table_args__ = (UniqueConstraint("invoice_id", "line_key", name="uq_invoice_line"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, max_length=64, ondelete="CASCADE")
    line_key: str = Field(max_length=255, description="the line's id in the source, or its position")
    kind: str = Field(
        default="other", max_length=32,
        description="recurring, usage, true_up, credit, discount, tax, other",
    )
    description: str = Field(default="", max_length=1024)
    component: str | None = Field(default=None, max_length=128)
    meter: str | None = Field(default=None, max_length=128)
    quantity: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    unit_price: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    service_start: date | None = None
    service_end: date | None = None
    proration: bool = False
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)
