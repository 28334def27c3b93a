"""Planning: turning the fixes rules propose into outbox rows, and approving them.

An action's idempotency key is a hash of what it does (kind, target connection, target
record and canonical payload), so planning the same fix on every sync keeps one row. When a
drift changes (more usage arrived), its fix changes, gets a new key, and the stale planned
action is superseded. Approval policies auto-approve by rule up to an amount; everything
else waits for ``subledger approve``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from subledger.core.errors import ConfigError
from subledger.core.model.action import Action, ActionStatus
from subledger.core.model.base import canonical_json
from subledger.core.model.finding import Finding
from subledger.core.money import to_major
from subledger.sync.audit import audit
from subledger.sync.findings import finding_id
from subledger.sync.outbox import TransitionRefused, transition
from subledger.sync.rules.base import ActionDraft
from subledger.sync.settings import SyncSettings

PENDING = (ActionStatus.PLANNED.value, ActionStatus.APPROVED.value)


def idempotency_key(draft: ActionDraft) -> str:
    """Deterministic key of an action: the same content always gives the same key."""
    content = canonical_json(
        {
            "kind": draft.kind,
            "connection": draft.connection,
            "target": draft.target_external_id,
            "payload": draft.payload,
        }
    )
    return "sl_" + hashlib.sha256(content.encode()).hexdigest()[:40]


@dataclass
class PlanDelta:
    """How the plan changed."""

    planned: int = 0
    superseded: int = 0
    auto_approved: int = 0


def auto_approver(settings: SyncSettings, rule: str | None, amount_minor: int, currency: str | None) -> str | None:
    """The policy that approves this action, or None when a person must."""
    for policy in settings.auto_approve:
        if policy.rule != rule:
            continue
        if policy.max_amount is None:
            return f"policy:{rule}"
        limit = policy.limit_minor(currency) if currency else -1
        if limit is not None and abs(amount_minor) <= limit:
            assert currency is not None
            return f"policy:{rule}<={to_major(limit, currency)} {currency}"
    return None


def plan_actions(
    session: Session,
    proposals: dict[tuple[str, str], list[ActionDraft]],
    *,
    settings: SyncSettings,
    now: datetime,
    actor: str,
    rules: set[str] | None = None,
    keep: set[str] | None = None,
) -> PlanDelta:
    """Write planned actions for each ``(rule, drift key)``'s drafts; supersede stale ones.

    Args:
        proposals: every active drift's drafts, keyed by (rule, drift key).
        rules: the rules that were judged (default: all); only their stale actions are
            superseded, so a rule that was not covered keeps its actions as they are.
        keep: ids of approved actions a drift still counts on (pending billing): not stale.
    """
    delta = PlanDelta()
    wanted: set[str] = set()
    known = set(session.exec(select(Action.idempotency_key)).all())
    findings = {f.id: f for f in session.exec(select(Finding)).all()}
    for (rule, key), drafts in proposals.items():
        fid = finding_id(rule, key)
        finding = findings.get(fid)
        if finding is not None and finding.status == "ignored":
            continue
        for draft in drafts:
            ikey = idempotency_key(draft)
            wanted.add(ikey)
            if ikey in known:
                continue
            known.add(ikey)
            action = Action(
                id="act_" + ikey.removeprefix("sl_")[:24],
                idempotency_key=ikey,
                kind=draft.kind,
                connection=draft.connection,
                finding_id=fid,
                rule=rule,
                customer=finding.customer if finding else None,
                summary=draft.summary,
                payload=draft.payload,
                target_external_id=draft.target_external_id,
                base_version=draft.base_version,
                amount_minor=draft.amount_minor,
                currency=draft.currency,
                created_at=now,
                updated_at=now,
            )
            approver = auto_approver(settings, rule, draft.amount_minor, draft.currency)
            if approver:
                action.status, action.approved_by = "approved", approver
                delta.auto_approved += 1
            session.add(action)
            audit(
                session,
                actor=actor,
                verb="action.plan",
                object_type="action",
                object_id=action.id,
                reason=draft.summary,
                approved_by=approver,
            )
            delta.planned += 1
    for stale in session.exec(select(Action).where(Action.status.in_(PENDING))).all():
        if stale.idempotency_key not in wanted and (rules is None or stale.rule in rules) and \
                stale.id not in (keep or ()):
            try:
                transition(session, stale, ActionStatus.SUPERSEDED, expect=PENDING, now=now)
            except TransitionRefused:
                continue  # an applier claimed it meanwhile: it is in flight, and settles there
            audit(
                session,
                actor=actor,
                verb="action.supersede",
                object_type="action",
                object_id=stale.id,
                reason="the drift it fixed changed or disappeared",
            )
            delta.superseded += 1
    return delta


def approve(session: Session, action_ids: list[str], *, actor: str, reason: str, now: datetime) -> list[Action]:
    """Approve planned actions by hand (each with a compare-and-set on ``planned``).

    Raises:
        ConfigError: an unknown action; TransitionRefused (a ConfigError) for one that is
            not planned (any more).
    """
    approved = []
    for aid in action_ids:
        action = session.get(Action, aid)
        if action is None:
            raise ConfigError(f"no action {aid!r}", fix="list them with `subledger plan`")
        transition(session, action, ActionStatus.APPROVED, expect=ActionStatus.PLANNED, now=now, approved_by=actor)
        audit(session, actor=actor, verb="action.approve", object_type="action", object_id=aid, reason=reason)
        approved.append(action)
    return approved
