"""Apply: executing approved actions exactly once, even across crashes and concurrent appliers.

Every applier (``subledger apply``, the API's apply, the worker's and ``subledger sync``'s
apply stage) goes through :func:`apply_actions`, and for each action:

1. **Claim.** One compare-and-set (:func:`subledger.sync.outbox.claim`) moves it from
   ``approved`` to ``in_flight`` with ``claimed_by`` (this applier) and ``claimed_until``
   (2 minutes, renewed every 30 s while the applier runs), and commits *before* the
   target is called. The status is checked inside that statement: an action another
   applier holds, or that was superseded, rejected or done meanwhile, is skipped, never
   sent. An ``in_flight`` action whose claim lapsed, or whose holder is a dead process of
   this host, is claimed again.
2. **Find before create.** If the action was in flight before (a crash, a timeout or a
   dead applier left its outcome unknown), ask the connector to look the write up by its
   idempotency key / metadata. If it is there, the write happened: do not repeat it.
3. **Write** with the action's deterministic idempotency key (vendors deduplicate on it).
4. **Read after write.** The connector returns the record as re-read from the target; it
   becomes the action's result and the baseline for the next update of that record.
5. **Settle.** Mark it ``done`` (or ``failed``, for a refusal) with a compare-and-set on
   the claim, and audit it. A transient failure whose outcome is unknown releases the
   claim: the action stays ``in_flight`` for the next apply to settle by step 2.

A crash between any two steps leaves either an ``approved`` action (nothing was sent) or an
``in_flight`` one (step 2 settles it), so re-running ``apply`` never writes twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select, update

from subledger.core.connector import Connector, WriteAction, WriteConflict, WriteResult
from subledger.core.db_types import utcnow
from subledger.core.errors import FailureKind, classify
from subledger.core.model.action import Action, ActionStatus
from subledger.core.model.base import canonical_json
from subledger.sync.audit import audit
from subledger.sync.locks import Heartbeat, process_owner, renew_interval
from subledger.sync.outbox import CLAIM_TTL, Claim, claim, release, renew_claims, settle
from subledger.sync.pull import load_connector

log = logging.getLogger(__name__)

StepHook = Callable[[str, Action], None]
STEPS = ("before_outbox", "after_outbox", "after_write", "before_done", "after_done")
APPLICABLE = (ActionStatus.APPROVED.value, ActionStatus.IN_FLIGHT.value)


@dataclass
class ApplyReport:
    """What one apply did."""

    done: list[str] = field(default_factory=list)
    found_existing: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Not claimed: another applier holds it, or it is no longer approved (superseded, done...)."""


def _no_hook(step: str, action: Action) -> None:
    return None


def _no_fence() -> None:
    return None


def apply_actions(
    engine: Engine,
    *,
    actor: str,
    action_ids: list[str] | None = None,
    connectors: dict[str, Connector] | None = None,
    on_step: StepHook = _no_hook,
    fence: Callable[[], None] = _no_fence,
    claim_ttl: timedelta = CLAIM_TTL,
    owner: str | None = None,
) -> ApplyReport:
    """Apply every approved (or interrupted, ``in_flight``) action, or only ``action_ids``.

    Safe to run from any number of threads and processes at once: each action is claimed
    by exactly one of them.

    Args:
        actor: who is applying (audited).
        action_ids: limit to these actions.
        connectors: connectors by connection name (default: built from the store's config).
        on_step: called at each step; tests raise from it to simulate a crash there.
        fence: called before each claim; raises to stop (a sync whose lease was taken over).
        claim_ttl: how long a claim lasts unless renewed (renewed every quarter of it, at
            most every 30 s, while this apply runs).
        owner: this applier's id in ``claimed_by`` (default: host, pid and a random suffix).
    """
    report = ApplyReport()
    owner = owner or process_owner()
    cache: dict[str, Connector] = dict(connectors or {})
    with Session(engine) as session:
        stmt = select(Action.id).where(Action.status.in_(APPLICABLE)).order_by(Action.created_at, Action.id)  # type: ignore[attr-defined]
        ids = [i for i in session.exec(stmt).all() if action_ids is None or i in action_ids]
    if not ids:
        return report
    keeper = Heartbeat(
        lambda: renew_claims(engine, owner, ttl=claim_ttl) >= 0, renew_interval(claim_ttl), name=f"claims of {owner}"
    )
    with keeper:
        for aid in ids:
            fence()
            _apply_one(
                engine, aid, actor=actor, owner=owner, ttl=claim_ttl, cache=cache, report=report, on_step=on_step
            )
    return report


def _connector(engine: Engine, cache: dict[str, Connector], name: str) -> Connector:
    if name not in cache:
        with Session(engine) as session:
            cache[name] = load_connector(session, name)
    return cache[name]


