"""Shared pieces of the canonical model: ids, provenance, immutability.

Every record that came from a system carries :class:`Provenance`: the ``system`` it came
from (the connection's name, e.g. ``stripe`` or ``files``), its ``external_id`` there,
when it was fetched, and a hash of the payload it was built from. ``(system,
external_id)`` is unique per table, and a record's primary key is derived from that
pair, so re-reading the same record updates one row instead of adding another.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper
from sqlmodel import Field, SQLModel

from subledger.core.db_types import UTCDateTime, decimal_text, utcnow


def record_id(prefix: str, system: str, external_id: str) -> str:
    """A deterministic primary key for a record of ``system``: ``cus_5f2a...``."""
    digest = hashlib.sha256(f"{system}\x1f{external_id}".encode()).hexdigest()[:24]
    return f"{prefix}_{digest}"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot hash {type(value).__name__}")


def canonical_json(payload: Any) -> str:
    """Stable JSON text of a payload: sorted keys, no whitespace, Decimals as text."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)


def payload_hash(payload: Any) -> str:
    """SHA-256 of :func:`canonical_json`; bytes and str are hashed as they are."""
    if isinstance(payload, bytes):
        data = payload
    elif isinstance(payload, str):
        data = payload.encode()
    else:
        data = canonical_json(payload).encode()
    return hashlib.sha256(data).hexdigest()


class Provenance(SQLModel):
    """Where a record came from. Mixed into every sourced table."""

    system: str = Field(index=True, max_length=64, description="connection the record came from")
    external_id: str = Field(max_length=255, description="the record's id in that system")
    fetched_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    payload_hash: str = Field(default="", max_length=64)


def evidence_ref(system: str, object_type: str, external_id: str, **extra: Any) -> dict[str, Any]:
    """One evidence link: which system, which object, which id (plus optional detail)."""
    ref = {"system": system, "object": object_type, "id": external_id}
    ref.update({k: v for k, v in extra.items() if v is not None})
    return ref


class ImmutableRecordError(RuntimeError):
    """Raised when code tries to update or delete an immutable record."""


def make_immutable(model: type[SQLModel], *, what: str, instead: str) -> None:
    """Refuse ORM updates and deletes of ``model`` rows (append-only tables).

    A friendly, early error for code that goes through the ORM unit of work. The guard is
    the database: triggers refuse updates and deletes of these rows whatever issues them
    (bulk statements, raw SQL; see docs/architecture.md, "Invariants").
    """

    def refuse_update(mapper: Mapper[Any], connection: Any, target: Any) -> None:
        raise ImmutableRecordError(f"{what} are immutable; {instead}")

    event.listen(model, "before_update", refuse_update)
    event.listen(model, "before_delete", refuse_update)
    model.__append_only__ = True  # type: ignore[attr-defined]  # the store adds such children, never replaces them


def is_append_only(model: type[Any]) -> bool:
    """True for a table whose rows are never updated or deleted (:func:`make_immutable`)."""
    return bool(getattr(model, "__append_only__", False))
