"""The worker: runs due schedules, one after another, in one process, until told to stop.

Any number of workers may share a store. Two leases keep them from stepping on each other:

* ``schedule:<id>``, taken here, so one due schedule is run by one worker only. It is
  renewed while the sync runs (it lasts 2 minutes and is renewed every 30 s, so a dead
  worker's lease is taken over within 2 minutes, at once on the same host) and the
  schedule is re-checked after taking it, because another worker may have just run the
  schedule and moved it on.
* ``sync:<connection>``, taken by the sync engine itself, so two schedules (or a schedule
  and a user's ``subledger sync``) never sync one connection at the same time. A schedule
  that finds it taken is skipped and tried again at the next poll, without counting as
  a failure.

A sync that fails is recorded on its schedule and retried with backoff
(:func:`subledger.sync.schedule.retry_delay`); nothing a sync raises stops the loop.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from subledger.core.db_types import utcnow
from subledger.core.errors import classify
from subledger.core.model.run import SyncRun
from subledger.core.model.schedule import Schedule
from subledger.sync.locks import LEASE_TTL, LeaseKeeper, LockHeld, acquire, process_owner, release
from subledger.sync.schedule import ALL, record_failure, record_success

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


class SyncFunction(Protocol):
    """The shape of :func:`subledger.sync.engine.sync`.

    It returns the SyncRun it recorded, or a report whose ``run`` is that SyncRun (or None,
    which counts as success).
    """

    def __call__(
        self, engine: Engine, connections: list[str] | None = None, *, trigger: str = "user"
    ) -> Any: ...


def run_of(result: Any) -> SyncRun | None:
    """The SyncRun in what a sync function returned."""
    if result is None or isinstance(result, SyncRun):
        return result
    run = getattr(result, "run", None)
    return run if isinstance(run, SyncRun) else None


def default_sync() -> SyncFunction:
    """The real sync engine, imported only when a worker first needs it."""
    from subledger.sync.engine import sync

    return sync


def error_text(error: Any) -> str:
    """One error of a SyncRun as a line: ``acme: HTTP 503 from billing``."""
    if not isinstance(error, dict):
        return str(error)
    where = error.get("connection") or error.get("stage")
    rest = ", ".join(f"{k}={v}" for k, v in error.items() if k not in ("connection", "stage", "kind"))
    message = error.get("message") or error.get("error") or rest
    return f"{where}: {message}" if where else str(message)


@dataclass
class Outcome:
    """What happened to one due schedule on one pass of the worker."""

    schedule_id: str
    target: str
    status: str  # succeeded, failed, or busy (its connection was being synced elsewhere)
    started: datetime
    finished: datetime
    run: SyncRun | None = None
    error: str | None = None
    next_run_at: datetime | None = None
    consecutive_failures: int = 0
    retry_in: timedelta | None = None

    @property
    def duration(self) -> timedelta:
        return self.finished - self.started


@dataclass
class WorkerReport:
    """Counts for one :meth:`Worker.run`."""

    succeeded: int = 0
    failed: int = 0
    busy: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return self.succeeded + self.failed

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "succeeded":
            self.succeeded += 1
        elif outcome.status == "failed":
            self.failed += 1
            self.errors.append(f"{outcome.schedule_id}: {outcome.error}")
        else:
            self.busy += 1


class Worker:
    """Runs due schedules through a sync function.

    Args:
        engine: the store.
        sync: the sync function; default :func:`subledger.sync.engine.sync`.
        clock: the current time (tests pass a fake one).
        sleep: waits between polls, given seconds; default waits on :meth:`stop`, so stopping
            wakes it.
        poll: the longest wait between two looks at the schedule table.
        owner: this worker's lease owner id; default host, pid and a random suffix.
        lease_ttl: how long a schedule lease lasts if not renewed (it is renewed every
            quarter of it, at most every 30 s, while the sync runs, so only a dead
            worker's lease expires).
        on_outcome: called with each :class:`Outcome` as it happens (the CLI prints them).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        sync: SyncFunction | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Any] | None = None,
        poll: timedelta = timedelta(seconds=5),
        owner: str | None = None,
        lease_ttl: timedelta = LEASE_TTL,
        on_outcome: Callable[[Outcome], Any] | None = None,
    ) -> None:
        self.engine = engine
        self._sync = sync
        self.clock = clock
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait
        self.poll = poll
        self.owner = owner or process_owner()
        self.lease_ttl = lease_ttl
        self.on_outcome = on_outcome

    @property
    def sync(self) -> SyncFunction:
        if self._sync is None:
            self._sync = default_sync()
        return self._sync

    def stop(self) -> None:
        """Ask the loop to finish the sync in progress and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop ------------------------------------------------------------------------

    def run(self, *, once: bool = False, max_runs: int | None = None) -> WorkerReport:
        """Poll and run due schedules until stopped, after one pass (``once``) or ``max_runs`` runs.

        Busy schedules (connection locked elsewhere) do not count towards ``max_runs``.
        """
        report = WorkerReport()
        while not self.stopping:
            left = None if max_runs is None else max_runs - report.runs
            try:
                for outcome in self.run_due(limit=left):
                    report.add(outcome)
            except DBAPIError as exc:
                # The store is unreachable (a restart, a full disk): wait and look again.
                log.error("worker could not read the schedules: %s", exc)
            if once or (max_runs is not None and report.runs >= max_runs) or self.stopping:
                break
            self.sleep(self.seconds_to_wait())
        return report

    def due(self) -> list[str]:
        """Ids of enabled schedules whose next run is now or past, earliest first."""
        with Session(self.engine) as session:
            stmt = (
                select(Schedule.id)
                .where(Schedule.enabled, Schedule.next_run_at <= self.clock())
                .order_by(Schedule.next_run_at, Schedule.id)
            )
            return list(session.exec(stmt).all())

    def run_due(self, *, limit: int | None = None) -> list[Outcome]:
        """One pass: run every due schedule once (at most ``limit`` actual runs)."""
        outcomes: list[Outcome] = []
        ran = 0
        for schedule_id in self.due():
            if self.stopping or (limit is not None and ran >= limit):
                break
            outcome = self.run_schedule(schedule_id)
            if outcome is None:
                continue
            outcomes.append(outcome)
            ran += outcome.status != "busy"
            if self.on_outcome is not None:
                self.on_outcome(outcome)
        return outcomes

    def seconds_to_wait(self) -> float:
        """Until the next schedule is due, but never longer than the poll interval."""
        poll = self.poll.total_seconds()
        try:
            with Session(self.engine) as session:
                earliest = session.exec(
                    select(Schedule.next_run_at)
                    .where(Schedule.enabled)
                    .order_by(Schedule.next_run_at)
                    .limit(1)
                ).first()
        except DBAPIError:
            return poll
        if earliest is None:
            return poll
        until = (earliest - self.clock()).total_seconds()
        # Still due means its connection was busy: wait a full poll rather than spin.
        return poll if until <= 0 else min(poll, until)

    # -- one schedule --------------------------------------------------------------------

    def run_schedule(self, schedule_id: str) -> Outcome | None:
        """Run one schedule if it is still due and no other worker has it; None if there was nothing to do."""
        lease = f"schedule:{schedule_id}"
        try:
            taken = acquire(self.engine, lease, self.owner, ttl=self.lease_ttl, now=self.clock())
        except LockHeld as exc:
            log.info("schedule %s is being run by another worker: %s", schedule_id, exc)
            return None
        try:
            with LeaseKeeper(self.engine, [taken], clock=self.clock):
                with Session(self.engine) as session:
                    schedule = session.get(Schedule, schedule_id)
                now = self.clock()
                if schedule is None or not schedule.enabled or schedule.next_run_at > now:
                    return None  # removed, paused, or just run by another worker
                return self._run(schedule, now)
        finally:
            release(self.engine, lease, self.owner)

    def _run(self, schedule: Schedule, started: datetime) -> Outcome:
        trigger = f"schedule:{schedule.id}"
        connections = None if schedule.target == ALL else [schedule.target]
        log.info("running schedule %s (%s)", schedule.id, schedule.target)
        try:
            run = run_of(self.sync(self.engine, connections, trigger=trigger))
        except LockHeld as exc:
            log.info("schedule %s skipped: %s", schedule.id, exc)
            return Outcome(schedule.id, schedule.target, "busy", started, self.clock(), error=str(exc))
        except Exception as exc:
            return self._failed(schedule, started, exc)
        finished = self.clock()
        if run is not None and run.status != "succeeded":
            return self._failed(schedule, started, None, run=run, finished=finished)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            row = session.get(Schedule, schedule.id)
            if row is not None:
                record_success(row, started=started, finished=finished)
                schedule = row
        return Outcome(
            schedule.id,
            schedule.target,
            "succeeded",
            started,
            finished,
            run=run,
            next_run_at=schedule.next_run_at,
        )

    def _failed(
        self,
        schedule: Schedule,
        started: datetime,
        exc: Exception | None,
        *,
        run: SyncRun | None = None,
        finished: datetime | None = None,
    ) -> Outcome:
        from subledger.core.secrets import redact

        finished = finished or self.clock()
        trigger = f"schedule:{schedule.id}"
        if exc is not None:
            message = redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_CHARS]
            log.warning("schedule %s failed: %s", schedule.id, message)
        else:
            errors = run.errors if run is not None else []
            first = errors[0] if errors else {}
            message = (
                error_text(first) if first else f"the sync ended {run.status if run else 'without a run'}"
            )
        delay = None
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            if exc is not None:
                run = self._record_failed_run(session, schedule, trigger, started, finished, exc, message)
            row = session.get(Schedule, schedule.id)
            if row is not None:
                delay = record_failure(row, started=started, finished=finished)
                schedule = row
        return Outcome(
            schedule.id,
            schedule.target,
            "failed",
            started,
            finished,
            run=run,
            error=message,
            next_run_at=schedule.next_run_at,
            consecutive_failures=schedule.consecutive_failures,
            retry_in=delay,
        )

    @staticmethod
    def _record_failed_run(
        session: Session,
        schedule: Schedule,
        trigger: str,
        started: datetime,
        finished: datetime,
        exc: Exception,
        message: str,
    ) -> SyncRun:
        """Make sure ``subledger runs`` shows a sync that raised, whether or not the engine recorded it."""
        error = {"stage": "sync", "kind": str(classify(exc)), "message": message}
        run = session.exec(
            select(SyncRun)
            .where(SyncRun.trigger == trigger, SyncRun.started_at >= started)
            .order_by(SyncRun.started_at.desc())  # type: ignore[attr-defined]
        ).first()
        if run is None:
            run = SyncRun(
                id=f"run_{uuid.uuid4().hex[:20]}",  # the engine's id form
                trigger=trigger,
                connections=[] if schedule.target == ALL else [schedule.target],
                status="failed",
                started_at=started,
                finished_at=finished,
                errors=[error],
            )
        elif run.status == "running":
            # The engine died before it could close its own record.
            run.status = "failed"
            run.finished_at = finished
            run.errors = [*run.errors, error]
        else:
            return run
        session.add(run)
        return run
