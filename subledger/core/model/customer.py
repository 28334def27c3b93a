"""Customer: a billed party as one system knows it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field

from subledger.core.db_types import JSONDoc
from subledger.core.model.base import Provenance


class Customer(Provenance, table=True):
    """A customer record from one system.

    The same real-world customer appears once per system (CRM, billing, ERP); the
    identity map (:class:`~subledger.core.model.identity.ExternalRef`) ties them to one
    canonical id.
    """

    __tablename__ = "customer"
    __table_args__ = (UniqueConstraint("system", "external_id", name="uq_customer_source"),)

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=512)
    email: str | None = Field(default=None, max_length=320)
    email_domain: str | None = Field(default=None, index=True, max_length=255)
    tax_id: str | None = Field(default=None, index=True, max_length=64)
    currency: str | None = Field(default=None, max_length=3)
    country: str | None = Field(default=None, max_length=2)
    canonical_hint: str | None = Field(
        default=None, max_length=255,
        description="an explicit link to a canonical customer id, read from the source "
        "(metadata or external-id field)",
    )
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
