"""The worker runs due schedules, retries failures with backoff, and skips busy connections.

A fake clock and a fake sync function stand in for time and for the sync engine: the
fake records each call, makes the clock move as if the sync took time, and fails or
reports a busy connection when told to. It writes a SyncRun row the way the engine does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import typer
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, select
from typer.testing import CliRunner
from ulid import ULID

import subledger.sync.worker as worker_module
from subledger.commands.schedule import register
from subledger.core.errors import ConfigError
from subledger.core.model import Connection, Lock, Schedule, SyncRun
from subledger.core.secrets import forget_secrets, register_secret
from subledger.core.store.engine import get_engine
from subledger.sync.locks import LockHeld, acquire, held
from subledger.sync.schedule import new_schedule, parse_cron
from subledger.sync.worker import Outcome, Worker

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
M = timedelta(minutes=1)
S = timedelta(seconds=1)


class Clock:
    """A clock that moves only when told to (by the fake sync, or by the fake sleep)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


class FakeSync:
    """Records calls; each call takes ``takes`` and then does the next scripted thing.

    Script entries: ``"ok"`` records a succeeded SyncRun, ``"failed"`` a failed one (the
    engine's way of reporting a sync that ran but did not succeed), an exception instance
    is raised. After the script runs out every call is ``"ok"``.
    """

    def __init__(self, engine: Engine, clock: Clock, *script: object, takes: timedelta = 0 * S) -> None:
        self.engine, self.clock, self.script, self.takes = engine, clock, list(script), takes
        self.calls: list[tuple[datetime, list[str] | None, str]] = []

    def __call__(
        self, engine: Engine, connections: list[str] | None = None, *, trigger: str = "user"
    ) -> SyncRun:
        assert engine is self.engine
        started = self.clock()
        self.calls.append((started, connections, trigger))
        self.clock.now += self.takes
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, BaseException):
            raise step
        run = SyncRun(
            id=str(ULID()),
            trigger=trigger,
            connections=connections or ["acme", "globex"],
            status="succeeded" if step == "ok" else "failed",
            started_at=started,
            finished_at=self.clock(),
            records_read=120,
            records_written=4,
            findings_opened=2,
            findings_resolved=1,
            actions_planned=3,
            actions_applied=2,
            errors=[] if step == "ok" else [{"connection": "acme", "message": "HTTP 503 from billing"}],
        )
        with Session(engine, expire_on_commit=False) as session, session.begin():
            session.add(run)
        return run

    @property
    def times(self) -> list[datetime]:
        return [c[0] for c in self.calls]


@pytest.fixture
def store(engine: Engine) -> Engine:
    with Session(engine) as session, session.begin():
        session.add(Connection(name="acme", plugin="files"))
        session.add(Connection(name="globex", plugin="files"))
    return engine


def add(
    engine: Engine,
    target: str = "acme",
    *,
    every: timedelta | None = 15 * M,
    cron: str | None = None,
    now: datetime = T0,
    schedule_id: str | None = None,
) -> str:
    row = new_schedule(
        target,
        every=None if cron else every,
        cron=parse_cron(cron) if cron else None,
        now=now,
        schedule_id=schedule_id,
    )
    with Session(engine) as session, session.begin():
        session.add(row)
        return row.id


def schedule(engine: Engine, schedule_id: str) -> Schedule:
    with Session(engine) as session:
        row = session.get(Schedule, schedule_id)
        assert row is not None
        return row


def runs(engine: Engine) -> list[SyncRun]:
    with Session(engine) as session:
        return list(session.exec(select(SyncRun).order_by(SyncRun.started_at)).all())


