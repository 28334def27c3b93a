"""AuditEntry: the append-only record of every change to findings, links, actions and writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, JSONDoc, UTCDateTime, utcnow
from subledger.core.model.base import make_immutable


class AuditEntry(SQLModel, table=True):
    """Who changed what, when and why. Never updated or deleted."""

    __tablename__ = "audit_entry"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=128, description="user:<name>, schedule:<id>, api:<key id> or system")
    verb: str = Field(max_length=64, description="finding.acknowledge, link.create, action.apply, ...")
    object_type: str = Field(max_length=64)
    object_id: str = Field(max_length=255, index=True)
    reason: str = Field(default="", max_length=2048)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)


make_immutable(AuditEntry, what="audit entries", instead="add a new entry")