def _apply_one(
    engine: Engine,
    aid: str,
    *,
    actor: str,
    owner: str,
    ttl: timedelta,
    cache: dict[str, Connector],
    report: ApplyReport,
    on_step: StepHook,
) -> None:
    with Session(engine, expire_on_commit=False) as session:
        seen = session.get(Action, aid)
    if seen is None or seen.status not in APPLICABLE:
        report.skipped.append(aid)
        return
    on_step("before_outbox", seen)
    try:
        connector = _connector(engine, cache, seen.connection)
    except Exception as exc:
        # Nothing was sent: the action stays as it is, with the reason and the fix.
        _note_error(engine, aid, actor=actor, error=f"{classify(exc)}: {exc}")
        report.failed.append(aid)
        return

    def audit_claim(session: Session, held: Claim) -> None:
        audit(
            session,
            actor=actor,
            verb="action.send",
            object_type="action",
            object_id=aid,
            reason="outbox: claimed, about to write" + (" (looking it up first)" if held.uncertain else ""),
            attempt=held.action.attempts,
            claimed_by=owner,
        )

    held = claim(engine, aid, owner=owner, ttl=ttl, also=audit_claim)
    if held is None:
        report.skipped.append(aid)
        return
    action = held.action
    try:
        on_step("after_outbox", action)
        _send(engine, held.action, uncertain=held.uncertain, connector=connector, actor=actor, owner=owner,
              report=report, on_step=on_step)
    except BaseException:
        # This applier is going away (a crash, Ctrl-C): let the next one settle the action at once.
        try:
            release(engine, aid, owner)
        except Exception as exc:  # the claim lapses by itself
            log.warning("could not release the claim on %s: %s", aid, exc)
        raise


def _send(
    engine: Engine,
    action: Action,
    *,
    uncertain: bool,
    connector: Connector,
    actor: str,
    owner: str,
    report: ApplyReport,
    on_step: StepHook,
) -> None:
    aid = action.id
    write = WriteAction(
        kind=action.kind,
        idempotency_key=action.idempotency_key,
        payload=action.payload,
        target_external_id=action.target_external_id,
        base_version=action.base_version,
    )
    result: WriteResult | None = None
    try:
        if uncertain:
            result = connector.find(write)
            if result is not None:
                report.found_existing.append(aid)
        if result is None:
            try:
                result = connector.write(write)
            except WriteConflict:
                raise
            except Exception as exc:
                if classify(exc) is not FailureKind.TRANSIENT:
                    raise
                # The outcome is unknown (a timeout may have landed): look before trying again.
                result = connector.find(write)
                if result is None:
                    raise
    except WriteConflict as exc:
        _finish(engine, aid, owner, status="failed", error=f"conflict: {exc}", actor=actor, verb="action.conflict",
                report=report)
        report.conflicts.append(aid)
        return
    except Exception as exc:
        kind = classify(exc)
        if kind is FailureKind.TRANSIENT:
            # Still in flight: the next apply re-claims it and looks it up before writing.
            from subledger.core.secrets import redact

            released = release(engine, aid, owner, error=redact(f"{kind}: {exc}")[:4096])
            with Session(engine) as session, session.begin():
                audit(session, actor=actor, verb="action.error", object_type="action", object_id=aid,
                      reason=redact(f"{kind}: {exc}")[:2000], released=released)
        else:
            _finish(engine, aid, owner, status="failed", error=f"{kind}: {exc}", actor=actor, verb="action.error",
                    report=report)
        report.failed.append(aid)
        return
    on_step("after_write", action)
    on_step("before_done", action)
    if _finish(engine, aid, owner, status="done", actor=actor, verb="action.done", result=result, report=report):
        report.done.append(aid)
    on_step("after_done", action)


def _finish(
    engine: Engine,
    aid: str,
    owner: str,
    *,
    status: str,
    actor: str,
    verb: str,
    report: ApplyReport,
    error: str | None = None,
    result: WriteResult | None = None,
) -> bool:
    """Settle this applier's claim; False (and logged) when another applier took the action over."""
    from subledger.core.secrets import redact

    values: dict[str, Any] = {"error": redact(error)[:4096] if error else None}
    details: dict[str, Any] = {}
    if result is not None:
        values["external_id"] = result.external_id
        values["result"] = json.loads(
            canonical_json({"external_id": result.external_id, "created": result.created, "record": result.record})
        )
        details = {"external_id": result.external_id, "created": result.created}
    with Session(engine) as session, session.begin():
        if not settle(session, aid, owner, status, now=utcnow(), **values):
            log.error(
                "action %s: the claim of %s lapsed and another applier took it over; it settles the action "
                "(by finding this write first)", aid, owner,
            )
            report.skipped.append(aid)
            return False
        audit(session, actor=actor, verb=verb, object_type="action", object_id=aid, reason=values["error"] or "",
              **details)
    return True


def _note_error(engine: Engine, aid: str, *, actor: str, error: str) -> None:
    """Record why an action could not be started, without changing its status."""
    from subledger.core.secrets import redact

    text = redact(error)[:4096]
    with Session(engine) as session, session.begin():
        session.exec(update(Action).where(Action.id == aid).values(error=text, updated_at=utcnow()))
        audit(session, actor=actor, verb="action.error", object_type="action", object_id=aid, reason=text)
