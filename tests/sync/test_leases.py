"""Leases that heal: renewed while a sync runs, taken over at once from a dead process,
fenced by a generation so a holder that lost its lease stops, and the run a killed sync
left "running" marked failed.

Runs on SQLite and, when configured, PostgreSQL. The killed syncs are real processes,
forked from a forkserver that imported subledger once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from subledger.core.db_types import utcnow
from subledger.core.model import Action, Connection, Lock, SyncRun
from subledger.core.secrets import config_for_storage, load_config
from subledger.core.store.engine import make_engine
from subledger.sync import locks
from subledger.sync.engine import RECONCILE_LOCK, sync
from subledger.sync.locks import (
    ABANDONED,
    LeaseKeeper,
    LeaseLost,
    LockHeld,
    acquire,
    close_abandoned_runs,
    hold,
    holder_is_dead,
    release,
    renew,
)
from subledger.sync.rules.base import ActionDraft, Drift, Rule, RuleContext
from subledger.sync.settings import AutoApproval, SyncSettings
from subledger.testing.memory import (
    DEFAULT_API_KEY,
    MemoryConfig,
    MemoryConnector,
    MemoryStore,
    memory_connector,
    memory_store,
    reset_memory_stores,
)

EngineSpec = tuple[str, str | None]


# -- a slow (or dying) vendor, and a rule that writes --------------------------------------------


class Slow(MemoryConnector):
    """Each stream takes ``pause`` seconds to read: a long sync."""

    name = "memory"
    pause = 0.0
    on_read: Any = None

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        time.sleep(self.pause)
        if Slow.on_read is not None:
            Slow.on_read(stream)
        yield from super().read(stream, state)


class InvoiceInitech(Rule):
    """Initech has no invoice: propose one (auto-approved in these tests)."""

    name = "needs_invoice"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        yield Drift(key="initech", summary="initech has no invoice", amount_minor=1000, currency="USD",
                    actions=[ActionDraft(kind="create_invoice", connection="mem", summary="invoice initech",
                                         amount_minor=1000, currency="USD",
                                         payload={"customer_external_id": "cus_initech", "currency": "USD",
                                                  "total_minor": 1000, "ref": "initech", "lines": []})])


SETTINGS = SyncSettings(auto_approve=[AutoApproval(rule="needs_invoice")])


@pytest.fixture
def store(engine: Engine) -> Iterator[MemoryStore]:
    reset_memory_stores()
    Slow.pause, Slow.on_read = 0.0, None
    config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
    with Session(engine) as s, s.begin():
        s.add(Connection(name="mem", plugin="memory", config=config_for_storage(config)))
    with memory_connector(Slow):
        yield memory_store("billing").seed_example()
    reset_memory_stores()


def lock(engine: Engine, name: str) -> Lock | None:
    with Session(engine) as s:
        return s.get(Lock, name)


def runs(engine: Engine) -> list[SyncRun]:
    with Session(engine) as s:
        return list(s.exec(select(SyncRun).order_by(SyncRun.started_at)).all())


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- leases: takeover, generation, fencing -------------------------------------------------------


def test_a_dead_holders_lease_is_taken_over_at_once_with_the_next_generation(engine: Engine) -> None:
    dead = f"{socket.gethostname()}:{dead_pid()}:0dead0"
    elsewhere = f"another-host:{dead_pid()}:0ther0"  # the same pid means nothing on another host
    assert holder_is_dead(dead) and not holder_is_dead(elsewhere) and not holder_is_dead("doomed")
    first = acquire(engine, "sync:a", dead, ttl=timedelta(hours=2))
    acquire(engine, "sync:b", elsewhere, ttl=timedelta(hours=2))
    assert first.generation == 1

    taken = acquire(engine, "sync:a", "rescuer")  # two hours early: its process is gone
    assert (taken.owner, taken.generation) == ("rescuer", 2)
    with pytest.raises(LockHeld, match="sync:b is held by another-host"):
        acquire(engine, "sync:b", "rescuer")
    assert not renew(engine, first)  # the dead holder's fencing token no longer renews anything
    assert renew(engine, taken)
    release(engine, "sync:a", dead)  # nor gives it back
    assert lock(engine, "sync:a").owner == "rescuer"  # type: ignore[union-attr]


def test_a_holder_whose_lease_was_taken_over_stops_before_writing(engine: Engine, store: MemoryStore) -> None:
    """While the sync reads, another process takes its reconciliation lease over (as it would
    once the lease expired, had this process stalled): the sync stops before reconciling and
    applying, and writes nothing."""

    def usurp(stream: str) -> None:
        if stream == "usage_events":  # the last stream
            later = utcnow() + timedelta(hours=1)
            acquire(engine, RECONCILE_LOCK, "usurper", ttl=timedelta(hours=1), now=later)

    Slow.on_read = usurp
    with pytest.raises(LeaseLost, match="was taken over by another process"):
        sync(engine, ["mem"], trigger="test", settings=SETTINGS, rules=[InvoiceInitech()])

    [run] = runs(engine)
    assert run.status == "failed" and "taken over" in run.errors[-1]["error"]
    with Session(engine) as s:
        assert s.exec(select(Action)).all() == []  # reconcile never ran, so nothing was planned
    assert [r for r in store.records("invoices") if r.get("ref")] == []
    usurped = lock(engine, RECONCILE_LOCK)
    assert usurped is not None and (usurped.owner, usurped.generation) == ("usurper", 2)
    assert lock(engine, "sync:mem") is None  # its own lease it gave back

    # The control: once the other process is done, the same sync writes the invoice.
    Slow.on_read = None
    release(engine, RECONCILE_LOCK, "usurper")
    report = sync(engine, ["mem"], trigger="test", settings=SETTINGS, rules=[InvoiceInitech()])
    assert report.run.status == "succeeded", report.run.errors
    assert [r["ref"] for r in store.records("invoices") if r.get("ref")] == ["initech"]


def test_lease_renewal_keeps_a_long_syncs_lease(
    engine: Engine, store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real time: the leases last 1.2 s and are renewed every 0.3 s; the sync reads five
    streams of 0.5 s each. While it reads, another process tries to take its lease: it never
    gets it, though the sync outlasts the lease twice over."""
    monkeypatch.setattr(locks, "LEASE_TTL", timedelta(seconds=1.2))
    Slow.pause = 0.5
    attempts: list[tuple[float, str]] = []
    started = time.monotonic()

    def intruder(stream: str) -> None:  # runs while the sync reads, so the sync is surely running
        try:
            acquire(engine, "sync:mem", "intruder", ttl=timedelta(minutes=1))
            attempts.append((time.monotonic() - started, "taken"))
        except LockHeld:
            attempts.append((time.monotonic() - started, "held"))

    Slow.on_read = intruder
    report = sync(engine, ["mem"], trigger="test", settings=SyncSettings(), rules=[])
    took = time.monotonic() - started

    assert report.run.status == "succeeded", report.run.errors
    assert took > 2 * 1.2  # longer than the lease: only renewal kept it
    assert [result for _, result in attempts] == ["held"] * 5
    assert attempts[-1][0] > 2 * 1.2  # the last try came long after the first lease would have expired
    assert lock(engine, "sync:mem") is None  # given back at the end


