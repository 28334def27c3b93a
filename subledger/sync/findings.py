"""Turning a rule's drifts into findings: open, update, reopen, and resolve by themselves.

A finding's id is derived from its rule and key, so a drift found again updates the same
finding. Drifts a rule no longer reports are resolved automatically ("drift no longer found
on sync"); ignored findings stay ignored. Every change is kept in ``finding_event`` and in
the audit log.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from subledger.core.errors import ConfigError
from subledger.core.model.finding import FINDING_STATUSES, Finding, FindingEvent
from subledger.sync.audit import audit
from subledger.sync.rules.base import Drift

ACTIVE = ("open", "acknowledged")


def finding_id(rule: str, key: str) -> str:
    """The deterministic id of the finding for drift ``key`` of ``rule``."""
    return "fnd_" + hashlib.sha256(f"{rule}\x1f{key}".encode()).hexdigest()[:24]


@dataclass
class FindingDelta:
    """How one rule's findings changed on one sync."""

    opened: int = 0
    updated: int = 0
    reopened: int = 0
    resolved: int = 0


def record_findings(session: Session, rule: str, drifts: list[Drift], *, now: datetime, actor: str) -> FindingDelta:
    """Apply one evaluation of ``rule`` to its findings."""
    delta = FindingDelta()
    seen: set[str] = set()
    # One query for the rule's findings instead of one per drift.
    existing = {f.id: f for f in session.exec(select(Finding).where(Finding.rule == rule)).all()}
    for d in drifts:
        fid = finding_id(rule, d.key)
        if fid in seen:
            continue
        seen.add(fid)
        f = existing.get(fid)
        if f is None:
            f = Finding(id=fid, rule=rule, key=d.key, first_seen=now, last_seen=now)
            _fill(f, d)
            session.add(f)
            session.add(
                FindingEvent(
                    finding_id=fid, at=now, event="opened", to_status="open", amount_minor=d.amount_minor, actor=actor
                )
            )
            audit(session, actor=actor, verb="finding.open", object_type="finding", object_id=fid, reason=d.summary)
            delta.opened += 1
            continue
        changed = f.amount_minor != d.amount_minor
        _fill(f, d)
        f.last_seen = now
        if f.status == "resolved":
            session.add(
                FindingEvent(
                    finding_id=fid,
                    at=now,
                    event="reopened",
                    from_status="resolved",
                    to_status="open",
                    amount_minor=d.amount_minor,
                    actor=actor,
                )
            )
            audit(
                session,
                actor=actor,
                verb="finding.reopen",
                object_type="finding",
                object_id=fid,
                reason="drift found again",
            )
            f.status, f.status_reason, f.resolved_at = "open", "drift found again", None
            delta.reopened += 1
        elif changed:
            session.add(FindingEvent(finding_id=fid, at=now, event="updated", amount_minor=d.amount_minor, actor=actor))
            delta.updated += 1
        session.add(f)
    active = [f for f in existing.values() if f.status in ACTIVE]
    for f in active:
        if f.id in seen:
            continue
        session.add(
            FindingEvent(
                finding_id=f.id,
                at=now,
                event="status",
                from_status=f.status,
                to_status="resolved",
                actor=actor,
                reason="drift no longer found on sync",
            )
        )
        audit(
            session,
            actor=actor,
            verb="finding.resolve",
            object_type="finding",
            object_id=f.id,
            reason="drift no longer found on sync",
        )
        f.status, f.status_reason, f.resolved_at = "resolved", "drift no longer found on sync", now
        session.add(f)
        delta.resolved += 1
    return delta


def _fill(f: Finding, d: Drift) -> None:
    f.summary = d.summary
    f.amount_minor = d.amount_minor
    f.currency = d.currency
    f.customer = d.customer
    f.contract_id = d.contract_id
    f.period_start = d.period_start
    f.period_end = d.period_end
    f.evidence = d.evidence
    f.details = d.details


def set_status(session: Session, finding_id_: str, status: str, *, reason: str, actor: str, now: datetime) -> Finding:
    """Acknowledge, ignore, resolve or reopen a finding by hand, with a reason."""
    if status not in FINDING_STATUSES:
        raise ConfigError(f"unknown finding status {status!r}", fix=f"use one of {', '.join(FINDING_STATUSES)}")
    if not reason.strip():
        raise ConfigError("a status change needs a reason", fix="pass --reason '...'")
    f = session.get(Finding, finding_id_)
    if f is None:
        raise ConfigError(f"no finding {finding_id_!r}", fix="list findings with `subledger findings`")
    session.add(
        FindingEvent(
            finding_id=f.id, at=now, event="status", from_status=f.status, to_status=status, actor=actor, reason=reason
        )
    )
    audit(
        session,
        actor=actor,
        verb=f"finding.{status}",
        object_type="finding",
        object_id=f.id,
        reason=reason,
        from_status=f.status,
    )
    f.status, f.status_reason = status, reason
    f.resolved_at = now if status == "resolved" else None
    session.add(f)
    return f
