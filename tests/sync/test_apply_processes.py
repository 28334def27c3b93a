"""Appliers in real processes against the Stripe sandbox: exactly one invoice per action.

Three processes (forked from a fresh forkserver) apply the same approved actions at the same instant, on SQLite
(one file) and PostgreSQL (one schema). Without faults the sandbox's idempotency keys are
switched off (as for a key Stripe has forgotten, or a vendor without them), so the claims
alone must keep every action to one invoice; with drops after commit they are on, as in
Stripe. A killed applier's claim is taken over at once (its process is gone) and settled
by find-before-create, not by a second send.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from datetime import timedelta
from multiprocessing import get_context
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from subledger.core.model import Action, Connection
from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import config_for_storage
from subledger.core.store.engine import make_engine
from subledger.plugins.stripe.config import StripeConfig
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox
from subledger.sync.apply import apply_actions

EngineSpec = tuple[str, str | None]
PROCESSES = 3
ACTIONS = 6


# -- what the child processes run -------------------------------------------------------------------


def open_engine(spec: EngineSpec) -> Engine:
    url, schema = spec
    if schema is None:
        return make_engine(url)
    return make_engine(url, connect_args={"options": f"-csearch_path={schema}"})


def warm_up(seconds: float) -> int:
    import subledger.plugins.stripe.connector  # noqa: F401  (the first apply pays no import)

    time.sleep(seconds)
    return os.getpid()


def apply_at(spec: EngineSpec, env: dict[str, str], start_at: float) -> tuple[int, dict[str, Any]]:
    os.environ.update(env)
    engine = open_engine(spec)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        report = apply_actions(engine, actor=f"process:{os.getpid()}")
    finally:
        engine.dispose()
    return os.getpid(), asdict(report)


def apply_then_die(spec: EngineSpec, env: dict[str, str], action_id: str) -> None:
    """Claim one action (for an hour), write it to Stripe, and die before recording it: kill -9."""
    os.environ.update(env)
    engine = open_engine(spec)

    def die(step: str, action: Action) -> None:
        if step == "after_write":
            os._exit(9)

    apply_actions(engine, actor="doomed", action_ids=[action_id], claim_ttl=timedelta(hours=1), on_step=die)
    os._exit(0)  # not reached


# -- fixtures ---------------------------------------------------------------------------------------


def processes() -> Any:
    """A forkserver context: the server imports subledger once, each child is a fork of it,
    with none of this (threaded) test process's state."""
    context = get_context("forkserver")
    context.set_forkserver_preload(["subledger.sync.apply", "subledger.plugins.stripe.connector", "sqlmodel"])
    return context


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(max_workers=PROCESSES, mp_context=processes()) as executor:
        pids = {f.result() for f in [executor.submit(warm_up, 0.5) for _ in range(PROCESSES)]}
        assert len(pids) == PROCESSES
        yield executor


def spec_of(engine: Engine) -> EngineSpec:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "postgresql":
        return url, None
    with engine.connect() as conn:
        return url, conn.execute(text("SELECT current_schema()")).scalar_one()


def child_env() -> dict[str, str]:
    return {k: os.environ[k] for k in ("SUBLEDGER_HOME", "SUBLEDGER_SECRET_KEY")}


@pytest.fixture
def stripe(engine: Engine) -> Iterator[StripeSandbox]:
    sandbox = StripeSandbox(random_seed=7)
    sandbox.seed({"customers": [{"id": "cus_acme", "name": "Acme Corp", "email": "ap@acme.example"}]})
    with SandboxServer(sandbox) as server:
        config = StripeConfig(api_key=DEFAULT_API_KEY, api_base=server.url)
        with Session(engine) as session, session.begin():
            session.add(Connection(name="stripe", plugin="stripe", config=config_for_storage(config)))
            for n in range(ACTIONS):
                session.add(Action(
                    id=f"act_{n}", idempotency_key=f"sl_overage_{n}", kind="create_invoice", connection="stripe",
                    summary=f"overage {n}", amount_minor=100 * (n + 1), currency="USD", status="approved",
                    approved_by="tests",
                    payload={"customer_external_id": "cus_acme", "currency": "USD",
                             "lines": [{"description": f"API calls overage {n}", "amount_minor": 100 * (n + 1)},
                                       {"description": "handling fee", "amount_minor": 50}]},
                ))
        yield sandbox


def invoices_per_action(sandbox: StripeSandbox) -> dict[str, int]:
    counts = {f"act_{n}": 0 for n in range(ACTIONS)}
    for invoice in sandbox.store.collection("invoices").values():
        key = (invoice.get("metadata") or {}).get("subledger_action_id", "")
        if key.startswith("sl_overage_"):
            counts["act_" + key.removeprefix("sl_overage_")] += 1
    return counts


def stored(engine: Engine) -> dict[str, Action]:
    with Session(engine) as session:
        return {a.id: a for a in session.exec(select(Action)).all()}


# -- tests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("faults", ["clean", "drops_after_commit"])
def test_n_applier_processes_make_exactly_one_invoice_per_action(
    engine: Engine, stripe: StripeSandbox, pool: ProcessPoolExecutor, faults: str
) -> None:
    drops = []
    if faults == "clean":
        stripe.idempotency.ttl = 0  # Stripe deduplicates nothing: only the claims stand in the way
    else:
        drops = [stripe.faults.inject("drop", method="POST", path="/v1/invoices", times=2),
                 stripe.faults.inject("drop", method="POST", path="/v1/invoiceitems", times=2, skip=3)]
    spec, start = spec_of(engine), time.time() + 0.5
    results = [f.result(timeout=120) for f in
               [pool.submit(apply_at, spec, child_env(), start) for _ in range(PROCESSES)]]

    assert len({pid for pid, _ in results}) == PROCESSES
    done = sorted(aid for _, report in results for aid in report["done"])
    assert done == [f"act_{n}" for n in range(ACTIONS)]  # each applied by exactly one process
    assert not [aid for _, report in results for aid in report["failed"] + report["conflicts"]]
    assert invoices_per_action(stripe) == {f"act_{n}": 1 for n in range(ACTIONS)}
    actions = stored(engine)
    assert {(a.status, a.attempts) for a in actions.values()} == {("done", 1)}
    assert {a.claimed_by.rsplit(":", 2)[1] for a in actions.values()} <= {str(pid) for pid, _ in results}
    assert all(drop.spent for drop in drops)  # every drop happened, after the write committed


def test_a_killed_appliers_claim_is_taken_over_at_once_and_settled_by_lookup(
    engine: Engine, stripe: StripeSandbox
) -> None:
    stripe.idempotency.ttl = 0  # a resend would make a second invoice
    doomed = processes().Process(target=apply_then_die, args=(spec_of(engine), child_env(), "act_0"))
    doomed.start()
    doomed.join(timeout=60)
    assert doomed.exitcode == 9
    action = stored(engine)["act_0"]
    assert (action.status, action.attempts) == ("in_flight", 1)
    assert action.claimed_by is not None and action.claimed_by.rsplit(":", 2)[1] == str(doomed.pid)
    assert invoices_per_action(stripe)["act_0"] == 1  # the write landed; its outcome was never recorded

    report = apply_actions(engine, actor="rescuer", action_ids=["act_0"])  # its claim had an hour to run

    assert (report.done, report.found_existing) == (["act_0"], ["act_0"])
    assert invoices_per_action(stripe)["act_0"] == 1
    action = stored(engine)["act_0"]
    assert (action.status, action.attempts) == ("done", 2)
    assert action.external_id and action.external_id.startswith("in_")
