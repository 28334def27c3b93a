"""The outbox: an action's statuses, the one table of moves between them, and claims.

Every change of an action's status goes through :func:`transition` (plan supersedes,
approve, the API) or :func:`claim` / :func:`settle` (apply). Each is one compare-and-set
``UPDATE action SET status = ... WHERE id = ? AND status IN (...)`` whose row count says
whether it happened, so two processes never both move one action, and a move the table
does not allow is refused before it reaches the database.

::

    planned ──approve──► approved ──claim──► in_flight ──► done
       │                    │                 │  ▲   └───► failed
       │                    │                 └──┘ re-claim (claim expired, or its holder died):
       ├──► rejected ◄──────┤                      find-before-create, never a blind resend
       └──► superseded ◄────┘

Claims: apply takes an action with ``UPDATE ... SET status = 'in_flight', claimed_by = <me>,
claimed_until = now + TTL, attempts = attempts + 1 WHERE id = ? AND (status = 'approved' OR
(status = 'in_flight' AND (claimed_until IS NULL OR claimed_until <= now)))`` and commits
before calling the target. A superseded, rejected or done action is never sent: its status
is checked inside that statement. An ``in_flight`` action whose claim lapsed (or whose
holder is a dead process of this host) is re-claimed, and the applier then looks the
write up in the target first (``attempts > 1``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, or_
from sqlmodel import Session, update

from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError
from subledger.core.model.action import Action, ActionStatus
from subledger.sync.locks import holder_is_dead

log = logging.getLogger(__name__)

S = ActionStatus
TRANSITIONS: dict[ActionStatus, frozenset[ActionStatus]] = {
    S.PLANNED: frozenset({S.APPROVED, S.REJECTED, S.SUPERSEDED}),
    S.APPROVED: frozenset({S.IN_FLIGHT, S.REJECTED, S.SUPERSEDED}),
    # in_flight -> in_flight is a re-claim: the write may have landed, so it is looked up first.
    S.IN_FLIGHT: frozenset({S.IN_FLIGHT, S.DONE, S.FAILED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.SUPERSEDED: frozenset(),
}
"""Which status may follow which. Everything not listed is refused."""

CLAIM_TTL = timedelta(minutes=2)
"""How long a claim lasts unless its applier renews it (it does, every 30 s, while it writes)."""


class TransitionRefused(ConfigError):
    """The action is not in a status this move starts from (someone else moved it first)."""

    def __init__(self, message: str, *, fix: str, current: str | None) -> None:
        super().__init__(message, fix=fix)
        self.current = current


def allowed(source: str, to: str) -> bool:
    """Whether the table allows ``source`` -> ``to``."""
    return ActionStatus(to) in TRANSITIONS[ActionStatus(source)]


def sources(to: str) -> tuple[ActionStatus, ...]:
    """Every status the table allows a move to ``to`` from."""
    target = ActionStatus(to)
    return tuple(s for s in ActionStatus if target in TRANSITIONS[s])


def _expected(to: ActionStatus, expect: str | Iterable[str] | None) -> tuple[ActionStatus, ...]:
    if expect is None:
        return sources(to)
    wanted = (expect,) if isinstance(expect, str) else tuple(expect)
    statuses = tuple(ActionStatus(s) for s in wanted)
    for s in statuses:
        if to not in TRANSITIONS[s]:
            raise ValueError(f"an action may not go from {s} to {to}; the outbox's table refuses it")
    return statuses


def transition(
    session: Session,
    action: Action,
    to: str,
    *,
    expect: str | Iterable[str] | None = None,
    now: datetime | None = None,
    **values: Any,
) -> Action:
    """Move ``action`` to ``to`` in the caller's transaction, if it is still in ``expect``.

    Args:
        expect: the status (or statuses) it must be in now (default: every status the
            table allows the move from). A status the table does not allow the move from
            is a programming error (``ValueError``).
        values: other columns to set in the same statement (``approved_by=...``).

    Raises:
        TransitionRefused: the stored action is in another status (it was moved meanwhile).
    """
    target = ActionStatus(to)
    expected = _expected(target, expect)
    if target is ActionStatus.IN_FLIGHT:
        raise ValueError("an action goes in flight only through claim(), which commits before the write")
    now = now or utcnow()
    session.flush()
    result = session.exec(
        update(Action)
        .where(Action.id == action.id, Action.status.in_([s.value for s in expected]))  # type: ignore[attr-defined]
        .values(status=target.value, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(action)
        raise TransitionRefused(
            f"action {action.id} is {action.status}, not {' or '.join(expected)}",
            fix="see its current status with `subledger plan --all`; "
            + {
                ActionStatus.APPROVED: "approve only planned actions",
                ActionStatus.SUPERSEDED: "it was claimed by an applier meanwhile and will be settled by it",
            }.get(target, "an action moves only as the outbox's transition table allows"),
            current=action.status,
        )
    session.refresh(action)
    return action


# -- claims ------------------------------------------------------------------------------------


@dataclass
class Claim:
    """An action this applier holds in flight."""

    action: Action
    owner: str

    @property
    def uncertain(self) -> bool:
        """It was in flight before: its write may have landed, so look it up before writing."""
        return self.action.attempts > 1


def claim(
    engine: Engine,
    action_id: str,
    *,
    owner: str,
    ttl: timedelta = CLAIM_TTL,
    now: datetime | None = None,
    also: Callable[[Session, Claim], None] | None = None,
) -> Claim | None:
    """Claim one action for ``owner`` and commit; None if it cannot be claimed now.

    It can be when it is approved, or in flight with a claim that lapsed, was released
    after an uncertain failure, or is held by a dead process of this host. Anything else
    (superseded, rejected, done, failed, planned, or claimed by a live applier) is not
    touched and never sent. ``also`` runs in the claim's transaction once it is won (the
    applier audits there).
    """
    now = now or utcnow()
    claimable = or_(
        Action.status == ActionStatus.APPROVED.value,
        and_(
            Action.status == ActionStatus.IN_FLIGHT.value,
            or_(Action.claimed_until.is_(None), Action.claimed_until <= now),  # type: ignore[union-attr]
        ),
    )
    values = {
        "status": ActionStatus.IN_FLIGHT.value,
        "claimed_by": owner,
        "claimed_until": now + ttl,
        "attempts": Action.attempts + 1,
        "updated_at": now,
    }
    with Session(engine, expire_on_commit=False) as session, session.begin():
        won = session.exec(
            update(Action).where(Action.id == action_id, claimable).values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount == 1
        if not won:
            row = session.get(Action, action_id)
            if row is None or row.status != ActionStatus.IN_FLIGHT or not holder_is_dead(row.claimed_by):
                return None
            # Its holder is a process of this host that died: take the claim over at once.
            won = session.exec(
                update(Action)
                .where(
                    Action.id == action_id,
                    Action.status == ActionStatus.IN_FLIGHT.value,
                    Action.claimed_by == row.claimed_by,
                    Action.attempts == row.attempts,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            ).rowcount == 1
            if not won:
                return None
            log.warning("action %s: took over the claim of %s, whose process is gone", action_id, row.claimed_by)
        action = session.get(Action, action_id, populate_existing=True)
        assert action is not None
        held = Claim(action, owner)
        if also is not None:
            also(session, held)
        return held


def renew_claims(engine: Engine, owner: str, *, ttl: timedelta = CLAIM_TTL, now: datetime | None = None) -> int:
    """Extend every claim ``owner`` holds; the number renewed."""
    now = now or utcnow()
    with Session(engine) as session, session.begin():
        return session.exec(
            update(Action)
            .where(Action.claimed_by == owner, Action.status == ActionStatus.IN_FLIGHT.value)
            .values(claimed_until=now + ttl)
        ).rowcount


def release(engine: Engine, action_id: str, owner: str, *, error: str | None = None) -> bool:
    """Let go of a claim whose outcome is unknown: the action stays in flight, and the next
    applier may re-claim it at once (and will look the write up first)."""
    values: dict[str, Any] = {"claimed_until": None, "updated_at": utcnow()}
    if error is not None:
        values["error"] = error
    with Session(engine) as session, session.begin():
        return session.exec(
            update(Action)
            .where(Action.id == action_id, Action.claimed_by == owner, Action.status == ActionStatus.IN_FLIGHT.value)
            .values(**values)
        ).rowcount == 1


def settle(
    session: Session, action_id: str, owner: str, to: str, *, now: datetime | None = None, **values: Any
) -> bool:
    """End ``owner``'s claim with ``done`` or ``failed``, in the caller's transaction.

    False when the claim is no longer ``owner``'s (it lapsed and another applier took
    the action over): nothing is changed, and the other applier settles it.
    """
    target = ActionStatus(to)
    if not allowed(ActionStatus.IN_FLIGHT, target) or target is ActionStatus.IN_FLIGHT:
        raise ValueError(f"a claim ends with done or failed, not {target}")
    now = now or utcnow()
    return session.exec(
        update(Action)
        .where(Action.id == action_id, Action.claimed_by == owner, Action.status == ActionStatus.IN_FLIGHT.value)
        .values(status=target.value, claimed_until=None, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
