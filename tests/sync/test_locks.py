"""Leases across real processes: exactly one taker wins, a dead holder's lease is taken over,
and two workers never run one schedule twice nor sync one connection at the same time.

Each child process is started with ``spawn`` and opens its own engine on the test's database
(the same SQLite file, or the same PostgreSQL schema). Children meet at an agreed wall-clock
instant so their attempts really collide.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select
from ulid import ULID

from subledger.core.db_types import utcnow
from subledger.core.model import Connection, Lock, Schedule, SyncRun
from subledger.core.store.engine import make_engine
from subledger.sync.locks import LockHeld, acquire, held, release
from subledger.sync.schedule import new_schedule, parse_cron
from subledger.sync.worker import Worker

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
ROUNDS = 12

EngineSpec = tuple[str, str | None]  # URL, and the PostgreSQL schema the test runs in


# -- what the child processes run (module level, so spawn can find it) ------------------------


def open_engine(spec: EngineSpec) -> Engine:
    url, schema = spec
    if schema is None:
        return make_engine(url)
    return make_engine(url, connect_args={"options": f"-csearch_path={schema}"})


def wait_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def contend(
    spec: EngineSpec, names: list[str], owner: str, start_at: float, now: datetime | None
) -> tuple[int, dict]:
    """Try to take each lease at the same instant as the other process; report which were won."""
    engine = open_engine(spec)
    won: dict[str, bool] = {}
    try:
        for i, name in enumerate(names):
            wait_until(start_at + i * 0.05)
            try:
                acquire(engine, name, owner, ttl=timedelta(minutes=5), now=now)
                won[name] = True
            except LockHeld:
                won[name] = False
    finally:
        engine.dispose()
    return os.getpid(), won


def take_and_die(spec: EngineSpec, name: str, now: datetime) -> None:
    """Take a lease and exit without giving it back, as a killed worker would."""
    engine = open_engine(spec)
    acquire(engine, name, "doomed", ttl=timedelta(minutes=1), now=now)
    os._exit(0)


def locking_sync(engine: Engine, connections: list[str] | None = None, *, trigger: str = "user") -> None:
    """Stands in for the sync engine: hold each connection's lease while 'syncing' for 0.4s."""
    names = connections or ["acme"]
    with ExitStack() as stack:
        for name in names:
            stack.enter_context(held(engine, f"sync:{name}"))
        started = utcnow()
        time.sleep(0.4)
        finished = utcnow()
    with Session(engine) as session, session.begin():
        session.add(
            SyncRun(
                id=str(ULID()),
                trigger=trigger,
                connections=names,
                status="succeeded",
                started_at=started,
                finished_at=finished,
            )
        )


def run_worker_once(spec: EngineSpec, owner: str, start_at: float) -> tuple[int, list[tuple[str, str]]]:
    engine = open_engine(spec)
    try:
        wait_until(start_at)
        outcomes = Worker(engine, sync=locking_sync, owner=owner).run_due()
    finally:
        engine.dispose()
    return os.getpid(), [(o.schedule_id, o.status) for o in outcomes]


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    """Two spawned processes, started once for this module (spawning costs about a second)."""
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as executor:
        pids = {f.result() for f in [executor.submit(pid_after, 0.5) for _ in range(2)]}
        assert len(pids) == 2
        yield executor


def spec_of(engine: Engine) -> EngineSpec:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "postgresql":
        return url, None
    with engine.connect() as conn:
        return url, conn.execute(text("SELECT current_schema()")).scalar_one()


def both(pool: ProcessPoolExecutor, fn, *per_process_args: tuple) -> list:  # type: ignore[no-untyped-def]
    """Run ``fn`` in both processes at once; check they really were two processes."""
    results = [f.result(timeout=120) for f in [pool.submit(fn, *args) for args in per_process_args]]
    assert results[0][0] != results[1][0], "both calls ran in the same process"
    return [r[1] for r in results]


# -- leases -----------------------------------------------------------------------------------


def test_two_processes_taking_the_same_lease_at_once_exactly_one_wins(
    engine: Engine, pool: ProcessPoolExecutor
) -> None:
    spec = spec_of(engine)
    names = [f"sync:conn-{i}" for i in range(ROUNDS)]
    start = time.time() + 0.3
    won_a, won_b = both(pool, contend, (spec, names, "a", start, None), (spec, names, "b", start, None))

    assert [won_a[n] + won_b[n] for n in names] == [1] * ROUNDS
    with Session(engine) as session:
        owners = {lock.name: lock.owner for lock in session.exec(select(Lock)).all()}
    assert owners == {n: "a" if won_a[n] else "b" for n in names}


