"""Quarantined usage events: list them, and release them once their customer and meter are known.

API ingest keeps an event whose customer or meter the store does not know as a
:class:`~subledger.core.model.sync_state.Reject` (stream ``usage_quarantine``, status
``open``, ``raw`` = the event as JSON). Releasing re-runs each open one through the same
checks as ingest and, in one transaction:

* an event whose customer and meter are now known is stored exactly once (the store's
  ``UNIQUE(system, event_id)``; one already stored with the same content, say because the
  sender retried after the link, counts as released too) and its reject is ``released``;
* an event still unknown stays ``open``;
* an event that can no longer be stored stays ``open`` with the new reason: its id was
  since stored with other content (``conflict``), or its period was closed (``too_old``).

The time window is judged as of the event's first arrival (``first_seen``): an event
that arrived on time is not refused because it waited in quarantine, but a closed
accounting period is never reopened. Releasing twice, or from two places at once,
stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from subledger.api.ingest import (
    QUARANTINE_STREAM,
    EventResult,
    Invalid,
    Limits,
    Pending,
    Window,
    closed_through,
    earliest_open,
    parse_body,
    store_events,
    unknown_problem,
    validate_event,
)
from subledger.api.known import Catalog
from subledger.core.db_types import utcnow
from subledger.core.model.sync_state import Reject

BATCH = 1000


@dataclass
class Released:
    """What happened to one quarantined event."""

    reject: int
    event: str | None
    status: str  # released, duplicate (already stored: released), unknown (still), refused
    code: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"reject": self.reject, "event": self.event, "status": self.status, "code": self.code,
                "reason": self.reason}


@dataclass
class ReleaseReport:
    results: list[Released] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "released": self.count("released"),
            "duplicates": self.count("duplicate"),
            "still_unknown": self.count("unknown"),
            "refused": self.count("refused"),
            "results": [r.to_json() for r in self.results],
        }


def open_quarantine(session: Session, source: str, ids: Sequence[int] | None = None, limit: int | None = None,
                    after: int = 0) -> list[Reject]:
    """Open quarantined events of ``source``, oldest first."""
    stmt = select(Reject).where(Reject.connection == source, Reject.stream == QUARANTINE_STREAM,
                                Reject.status == "open", Reject.id > after).order_by(Reject.id)
    if ids:
        stmt = stmt.where(Reject.id.in_(list(ids)))
    if limit:
        stmt = stmt.limit(limit)
    return list(session.execute(stmt).scalars())


def release(
    engine: Engine,
    source: str,
    *,
    ids: Sequence[int] | None = None,
    grace_days: int = 3,
    max_future_seconds: int = 300,
    limits: Limits = Limits(),
    actor: str = "system",
    dry_run: bool = False,
    now: datetime | None = None,
) -> ReleaseReport:
    """Store every open quarantined event of ``source`` (or those of ``ids``) whose customer and meter are known.

    ``dry_run`` reports what would happen and changes nothing.
    """
    from subledger.sync.audit import audit

    report = ReleaseReport()
    now = now or utcnow()
    after = 0
    while True:
        with Session(engine) as session:
            rows = open_quarantine(session, source, ids, BATCH, after)
            if not rows:
                break
            after = rows[-1].id or after
            batch = _release_batch(session, source, rows, grace_days, max_future_seconds, limits, now)
            report.results.extend(batch)
            done = [r.reject for r in batch if r.status in ("released", "duplicate")]
            if dry_run:
                session.rollback()
                continue
            if done:
                audit(session, actor=actor, verb="usage.release", object_type="reject",
                      object_id=f"{source}:{QUARANTINE_STREAM}", reason="customer and meter are known",
                      rejects=done[:200], released=len(done))
            session.commit()
    return report


def _release_batch(session: Session, source: str, rows: list[Reject], grace_days: int, max_future_seconds: int,
                   limits: Limits, now: datetime) -> list[Released]:
    results: list[EventResult] = []
    pending: list[Pending] = []
    closed = closed_through(session)
    for index, row in enumerate(rows):
        res = EventResult(index, None, "rejected")
        results.append(res)
        try:
            raw = parse_body(row.raw.encode())
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                res.id = raw["id"]
            ev = validate_event(raw, limits)
            arrived = row.first_seen
            Window(earliest_open(arrived, grace_days, closed), arrived + timedelta(seconds=max_future_seconds),
                   max_future_seconds).check(ev.occurred_at)
        except Invalid as bad:
            res.code, res.reason, res.fix = bad.code, bad.reason, bad.fix
            continue
        except (ValueError, RecursionError):
            res.code, res.reason, res.fix = "invalid", "the quarantined event is not valid JSON", "send it again"
            continue
        name = "customer_external_id" if raw.get("customer_external_id") is not None else "customer"
        pending.append(Pending(index, ev, name))
    catalog = Catalog(session, source)
    customers = catalog.known_customers({p.event.customer_external_id for p in pending})
    meters = catalog.known_meters({p.event.meter for p in pending})
    known = []
    for p in pending:
        problem = unknown_problem(p, customers, meters)
        if problem is None:
            known.append(p)
        else:
            results[p.index].code, results[p.index].reason = problem.code, problem.reason
    if known:
        store_events(session, source, known, results)
    out: list[Released] = []
    for row, res in zip(rows, results, strict=True):
        assert row.id is not None
        if res.status in ("accepted", "duplicate"):
            row.status, row.last_seen = "released", now
            session.add(row)
            out.append(Released(row.id, res.id, "released" if res.status == "accepted" else "duplicate"))
        elif res.code in ("unknown_customer", "unknown_meter"):
            out.append(Released(row.id, res.id, "unknown", res.code, res.reason))
        else:
            row.reason, row.fix, row.last_seen = (res.reason or "")[:2048], (res.fix or "")[:2048], now
            session.add(row)
            out.append(Released(row.id, res.id, "refused", res.code, res.reason))
    return out


def quarantine_rows(session: Session, source: str, limit: int = 200, offset: int = 0) -> tuple[int, list[Reject]]:
    """The open quarantined events of ``source`` (total, page), oldest first."""
    base = select(Reject).where(Reject.connection == source, Reject.stream == QUARANTINE_STREAM,
                                Reject.status == "open")
    total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    rows = list(session.execute(base.order_by(Reject.id).offset(offset).limit(limit)).scalars())
    return total, rows
