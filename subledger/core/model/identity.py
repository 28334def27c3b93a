"""ExternalRef: the identity map from a canonical id to each system's id."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, ExactDecimal, UTCDateTime, utcnow


class ExternalRef(SQLModel, table=True):
    """Links a canonical entity (``entity_type``, ``canonical_id``) to one system's record.

    One system record belongs to at most one canonical entity; ``method`` and
    ``confidence`` say how the link was made (explicit, metadata, email_domain, tax_id,
    name, manual, source).
    """

    __tablename__ = "external_ref"
    __table_args__ = (
        UniqueConstraint("system", "object_type", "external_id", name="uq_external_ref"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    entity_type: str = Field(max_length=32, description="customer, contract, invoice, ...")
    canonical_id: str = Field(index=True, max_length=255)
    system: str = Field(max_length=64)
    object_type: str = Field(max_length=64)
    external_id: str = Field(max_length=255)
    method: str = Field(default="explicit", max_length=32)
    confidence: Decimal = Field(default=Decimal(1), sa_type=ExactDecimal)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(default="system", max_length=128)