def make_worker(engine: Engine, sync: FakeSync, clock: Clock, **kwargs: object) -> Worker:
    kwargs.setdefault("poll", 5 * S)
    return Worker(engine, sync=sync, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


# -- running due schedules --------------------------------------------------------------------


def test_a_due_schedule_runs_with_its_trigger_and_moves_to_its_next_slot(store: Engine) -> None:
    clock = Clock()
    sid = add(store, "acme")
    everything = add(store, "all", every=timedelta(hours=1), now=T0 - 2 * M)
    sync = FakeSync(store, clock, takes=20 * S)

    outcomes = make_worker(store, sync, clock).run_due()

    # the longest-overdue first; "all" syncs every connection
    assert sync.calls == [
        (T0, None, f"schedule:{everything}"),
        (T0 + 20 * S, ["acme"], "schedule:acme-every-15m"),
    ]
    assert [(o.schedule_id, o.status, o.duration) for o in outcomes] == [
        (everything, "succeeded", 20 * S),
        (sid, "succeeded", 20 * S),
    ]
    row = schedule(store, sid)
    assert (row.last_status, row.last_run_at, row.consecutive_failures) == ("succeeded", T0 + 20 * S, 0)
    assert row.next_run_at == T0 + 15 * M
    assert schedule(store, everything).next_run_at == T0 + 58 * M


def test_schedules_not_yet_due_or_paused_do_not_run(store: Engine) -> None:
    clock = Clock()
    add(store, "acme", now=T0 + S)  # due a second from now
    paused = add(store, "globex")
    with Session(store) as session, session.begin():
        session.get(Schedule, paused).enabled = False  # type: ignore[union-attr]
    sync = FakeSync(store, clock)

    assert make_worker(store, sync, clock).run(once=True).runs == 0
    assert sync.calls == [] and clock.slept == []


def test_a_failing_sync_is_retried_with_growing_delays_then_rejoins_its_cadence(store: Engine) -> None:
    clock = Clock()
    sid = add(store, "acme", every=15 * M)
    sync = FakeSync(store, clock, RuntimeError("billing API down"), "failed", ConfigError("bad key"), "ok")
    seen: list[Outcome] = []

    report = make_worker(store, sync, clock, on_outcome=seen.append).run(max_runs=5)

    # fail at 0, retry 30s later, fail, 1m later, fail, 2m later, succeed; then the regular 15m slot
    assert sync.times == [T0, T0 + 30 * S, T0 + 90 * S, T0 + 210 * S, T0 + 15 * M]
    assert [(o.status, o.consecutive_failures, o.retry_in) for o in seen] == [
        ("failed", 1, 30 * S),
        ("failed", 2, 1 * M),
        ("failed", 3, 2 * M),
        ("succeeded", 0, None),
        ("succeeded", 0, None),
    ]
    assert [o.error for o in seen[:3]] == [
        "RuntimeError: billing API down",
        "acme: HTTP 503 from billing",
        "ConfigError: bad key",
    ]
    assert (report.runs, report.succeeded, report.failed) == (5, 2, 3)
    row = schedule(store, sid)
    assert (row.last_status, row.consecutive_failures, row.next_run_at) == ("succeeded", 0, T0 + 30 * M)
    # the worker slept only until the next run was due, never more than the 5s poll
    assert max(clock.slept) == 5 and sum(clock.slept) == (15 * M).total_seconds()


def test_a_sync_that_raises_is_recorded_in_the_run_history_with_secrets_masked(store: Engine) -> None:
    clock = Clock()
    add(store, "acme")
    register_secret("sk_live_4eC39HqLyjWDarjtT1zdp7dc")
    try:
        sync = FakeSync(store, clock, PermissionError("key sk_live_4eC39HqLyjWDarjtT1zdp7dc was revoked"))
        make_worker(store, sync, clock).run(once=True)
    finally:
        forget_secrets()

    [run] = runs(store)
    assert (run.trigger, run.status, run.connections) == ("schedule:acme-every-15m", "failed", ["acme"])
    assert run.started_at == run.finished_at == T0
    assert run.errors == [
        {"stage": "sync", "kind": "system", "message": "PermissionError: key ********** was revoked"}
    ]


def test_a_run_the_engine_left_open_is_closed_as_failed_rather_than_duplicated(store: Engine) -> None:
    clock = Clock()
    add(store, "acme")

    def dies_midway(
        engine: Engine, connections: list[str] | None = None, *, trigger: str = "user"
    ) -> SyncRun:
        with Session(engine) as session, session.begin():
            session.add(SyncRun(id="run-1", trigger=trigger, connections=["acme"], started_at=clock()))
        raise TimeoutError("ERP did not answer")

    Worker(store, sync=dies_midway, clock=clock, sleep=clock.sleep).run(once=True)

    [run] = runs(store)
    assert (run.id, run.status, run.finished_at) == ("run-1", "failed", T0)
    assert run.errors == [
        {"stage": "sync", "kind": "transient", "message": "TimeoutError: ERP did not answer"}
    ]


def test_a_failed_run_reported_by_the_engine_is_not_recorded_twice(store: Engine) -> None:
    clock = Clock()
    sid = add(store, "acme")
    make_worker(store, FakeSync(store, clock, "failed"), clock).run(once=True)
    assert [r.status for r in runs(store)] == ["failed"]
    assert schedule(store, sid).consecutive_failures == 1


def test_nothing_a_sync_raises_stops_the_loop(store: Engine) -> None:
    clock = Clock()
    add(store, "acme", every=10 * S)
    failures = [KeyError("x"), ValueError("y"), ZeroDivisionError(), OSError("disk"), LookupError("z")]
    sync = FakeSync(store, clock, *failures)
    report = make_worker(store, sync, clock).run(max_runs=6)
    assert (report.failed, report.succeeded) == (5, 1)
    # a 10s schedule is never retried less often than every 10s
    assert sync.times == [T0 + 10 * S * n for n in range(6)]


def test_keyboard_interrupt_is_not_swallowed_and_the_schedule_stays_due(store: Engine) -> None:
    clock = Clock()
    sid = add(store, "acme")
    with pytest.raises(KeyboardInterrupt):
        make_worker(store, FakeSync(store, clock, KeyboardInterrupt()), clock).run()
    row = schedule(store, sid)
    assert (row.next_run_at, row.last_status) == (T0, None)
    with Session(store) as session:
        assert session.exec(select(Lock)).all() == []  # the schedule lease was given back


def test_a_cron_schedule_retries_within_its_period(store: Engine) -> None:
    clock = Clock(T0 - M)
    sid = add(store, "acme", cron="0 * * * *", now=T0 - M)  # hourly, first at 06:00
    sync = FakeSync(store, clock, *[RuntimeError("down")] * 8)
    make_worker(store, sync, clock, poll=timedelta(hours=1)).run(max_runs=10)
    gaps = [b - a for a, b in zip(sync.times, sync.times[1:], strict=False)]
    # eight failures: retries double up to the hour the cron repeats at, and no further
    assert gaps[:8] == [30 * S, M, 2 * M, 4 * M, 8 * M, 16 * M, 32 * M, 60 * M]
    # the ninth attempt (at 08:03:30) succeeds, and the next run is back on the hour
    assert sync.times[8:] == [T0 + timedelta(hours=2, minutes=3, seconds=30), T0 + timedelta(hours=3)]
    assert schedule(store, sid).consecutive_failures == 0


# -- busy connections and leases --------------------------------------------------------------


def test_a_connection_synced_elsewhere_is_skipped_and_tried_at_the_next_poll(store: Engine) -> None:
    clock = Clock()
    sid = add(store, "acme")

    def locking_sync(engine: Engine, connections: list[str] | None = None, *, trigger: str = "user") -> None:
        # what the engine does: hold the connection's lease while syncing it
        for name in connections or []:
            with held(engine, f"sync:{name}"):
                calls.append(clock())

    calls: list[datetime] = []
    acquire(store, "sync:acme", "someone-else", ttl=timedelta(hours=1))
    worker = Worker(store, sync=locking_sync, clock=clock, sleep=clock.sleep, poll=5 * S)

    [busy] = worker.run_due()
    assert (busy.status, calls) == ("busy", [])
    assert "sync:acme is held by someone-else" in (busy.error or "")
    row = schedule(store, sid)
    assert (row.next_run_at, row.consecutive_failures, row.last_status) == (T0, 0, None)  # not a failure
    assert worker.seconds_to_wait() == 5  # still due: a full poll, not a busy loop

    with Session(store) as session, session.begin():
        session.delete(session.get(Lock, "sync:acme"))
    clock.sleep(worker.seconds_to_wait())
    [done] = worker.run_due()
    assert (done.status, calls) == ("succeeded", [T0 + 5 * S])


def test_busy_skips_do_not_count_towards_max_runs(store: Engine) -> None:
    clock = Clock()
    add(store, "acme")
    sync = FakeSync(store, clock, LockHeld("sync:acme is held"), LockHeld("sync:acme is held"), "ok")
    report = make_worker(store, sync, clock).run(max_runs=1)
    assert (report.busy, report.runs) == (2, 1)
    assert sync.times == [T0, T0 + 5 * S, T0 + 10 * S]


def test_a_schedule_another_worker_is_running_is_left_to_it(store: Engine) -> None:
    clock = Clock()
    sid = add(store, "acme")
    acquire(store, f"schedule:{sid}", "worker-b", ttl=timedelta(hours=1), now=T0)
    sync = FakeSync(store, clock)
    worker = make_worker(store, sync, clock, owner="worker-a")
    assert worker.run_due() == [] and sync.calls == []

    # worker-b died: once its lease expires, worker-a takes the schedule over
    clock.now = T0 + timedelta(hours=1, seconds=1)
    [outcome] = worker.run_due()
    assert outcome.status == "succeeded"
    with Session(store) as session:
        assert session.exec(select(Lock)).all() == []


def test_a_schedule_just_run_by_another_worker_is_not_run_again(store: Engine) -> None:
    clock = Clock()
    sid = add(store, "acme")
    sync = FakeSync(store, clock)
    worker = make_worker(store, sync, clock)
    assert worker.due() == [sid]
    with Session(store) as session, session.begin():  # the other worker finishes between our two looks
        session.get(Schedule, sid).next_run_at = T0 + 15 * M  # type: ignore[union-attr]
    assert worker.run_schedule(sid) is None and sync.calls == []


def test_a_schedule_removed_while_it_runs_is_not_resurrected(store: Engine) -> None:
    clock = Clock()
    sid = add(store, "acme")

    def removes_it(engine: Engine, connections: list[str] | None = None, *, trigger: str = "user") -> None:
        with Session(engine) as session, session.begin():
            session.delete(session.get(Schedule, sid))

    [outcome] = Worker(store, sync=removes_it, clock=clock, sleep=clock.sleep).run_due()
    assert outcome.status == "succeeded"
    with Session(store) as session:
        assert session.get(Schedule, sid) is None


def test_the_schedule_lease_is_renewed_while_a_long_sync_runs(store: Engine) -> None:
    """Real time here: the lease lasts 1.2s (renewed every 0.4s) and the sync 2.4s."""
    sid = add(store, "acme", now=datetime.now(UTC) - S)
    attempts: list[str] = []

    def slow(engine: Engine, connections: list[str] | None = None, *, trigger: str = "user") -> None:
        for _ in range(3):
            time.sleep(0.8)
            try:
                acquire(engine, f"schedule:{sid}", "intruder", ttl=timedelta(minutes=1))
                attempts.append("taken")
            except LockHeld:
                attempts.append("held")

    [outcome] = Worker(store, sync=slow, owner="w", lease_ttl=timedelta(seconds=1.2)).run_due()
    assert outcome.status == "succeeded"
    assert attempts == ["held", "held", "held"]  # without renewal it would have expired at 1.2s


# -- with the real sync engine ----------------------------------------------------------------


def test_the_worker_drives_the_sync_engine_over_a_files_connection(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "acme"
    folder.mkdir()
    (folder / "customers.csv").write_text(
        "id,name,email\nc1,Acme Corp,ap@acme.test\nc2,Globex,ar@globex.test\n"
    )
    with Session(engine) as session, session.begin():
        session.add(Connection(name="acme", plugin="files", config={"path": str(folder)}))
    sid = add(engine, "acme", now=datetime.now(UTC))
    worker = Worker(engine)  # the default sync function: subledger.sync.engine.sync

    [outcome] = worker.run_due()

    assert outcome.status == "succeeded", outcome.error
    assert outcome.run is not None
    assert (outcome.run.trigger, outcome.run.connections, outcome.run.records_read) == (
        f"schedule:{sid}",
        ["acme"],
        2,
    )
    [stored] = runs(engine)
    assert (stored.id, stored.status) == (outcome.run.id, "succeeded")

    # a user's `subledger sync acme` is running elsewhere: the schedule waits for the next poll
    with Session(engine) as session, session.begin():
        session.get(Schedule, sid).next_run_at = datetime.now(UTC)  # type: ignore[union-attr]
    acquire(engine, "sync:acme", "user-sync", ttl=timedelta(hours=1))
    [busy] = worker.run_due()
    assert busy.status == "busy"
    assert schedule(engine, sid).consecutive_failures == 0


# -- the loop ---------------------------------------------------------------------------------


def test_the_worker_sleeps_until_the_next_schedule_but_no_longer_than_a_poll(store: Engine) -> None:
    clock = Clock()
    worker = make_worker(store, FakeSync(store, clock), clock)
    assert worker.seconds_to_wait() == 5  # nothing scheduled
    add(store, "acme", now=T0 + 2 * S)
    assert worker.seconds_to_wait() == 2
    add(store, "globex", now=T0 + M)
    assert worker.seconds_to_wait() == 2


def test_stopping_finishes_the_sync_in_progress_and_returns(store: Engine) -> None:
    clock = Clock()
    add(store, "acme", now=T0 - S)
    add(store, "globex")
    sync = FakeSync(store, clock)
    worker = make_worker(store, sync, clock)
    worker.on_outcome = lambda _o: worker.stop()
    report = worker.run()
    assert report.runs == 1 and len(sync.calls) == 1


def test_stop_wakes_a_sleeping_worker(store: Engine) -> None:
    worker = Worker(store, sync=FakeSync(store, Clock()), poll=timedelta(minutes=10))
    threading.Timer(0.2, worker.stop).start()
    started = time.monotonic()
    assert worker.run().runs == 0
    assert time.monotonic() - started < 5


def test_an_unreachable_store_is_waited_out(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    add(store, "acme")
    worker = make_worker(store, FakeSync(store, clock), clock)
    real_due = worker.due
    outages = [OperationalError("SELECT", {}, ConnectionRefusedError("server closed the connection"))]

    def flaky_due() -> list[str]:
        if outages:
            raise outages.pop()
        return real_due()

    monkeypatch.setattr(worker, "due", flaky_due)
    report = worker.run(max_runs=1)
    assert report.runs == 1 and clock.slept == [5]


# -- the commands -----------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[CliRunner, typer.Typer, Engine]]:  # type: ignore[no-untyped-def]
    from subledger.cli import app as root

    monkeypatch.setenv("SUBLEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    monkeypatch.setenv("COLUMNS", "250")
    get_engine.cache_clear()
    runner = CliRunner()
    assert runner.invoke(root, ["init"]).exit_code == 0
    engine = get_engine()
    SQLModel.metadata.create_all(engine)  # until the schedule tables are in a shipped migration
    with Session(engine) as session, session.begin():
        session.add(Connection(name="acme", plugin="files"))
    app = typer.Typer()
    register(app)
    yield runner, app, engine
    engine.dispose()
    get_engine.cache_clear()


def test_worker_once_runs_what_is_due_and_exits_1_on_a_failure(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    runner, app, engine = cli
    clock = Clock(datetime.now(UTC))
    sync = FakeSync(engine, clock, "ok", RuntimeError("NetSuite said [401] unauthorized"))
    monkeypatch.setattr(worker_module, "default_sync", lambda: sync)

    assert runner.invoke(app, ["worker", "--once"]).stdout.strip() == "nothing due"

    assert runner.invoke(app, ["schedule", "add", "acme", "--every", "15m"]).exit_code == 0
    first = runner.invoke(app, ["worker", "--once"])
    assert first.exit_code == 0, first.output
    # rich wraps at the terminal's width, which differs between machines: compare words.
    assert "acme-every-15m succeeded in 0s read 120 written 4 findings +2 -1 actions 2/3" in " ".join(
        first.stdout.split()
    )

    with Session(engine) as session, session.begin():
        session.get(Schedule, "acme-every-15m").next_run_at = datetime.now(UTC)  # type: ignore[union-attr]
    second = runner.invoke(app, ["worker", "--max-runs", "1", "--poll", "1s"])
    assert second.exit_code == 1
    assert (
        "failed after 0s (failure 1 in a row, retry in 30s): RuntimeError: NetSuite said [401] unauthorized"
        in " ".join(second.stdout.split())
    )
    assert [c[2] for c in sync.calls] == ["schedule:acme-every-15m"] * 2


def test_worker_refuses_a_bad_poll_interval(cli) -> None:  # type: ignore[no-untyped-def]
    runner, app, _ = cli
    result = runner.invoke(app, ["worker", "--poll", "often"])
    assert isinstance(result.exception, ConfigError)
    assert "--poll 'often' is not a duration" in str(result.exception)


def test_runs_shows_the_history_newest_first(cli) -> None:  # type: ignore[no-untyped-def]
    runner, app, engine = cli
    assert "no syncs yet" in runner.invoke(app, ["runs"]).stdout
    clock = Clock()
    sync = FakeSync(engine, clock, takes=75 * S)
    sync(engine, ["acme"], trigger="schedule:acme-every-15m")
    sync(engine, None, trigger="user")
    # r3 still runs: the reconciliation lease it runs under is held (since before it started).
    acquire(engine, "sync:reconcile", "api-server", ttl=timedelta(days=3650), now=T0)
    with Session(engine) as session, session.begin():
        session.add(
            SyncRun(id="r3", trigger="api", connections=["acme"], started_at=clock(), status="running")
        )
        # r9's process stopped: it holds no lease any more, so `runs` closes it as abandoned.
        session.add(
            SyncRun(id="r9", trigger="user", connections=["acme"], started_at=T0 - 2 * M, status="running",
                    owner="elsewhere:4242:0dead0")
        )
        session.add(
            SyncRun(
                id="r0",
                trigger="user",
                connections=["acme"],
                status="failed",
                started_at=T0 - M,
                finished_at=T0 - M + 2 * S,
                errors=[{"connection": "acme", "message": "file [usage.csv] missing"}, {"message": "x"}],
            )
        )

    data = json.loads(runner.invoke(app, ["runs", "--json"]).stdout)
    assert [(d["trigger"], d["status"], d["duration_seconds"]) for d in data] == [
        ("api", "running", None),
        ("user", "succeeded", 75.0),
        ("schedule:acme-every-15m", "succeeded", 75.0),
        ("user", "failed", 2.0),
        ("user", "failed", data[-1]["duration_seconds"]),
    ]
    assert data[-1]["errors"][0]["error"].startswith("abandoned: the process running it stopped (its leases are gone)")
    assert data[1] | {"id": None} == {
        "id": None,
        "trigger": "user",
        "connections": ["acme", "globex"],
        "status": "succeeded",
        "started_at": "2026-03-02T06:01:15+00:00",
        "finished_at": "2026-03-02T06:02:30+00:00",
        "duration_seconds": 75.0,
        "records_read": 120,
        "records_written": 4,
        "findings_opened": 2,
        "findings_resolved": 1,
        "actions_planned": 3,
        "actions_applied": 2,
        "errors": [],
    }
    assert len(json.loads(runner.invoke(app, ["runs", "--json", "--limit", "2"]).stdout)) == 2
    only = json.loads(runner.invoke(app, ["runs", "--json", "--trigger", "schedule:acme-every-15m"]).stdout)
    assert [d["trigger"] for d in only] == ["schedule:acme-every-15m"]

    table = runner.invoke(app, ["runs"]).stdout
    assert "2026-03-02 06:01:15Z" in table and "1m15s" in table and "running" in table
    assert "acme: file [usage.csv] missing (+1 more)" in table
