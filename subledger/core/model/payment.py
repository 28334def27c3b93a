"""Payment and its applications to invoices."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, UTCDateTime
from subledger.core.model.base import Provenance


class Payment(Provenance, table=True):
    """Cash received (or refunded, with a negative amount) in one system."""

    __tablename__ = "payment"
    __table_args__ = (UniqueConstraint("system", "external_id", name="uq_payment_source"),)

    id: str = Field(primary_key=True, max_length=64)
    customer_external_id: str = Field(index=True, max_length=255)
    currency: str = Field(max_length=3)
    amount_minor: int = Field(sa_type=BigInteger)
    received_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(default="succeeded", max_length=32)
    method: str | None = Field(default=None, max_length=64)
    reference: str | None = Field(default=None, max_length=255)


class PaymentApplication(SQLModel, table=True):
    """The part of a payment applied to one invoice."""

    __tablename__ = "payment_application"
    __table_args__ = (
        UniqueConstraint("payment_id", "invoice_external_id", name="uq_payment_application"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    payment_id: str = Field(foreign_key="payment.id", index=True, max_length=64, ondelete="CASCADE")
    invoice_external_id: str = Field(index=True, max_length=255)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    applied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