def test_a_keeper_notices_a_takeover_at_its_next_renewal(engine: Engine) -> None:
    with hold(engine, ["sync:a", "sync:b"], "me", ttl=timedelta(seconds=0.8)) as keeper:
        keeper.check()
        acquire(engine, "sync:b", "them", ttl=timedelta(minutes=1), now=utcnow() + timedelta(minutes=1))
        deadline = time.monotonic() + 3
        while keeper.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keeper.lost is not None and keeper.lost.name == "sync:b"  # found by the heartbeat alone
        with pytest.raises(LeaseLost):
            keeper.check()
    assert lock(engine, "sync:a") is None and lock(engine, "sync:b").owner == "them"  # type: ignore[union-attr]
    assert isinstance(keeper, LeaseKeeper)


# -- killed syncs ---------------------------------------------------------------------------------


def processes() -> Any:
    from multiprocessing import get_context

    context = get_context("forkserver")
    context.set_forkserver_preload(["subledger.sync.engine", "subledger.plugins.stripe.connector",
                                    "subledger.testing.memory", "sqlmodel"])
    return context


def spec_of(engine: Engine) -> EngineSpec:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "postgresql":
        return url, None
    with engine.connect() as conn:
        return url, conn.execute(text("SELECT current_schema()")).scalar_one()


def sync_and_die(spec: EngineSpec, env: dict[str, str]) -> None:
    """Start `subledger sync mem` and get killed (kill -9) while it reads."""
    os.environ.update(env)
    url, schema = spec
    engine = make_engine(url, **({"connect_args": {"options": f"-csearch_path={schema}"}} if schema else {}))

    class Dies(MemoryConnector):
        name = "memory"

        def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
            os._exit(9)
            yield from ()

    memory_store("billing").seed_example()
    with memory_connector(Dies):
        sync(engine, ["mem"], trigger="doomed", settings=SyncSettings(), rules=[])
    os._exit(0)  # not reached


@pytest.mark.parametrize("closed_by", ["subledger runs", "the next sync"])
def test_a_killed_syncs_lease_is_taken_over_at_once_and_its_run_marked_failed(
    engine: Engine, store: MemoryStore, closed_by: str
) -> None:
    env = {k: os.environ[k] for k in ("SUBLEDGER_HOME", "SUBLEDGER_SECRET_KEY")}
    doomed = processes().Process(target=sync_and_die, args=(spec_of(engine), env))
    doomed.start()
    doomed.join(timeout=60)
    assert doomed.exitcode == 9
    [left] = runs(engine)
    assert left.status == "running" and left.owner and left.owner.split(":")[1] == str(doomed.pid)
    held = lock(engine, "sync:mem")
    assert held is not None and held.owner == left.owner and held.expires_at > utcnow()  # still two minutes

    started = time.monotonic()
    if closed_by == "subledger runs":
        assert close_abandoned_runs(engine) == [left.id]
    report = sync(engine, ["mem"], trigger="test", settings=SyncSettings(), rules=[])
    assert time.monotonic() - started < 10  # at once, not after the lease's two minutes

    assert report.run.status == "succeeded", report.run.errors
    by_id = {r.id: r for r in runs(engine)}
    dead = by_id[left.id]
    assert dead.status == "failed" and dead.finished_at is not None
    assert dead.errors[-1]["error"].startswith(ABANDONED)
    assert dead.errors[-1]["fix"].startswith("sync again")
    assert lock(engine, "sync:mem") is None and lock(engine, RECONCILE_LOCK) is None  # all given back
