"""ApiKey: a credential for the HTTP service, stored as a hash, with scopes."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from subledger.core.db_types import JSONDoc, UTCDateTime, utcnow

API_SCOPES = ("ingest", "read", "write", "admin")


class ApiKey(SQLModel, table=True):
    """One API key. The token itself is never stored: only its SHA-256 (see docs/service.md).

    A token is ``slk_<id>_<secret>``; ``id`` finds the row, and the hash of the whole token
    is compared in constant time. ``prefix`` (the id) is all that is ever shown or logged.
    """

    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=32, description="public key id, e.g. key_3f9a...")
    name: str = Field(default="", max_length=255)
    scopes: list[str] = Field(default_factory=list, sa_type=JSONDoc)
    token_hash: str = Field(max_length=64, description="sha256 hex of the full token")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_by: str = Field(default="system", max_length=128)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
