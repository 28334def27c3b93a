"""The audit log: every change to findings, links, actions and writes, with actor and reason."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from subledger.core.model.audit import AuditEntry


def audit(
    session: Session,
    *,
    actor: str,
    verb: str,
    object_type: str,
    object_id: str,
    reason: str = "",
    **details: Any,
) -> AuditEntry:
    """Append one audit entry in the caller's transaction (it commits with the change)."""
    entry = AuditEntry(
        actor=actor, verb=verb, object_type=object_type, object_id=object_id, reason=reason, details=details
    )
    session.add(entry)
    return entry
