"""The outbox: the transition table, compare-and-set claims, and appliers racing in threads.

Every test runs on SQLite and, when configured, on PostgreSQL. The vendor is the
in-memory store, with a connector that does *not* deduplicate on idempotency keys, so
only the claims and find-before-create stand between two appliers and a double bill.
Real processes and a vendor sandbox: ``test_apply_processes.py``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.connector import WriteResult
from subledger.core.db_types import utcnow
from subledger.core.errors import TransientError
from subledger.core.model import Action, AuditEntry, Connection
from subledger.core.model.action import ActionStatus
from subledger.core.secrets import config_for_storage, load_config
from subledger.sync.apply import apply_actions
from subledger.sync.outbox import (
    TRANSITIONS,
    TransitionRefused,
    allowed,
    claim,
    settle,
    transition,
)
from subledger.sync.plan import approve, idempotency_key, plan_actions
from subledger.sync.rules.base import ActionDraft
from subledger.sync.settings import AutoApproval, SyncSettings
from subledger.testing.memory import (
    DEFAULT_API_KEY,
    MemoryConfig,
    MemoryConnector,
    MemoryStore,
    SimulatedCrash,
    memory_connector,
    memory_store,
    reset_memory_stores,
)

STATUSES = [s.value for s in ActionStatus]
ALLOWED = {
    ("planned", "approved"), ("planned", "rejected"), ("planned", "superseded"),
    ("approved", "in_flight"), ("approved", "rejected"), ("approved", "superseded"),
    ("in_flight", "in_flight"), ("in_flight", "done"), ("in_flight", "failed"),
}


# -- the vendor ---------------------------------------------------------------------------------


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    reset_memory_stores()
    with memory_connector():
        yield memory_store("billing").seed_example()
    reset_memory_stores()


@pytest.fixture
def mem(engine: Engine, store: MemoryStore) -> str:
    config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
    with Session(engine) as s, s.begin():
        s.add(Connection(name="mem", plugin="memory", config=config_for_storage(config)))
    return "mem"


class NoDedup(MemoryConnector):
    """A target that ignores idempotency keys: every write call makes a new invoice. Each
    write takes a few milliseconds, as a vendor's does, so concurrent appliers overlap."""

    name = "memory"

    def write(self, action):  # type: ignore[no-untyped-def]
        time.sleep(0.005)
        external_id, created, record = self._call("write", lambda st: st.apply(action, honour_idempotency=False))
        return WriteResult(external_id=external_id, created=created, record=record)


class Drops(NoDedup):
    """Loses the answer to every ``drop_every``-th write after the vendor committed it, and
    fails every ``find_fails_every``-th lookup: the outcome stays unknown, the action stays
    in flight, and another applier settles it by finding the write."""

    counter = itertools.count(1)
    finds = itertools.count(1)
    drop_every = 2
    find_fails_every = 3

    def write(self, action):  # type: ignore[no-untyped-def]
        result = super().write(action)
        if next(self.counter) % self.drop_every == 0:
            raise TransientError("connection reset after the write landed", fix="retry")
        return result

    def find(self, action):  # type: ignore[no-untyped-def]
        if next(self.finds) % self.find_fails_every == 0:
            raise TransientError("lookup timed out", fix="retry")
        return super().find(action)


