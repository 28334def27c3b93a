"""Prepaid credit grants and the append-only ledger of their movements."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, ExactDecimal, JSONDoc, UTCDateTime, utcnow
from subledger.core.model.base import Provenance, make_immutable


class CreditGrant(Provenance, table=True):
    """A grant of prepaid credit, in money (``amount_minor``) or in units of a meter.

    Draw-down order is priority (lower first), then soonest expiry, then oldest grant.
    """

    __tablename__ = "credit_grant"
    __table_args__ = (UniqueConstraint("system", "external_id", name="uq_credit_grant_source"),)

    id: str = Field(primary_key=True, max_length=64)
    customer_external_id: str = Field(index=True, max_length=255)
    contract_external_id: str | None = Field(default=None, max_length=255)
    category: str = Field(default="paid", max_length=16, description="paid or promotional")
    currency: str | None = Field(default=None, max_length=3)
    amount_minor: int | None = Field(default=None, sa_type=BigInteger)
    units: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    meter: str | None = Field(default=None, max_length=128)
    cost_basis: Decimal | None = Field(
        default=None, sa_type=ExactDecimal,
        description="what the customer paid per unit of credit (1 for money at face value)",
    )
    price_minor: int | None = Field(
        default=None, sa_type=BigInteger,
        description="what the customer paid for the grant, in minor units (default: amount x cost_basis)",
    )
    priority: int = 0
    effective_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    breakage: str | None = Field(
        default=None, max_length=16,
        description="at_expiry or proportional: how unused paid credit is recognized (default: the contract's policy)",
    )
    expected_breakage_rate: Decimal | None = Field(
        default=None, sa_type=ExactDecimal, description="the share expected to expire unused (proportional breakage)",
    )


class CreditLedgerEntry(SQLModel, table=True):
    """One movement of a grant's balance. Append-only; a mistake is reversed, not edited.

    ``kind`` is one of grant, top_up, draw_down, expiry, void, reversal. Signed amounts:
    grants and top-ups are positive, draw-downs and expiries negative.
    """

    __tablename__ = "credit_ledger_entry"
    __table_args__ = (UniqueConstraint("entry_key", name="uq_credit_ledger_entry_key"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    entry_key: str = Field(max_length=128, description="deterministic key; a replay adds nothing")
    grant_id: str = Field(foreign_key="credit_grant.id", index=True, max_length=64)
    kind: str = Field(max_length=16)
    amount_minor: int | None = Field(default=None, sa_type=BigInteger)
    units: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    currency: str | None = Field(default=None, max_length=3)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    evidence: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONDoc)


make_immutable(CreditLedgerEntry, what="credit ledger entries", instead="post a reversal")