def test_a_dead_processs_lease_is_taken_over_once_it_expires(
    engine: Engine, pool: ProcessPoolExecutor
) -> None:
    spec = spec_of(engine)
    doomed = get_context("spawn").Process(target=take_and_die, args=(spec, "sync:acme", T0))
    doomed.start()
    doomed.join(timeout=60)
    assert doomed.exitcode == 0

    def other_process_tries(at: datetime) -> bool:
        _pid, won = pool.submit(contend, spec, ["sync:acme"], "rescuer", time.time(), at).result(timeout=60)
        return won["sync:acme"]

    assert other_process_tries(T0 + timedelta(seconds=59)) is False  # the lease still runs
    assert other_process_tries(T0 + timedelta(seconds=60)) is True  # expired: taken over
    with Session(engine) as session:
        lock = session.get(Lock, "sync:acme")
    assert lock is not None
    assert (lock.owner, lock.acquired_at, lock.expires_at) == ("rescuer", T0 + 60 * S, T0 + 60 * S + 5 * M)


def test_two_processes_racing_to_take_over_an_expired_lease_exactly_one_wins(
    engine: Engine, pool: ProcessPoolExecutor
) -> None:
    spec = spec_of(engine)
    names = [f"sync:conn-{i}" for i in range(ROUNDS)]
    for name in names:
        acquire(engine, name, "dead-worker", ttl=timedelta(minutes=1), now=T0)
    later = T0 + timedelta(minutes=2)
    start = time.time() + 0.3
    won_a, won_b = both(pool, contend, (spec, names, "a", start, later), (spec, names, "b", start, later))

    assert [won_a[n] + won_b[n] for n in names] == [1] * ROUNDS
    with Session(engine) as session:
        owners = {lock.name: lock.owner for lock in session.exec(select(Lock)).all()}
    assert owners == {n: "a" if won_a[n] else "b" for n in names}


def test_a_lease_is_given_back_only_by_its_owner(engine: Engine) -> None:
    acquire(engine, "sync:acme", "a", ttl=5 * M, now=T0)
    release(engine, "sync:acme", "b")
    with pytest.raises(LockHeld, match="held by a"):
        acquire(engine, "sync:acme", "b", ttl=5 * M, now=T0 + M)
    acquire(engine, "sync:acme", "a", ttl=5 * M, now=T0 + M)  # the owner renews
    with Session(engine) as session:
        assert session.get(Lock, "sync:acme").expires_at == T0 + 6 * M  # type: ignore[union-attr]
    release(engine, "sync:acme", "a")
    acquire(engine, "sync:acme", "b", ttl=5 * M, now=T0 + M)


# -- workers ----------------------------------------------------------------------------------


def add_due(engine: Engine, *rows: Schedule) -> None:
    with Session(engine) as session, session.begin():
        session.add(Connection(name="acme", plugin="files"))
        for row in rows:
            session.add(row)


def sync_runs(engine: Engine) -> list[SyncRun]:
    with Session(engine) as session:
        return list(session.exec(select(SyncRun).order_by(SyncRun.started_at)).all())


def test_two_workers_run_a_due_schedule_once(engine: Engine, pool: ProcessPoolExecutor) -> None:
    now = utcnow()
    add_due(engine, new_schedule("acme", every=15 * M, now=now - S))
    spec = spec_of(engine)
    start = time.time() + 0.3
    outcomes = both(pool, run_worker_once, (spec, "worker-a", start), (spec, "worker-b", start))

    assert sorted(outcomes, key=len) == [[], [("acme-every-15m", "succeeded")]]
    assert [r.trigger for r in sync_runs(engine)] == ["schedule:acme-every-15m"]
    with Session(engine) as session:
        row = session.get(Schedule, "acme-every-15m")
        assert row is not None and row.next_run_at == now - S + 15 * M
        assert session.exec(select(Lock)).all() == []  # every lease given back


def test_two_workers_never_sync_one_connection_at_the_same_time(
    engine: Engine, pool: ProcessPoolExecutor
) -> None:
    now = utcnow()
    add_due(
        engine,
        new_schedule("acme", every=15 * M, now=now - S),
        new_schedule("all", cron=parse_cron("* * * * *"), now=now - 2 * M),
        new_schedule("acme", every=timedelta(hours=1), now=now - S),
    )
    spec = spec_of(engine)
    start = time.time() + 0.3
    outcomes = [
        o
        for per_worker in both(pool, run_worker_once, (spec, "worker-a", start), (spec, "worker-b", start))
        for o in per_worker
    ]

    assert {status for _, status in outcomes} <= {"succeeded", "busy"}
    runs = sync_runs(engine)
    assert len(runs) == sum(status == "succeeded" for _, status in outcomes) >= 1
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at <= later.started_at, "two syncs of acme overlapped"
    with Session(engine) as session:
        for row in session.exec(select(Schedule)).all():
            assert row.consecutive_failures == 0  # a busy connection is not a failure
            ran = any(r.trigger == f"schedule:{row.id}" for r in runs)
            assert (row.next_run_at > now) == ran  # a skipped schedule stays due for the next poll
