"""Contract: what a customer agreed to pay, with its terms as a validated document."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field

from subledger.core.db_types import JSONDoc
from subledger.core.model.base import Provenance


class Contract(Provenance, table=True):
    """A contract (or a billing system's subscription) and its terms.

    ``terms`` holds the contract-terms document (see ``docs/contract-terms.md`` and
    :mod:`subledger.core.terms`) exactly as validated, with every rate and quantity as a
    decimal string. Keeping the terms as one document lets the rating engine take new
    price models without a migration; ``terms_hash`` makes drift detection cheap.
    """

    __tablename__ = "contract"
    __table_args__ = (UniqueConstraint("system", "external_id", name="uq_contract_source"),)

    id: str = Field(primary_key=True, max_length=64)
    customer_external_id: str = Field(index=True, max_length=255)
    name: str = Field(default="", max_length=512)
    status: str = Field(default="active", max_length=32, description="draft, active, ended, cancelled")
    currency: str = Field(max_length=3)
    start_date: date
    end_date: date | None = None
    terms: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    terms_hash: str = Field(default="", max_length=64)