def connector(cls: type[MemoryConnector] = NoDedup) -> MemoryConnector:
    return cls(load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"}), connection="mem")


def invoice_draft(ref: str, amount: int = 1000) -> ActionDraft:
    return ActionDraft(
        kind="create_invoice", connection="mem", summary=f"invoice {ref}", amount_minor=amount, currency="USD",
        payload={"customer_external_id": "cus_initech", "currency": "USD", "total_minor": amount, "ref": ref,
                 "status": "open", "lines": []},
    )


def add_actions(engine: Engine, n: int, *, status: str = "approved", prefix: str = "a") -> list[str]:
    ids = []
    with Session(engine) as s, s.begin():
        for i in range(n):
            draft = invoice_draft(f"{prefix}{i}")
            key = idempotency_key(draft)
            aid = f"act_{prefix}{i:03d}"
            s.add(Action(id=aid, idempotency_key=key, kind=draft.kind, connection="mem", summary=draft.summary,
                         payload=draft.payload, amount_minor=draft.amount_minor, currency="USD", status=status,
                         approved_by="tests" if status != "planned" else None))
            ids.append(aid)
    return ids


def objects_per_action(store: MemoryStore, engine: Engine) -> dict[str, int]:
    with Session(engine) as s:
        refs = {a.id: a.payload["ref"] for a in s.exec(select(Action)).all()}
    made = [r.get("ref") for r in store.records("invoices")]
    return {aid: made.count(ref) for aid, ref in refs.items()}


def actions(engine: Engine) -> dict[str, Action]:
    with Session(engine) as s:
        return {a.id: a for a in s.exec(select(Action)).all()}


# -- the transition table ---------------------------------------------------------------------------


def test_the_table_allows_exactly_the_documented_moves() -> None:
    for source, to in itertools.product(STATUSES, STATUSES):
        assert allowed(source, to) == ((source, to) in ALLOWED), (source, to)
    assert {s.value for s in TRANSITIONS} == set(STATUSES)
    for terminal in ("done", "failed", "rejected", "superseded"):
        assert not TRANSITIONS[ActionStatus(terminal)]


def test_every_move_is_enforced_against_the_stored_row(engine: Engine) -> None:
    """Each (from, to) pair on a real row: allowed moves happen, refused ones never reach the
    database; a move from a status the row is no longer in is refused with its status."""
    pairs = [(a, b) for a, b in itertools.product(STATUSES, STATUSES) if b != "in_flight"]
    with Session(engine) as s, s.begin():
        for n, (source, _) in enumerate(pairs):
            s.add(Action(id=f"act_{n}", idempotency_key=f"k{n}", kind="create_invoice", connection="mem",
                         status=source))
    with Session(engine) as s, s.begin():
        for n, (source, to) in enumerate(pairs):
            action = s.get(Action, f"act_{n}")
            if (source, to) in ALLOWED:
                transition(s, action, to, expect=source)
                assert action.status == to
            else:
                with pytest.raises(ValueError, match="table refuses it"):
                    transition(s, action, to, expect=source)
                assert action.status == source
    stored = actions(engine)
    for n, (source, to) in enumerate(pairs):
        assert stored[f"act_{n}"].status == (to if (source, to) in ALLOWED else source)

    # Someone else moved it first: the compare-and-set misses and says what it found.
    with Session(engine) as s, s.begin():
        s.add(Action(id="act_x", idempotency_key="kx", kind="create_invoice", connection="mem", status="superseded"))
    with Session(engine) as s, s.begin():
        with pytest.raises(TransitionRefused, match="act_x is superseded, not planned") as refused:
            transition(s, s.get(Action, "act_x"), "approved", expect="planned")
        assert refused.value.current == "superseded" and refused.value.fix
    with pytest.raises(ValueError, match="only through claim"), Session(engine) as s:
        transition(s, s.get(Action, "act_x"), "in_flight", expect="approved")


def test_only_approved_or_lapsed_in_flight_actions_can_be_claimed_and_claims_end_done_or_failed(
    engine: Engine,
) -> None:
    now = utcnow()
    with Session(engine) as s, s.begin():
        for status in STATUSES:
            s.add(Action(id=f"act_{status}", idempotency_key=status, kind="k", connection="mem", status=status,
                         claimed_by="elsewhere:1:abc" if status == "in_flight" else None,
                         claimed_until=now + timedelta(minutes=1) if status == "in_flight" else None))
        s.add(Action(id="act_lapsed", idempotency_key="lapsed", kind="k", connection="mem", status="in_flight",
                     claimed_by="elsewhere:1:abc", claimed_until=now - timedelta(seconds=1), attempts=1))
        s.add(Action(id="act_released", idempotency_key="released", kind="k", connection="mem",
                     status="in_flight", claimed_by="elsewhere:1:abc", claimed_until=None, attempts=1))
    won = {aid for aid in [f"act_{s}" for s in STATUSES] + ["act_lapsed", "act_released"]
           if claim(engine, aid, owner="me:1:000001", now=now) is not None}
    assert won == {"act_approved", "act_lapsed", "act_released"}
    stored = actions(engine)
    assert [(stored[a].status, stored[a].claimed_by, stored[a].attempts) for a in sorted(won)] == [
        ("in_flight", "me:1:000001", 1), ("in_flight", "me:1:000001", 2), ("in_flight", "me:1:000001", 2)]
    for status in STATUSES:
        if status != "approved":
            assert stored[f"act_{status}"].status == status  # untouched
    with Session(engine) as s, s.begin():
        assert settle(s, "act_approved", "me:1:000001", "done")
        assert not settle(s, "act_in_flight", "me:1:000001", "done")  # not my claim
        with pytest.raises(ValueError):
            settle(s, "act_lapsed", "me:1:000001", "superseded")
    assert actions(engine)["act_approved"].status == "done"


# -- compare-and-set claims -------------------------------------------------------------------------


def test_threads_racing_for_one_action_exactly_one_wins(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        for n in range(8):
            s.add(Action(id=f"act_{n}", idempotency_key=f"k{n}", kind="k", connection="mem", status="approved"))
    barrier = threading.Barrier(6)
    wins: list[tuple[str, str]] = []

    def race(me: str) -> None:
        for n in range(8):
            barrier.wait()
            if claim(engine, f"act_{n}", owner=me) is not None:
                wins.append((f"act_{n}", me))

    threads = [threading.Thread(target=race, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a for a, _ in wins) == [f"act_{n}" for n in range(8)]
    stored = actions(engine)
    assert {(aid, stored[aid].claimed_by, stored[aid].attempts) for aid, _ in wins} == {(a, m, 1) for a, m in wins}


def test_two_sessions_claiming_at_once_one_waits_and_loses(engine: Engine) -> None:
    """Session A claims inside an open transaction; B's compare-and-set must wait for A's commit
    and then miss, on SQLite (one writer) and PostgreSQL (row lock, re-checked WHERE) alike."""
    from sqlmodel import update

    with Session(engine) as s, s.begin():
        s.add(Action(id="act_1", idempotency_key="k1", kind="k", connection="mem", status="approved"))
    claimed = threading.Event()
    outcome: dict[str, Any] = {}

    def b() -> None:
        claimed.wait()
        outcome["b"] = claim(engine, "act_1", owner="b")

    other = threading.Thread(target=b)
    other.start()
    with Session(engine) as a, a.begin():
        hit = a.exec(update(Action).where(Action.id == "act_1", Action.status == "approved")
                     .values(status="in_flight", claimed_by="a", claimed_until=utcnow() + timedelta(minutes=2),
                             attempts=Action.attempts + 1)).rowcount
        claimed.set()
        other.join(timeout=0.3)  # B is blocked behind A's transaction
        assert other.is_alive() or outcome.get("b") is None
    other.join()
    assert hit == 1 and outcome["b"] is None
    assert actions(engine)["act_1"].claimed_by == "a"


# -- appliers in threads ----------------------------------------------------------------------------


@pytest.mark.parametrize("faults", ["clean", "drops_after_commit"])
def test_n_appliers_in_threads_make_exactly_one_object_per_action(
    engine: Engine, mem: str, store: MemoryStore, faults: str
) -> None:
    ids = add_actions(engine, 12)
    cls = Drops if faults == "drops_after_commit" else NoDedup
    barrier = threading.Barrier(5)
    reports = []

    def applier(n: int) -> None:
        barrier.wait()
        reports.append(apply_actions(engine, actor=f"applier-{n}", connectors={"mem": connector(cls)}))

    threads = [threading.Thread(target=applier, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Uncertain outcomes were released in flight; the next apply (anyone's) settles them by lookup.
    while any(a.status == "in_flight" for a in actions(engine).values()):
        reports.append(apply_actions(engine, actor="rerun", connectors={"mem": connector(cls)}))

    assert objects_per_action(store, engine) == {aid: 1 for aid in ids}
    stored = actions(engine)
    assert {a.status for a in stored.values()} == {"done"}
    done = [aid for r in reports for aid in r.done]
    assert sorted(done) == sorted(ids)  # each settled by exactly one applier
    if faults == "drops_after_commit":
        assert any(r.found_existing for r in reports)
        assert any(a.attempts > 1 for a in stored.values())
    with Session(engine) as s:
        sends = s.exec(select(AuditEntry).where(AuditEntry.verb == "action.send")).all()
    assert len(sends) == sum(a.attempts for a in stored.values())


def test_a_crashed_applier_thread_is_recovered_by_find_before_create(
    engine: Engine, mem: str, store: MemoryStore
) -> None:
    """The applier dies right after the vendor committed (SimulatedCrash, which nothing can
    swallow); the next applier re-claims the action and finds the write instead of resending."""
    from subledger.testing.faults import Fault

    [aid] = add_actions(engine, 1)
    store.inject(Fault(crash=True, operations=frozenset({"write"})))
    with pytest.raises(SimulatedCrash):
        apply_actions(engine, actor="doomed", connectors={"mem": connector()})
    assert actions(engine)[aid].status == "in_flight"
    report = apply_actions(engine, actor="rescuer", connectors={"mem": connector()})
    assert (report.done, report.found_existing) == ([aid], [aid])
    assert objects_per_action(store, engine) == {aid: 1}


def test_an_action_claimed_by_a_live_applier_is_left_to_it(engine: Engine, mem: str, store: MemoryStore) -> None:
    [aid] = add_actions(engine, 1)
    assert claim(engine, aid, owner="busy-elsewhere") is not None
    report = apply_actions(engine, actor="second", connectors={"mem": connector()})
    assert (report.done, report.skipped) == ([], [aid])
    assert objects_per_action(store, engine) == {aid: 0}


# -- superseded between list and send (issue 15, B3) ------------------------------------------------


def plan(engine: Engine, *drafts: ActionDraft, auto: bool = True) -> Any:
    settings = SyncSettings(auto_approve=[AutoApproval(rule="unbilled_usage")] if auto else [])
    with Session(engine, autoflush=False) as s, s.begin():
        return plan_actions(s, {("unbilled_usage", "initech"): list(drafts)}, settings=settings, now=utcnow(),
                            actor="sync")


def test_an_action_superseded_after_apply_listed_it_is_never_sent(
    engine: Engine, mem: str, store: MemoryStore
) -> None:
    """Apply lists the approved invoice for 10.00; before it claims it, a concurrent sync
    sees more usage and supersedes it with one for 25.00. Only the 25.00 invoice is written."""
    plan(engine, invoice_draft("initech-jan", 1000))
    [first] = actions(engine)

    def sync_meanwhile(step: str, action: Action) -> None:
        if step == "before_outbox" and action.id == first:
            delta = plan(engine, invoice_draft("initech-jan-more", 2500))
            assert delta.superseded == 1

    report = apply_actions(engine, actor="apply", connectors={"mem": connector()}, on_step=sync_meanwhile)
    stored = actions(engine)
    [second] = [a for a in stored if a != first]
    assert stored[first].status == "superseded" and stored[first].attempts == 0
    assert (report.skipped, report.done) == ([first], [])
    assert apply_actions(engine, actor="apply", connectors={"mem": connector()}).done == [second]
    assert [r["total_minor"] for r in store.records("invoices") if r.get("ref")] == [2500]


def test_a_sync_never_supersedes_an_action_an_applier_has_claimed(
    engine: Engine, mem: str, store: MemoryStore
) -> None:
    """The other order: apply claimed it first, so it is in flight: the concurrent sync leaves
    it alone (the rules count it as pending), and apply settles it."""
    plan(engine, invoice_draft("initech-jan", 1000))
    [first] = actions(engine)
    deltas = []

    def sync_meanwhile(step: str, action: Action) -> None:
        if step == "after_outbox" and action.id == first:
            deltas.append(plan(engine, invoice_draft("initech-jan-more", 2500), auto=False))

    report = apply_actions(engine, actor="apply", connectors={"mem": connector()}, on_step=sync_meanwhile)
    assert deltas[0].superseded == 0 and report.done == [first]
    stored = actions(engine)
    assert stored[first].status == "done"
    assert [r["total_minor"] for r in store.records("invoices") if r.get("ref")] == [1000]


def test_approve_is_a_compare_and_set(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.add(Action(id="act_1", idempotency_key="k1", kind="k", connection="mem"))
        s.add(Action(id="act_2", idempotency_key="k2", kind="k", connection="mem", status="superseded"))
    with Session(engine) as s, s.begin():
        [done] = approve(s, ["act_1"], actor="user:ann", reason="ok", now=utcnow())
        assert (done.status, done.approved_by) == ("approved", "user:ann")
    with Session(engine) as s, s.begin(), pytest.raises(TransitionRefused, match="act_2 is superseded, not planned"):
        approve(s, ["act_2"], actor="user:ann", reason="ok", now=utcnow())
