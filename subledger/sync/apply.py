"""Apply: executing approved actions exactly once, even across crashes.

For each approved action:

1. **Outbox.** Mark it ``in_flight`` (attempts + 1) and commit *before* calling the target.
2. **Find before create.** If the action was in flight before (a crash or a timeout left
   its outcome unknown), ask the connector to look the write up by its idempotency key /
   metadata. If it is there, the write happened: do not repeat it.
3. **Write** with the action's deterministic idempotency key (vendors deduplicate on it).
4. **Read after write.** The connector returns the record as re-read from the target; it
   becomes the action's result and the baseline for the next update of that record.
5. **Done.** Mark the action done with the external id, and audit it.

A crash between any two steps leaves either an ``approved`` action (nothing was sent) or an
``in_flight`` one (step 2 settles it), so re-running ``apply`` never writes twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.connector import Connector, WriteAction, WriteConflict, WriteResult
from subledger.core.db_types import utcnow
from subledger.core.errors import FailureKind, classify
from subledger.core.model.action import Action
from subledger.core.model.base import canonical_json
from subledger.sync.audit import audit
from subledger.sync.pull import load_connector

log = logging.getLogger(__name__)

StepHook = Callable[[str, Action], None]
STEPS = ("before_outbox", "after_outbox", "after_write", "before_done", "after_done")


@dataclass
class ApplyReport:
    """What one apply did."""

    done: list[str] = field(default_factory=list)
    found_existing: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _no_hook(step: str, action: Action) -> None:
    return None


def apply_actions(
    engine: Engine,
    *,
    actor: str,
    action_ids: list[str] | None = None,
    connectors: dict[str, Connector] | None = None,
    on_step: StepHook = _no_hook,
) -> ApplyReport:
    """Apply every approved (or interrupted, ``in_flight``) action, or only ``action_ids``.

    Args:
        actor: who is applying (audited).
        action_ids: limit to these actions.
        connectors: connectors by connection name (default: built from the store's config).
        on_step: called at each step; tests raise from it to simulate a crash there.
    """
    report = ApplyReport()
    cache: dict[str, Connector] = dict(connectors or {})
    with Session(engine) as session:
        stmt = select(Action.id).where(Action.status.in_(("approved", "in_flight"))).order_by(Action.created_at)
        ids = [i for i in session.exec(stmt).all() if action_ids is None or i in action_ids]
    for aid in ids:
        _apply_one(engine, aid, actor=actor, cache=cache, report=report, on_step=on_step)
    return report


def _connector(engine: Engine, cache: dict[str, Connector], name: str) -> Connector:
    if name not in cache:
        with Session(engine) as session:
            cache[name] = load_connector(session, name)
    return cache[name]


def _apply_one(
    engine: Engine, aid: str, *, actor: str, cache: dict[str, Connector], report: ApplyReport, on_step: StepHook
) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        action = session.get(Action, aid)
        assert action is not None
        on_step("before_outbox", action)
        uncertain = action.status == "in_flight"
        action.status, action.attempts, action.updated_at = "in_flight", action.attempts + 1, utcnow()
        session.add(action)
        audit(
            session,
            actor=actor,
            verb="action.send",
            object_type="action",
            object_id=aid,
            reason="outbox: about to write",
            attempt=action.attempts,
        )
    on_step("after_outbox", action)
    connector = _connector(engine, cache, action.connection)
    write = WriteAction(
        kind=action.kind,
        idempotency_key=action.idempotency_key,
        payload=action.payload,
        target_external_id=action.target_external_id,
        base_version=action.base_version,
    )
    result: WriteResult | None = None
    if uncertain:
        result = connector.find(write)
        if result is not None:
            report.found_existing.append(aid)
    if result is None:
        try:
            result = connector.write(write)
        except WriteConflict as exc:
            _finish(engine, aid, status="failed", error=f"conflict: {exc}", actor=actor, verb="action.conflict")
            report.conflicts.append(aid)
            return
        except Exception as exc:
            if classify(exc) is FailureKind.TRANSIENT:
                # The outcome is unknown (a timeout may have landed): look before trying again.
                result = connector.find(write)
            if result is None:
                kind = classify(exc)
                status = "in_flight" if kind is FailureKind.TRANSIENT else "failed"
                _finish(engine, aid, status=status, error=f"{kind}: {exc}", actor=actor, verb="action.error")
                report.failed.append(aid)
                return
    on_step("after_write", action)
    on_step("before_done", action)
    _finish(engine, aid, status="done", actor=actor, verb="action.done", result=result)
    report.done.append(aid)
    on_step("after_done", action)


def _finish(
    engine: Engine,
    aid: str,
    *,
    status: str,
    actor: str,
    verb: str,
    error: str | None = None,
    result: WriteResult | None = None,
) -> None:
    from subledger.core.secrets import redact

    with Session(engine) as session, session.begin():
        action = session.get(Action, aid)
        assert action is not None
        action.status, action.updated_at = status, utcnow()
        action.error = redact(error) if error else None
        details: dict[str, Any] = {}
        if result is not None:
            action.external_id = result.external_id
            action.result = json.loads(
                canonical_json({"external_id": result.external_id, "created": result.created, "record": result.record})
            )
            details = {"external_id": result.external_id, "created": result.created}
        session.add(action)
        audit(
            session, actor=actor, verb=verb, object_type="action", object_id=aid, reason=action.error or "", **details
        )
