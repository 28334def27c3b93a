"""Pull a Stripe account through the engine, then apply an overage invoice exactly once.

Acme used 1,500 API calls (seeded), and the plan is to bill an overage the Stripe
subscription missed: one approved ``create_invoice`` action, applied through the sync
engine's outbox while the sandbox drops connections right after committing writes.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import stripe
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select
from stripe_testkit import basic_fixture

import subledger.plugins.stripe as stripe_plugin
from subledger.core.model import Connection, Invoice, InvoiceLine, UsageEvent
from subledger.core.model.action import Action
from subledger.core.model.coverage import CoverageWindow
from subledger.core.plugins import register_plugin
from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import config_for_storage
from subledger.core.store.coverage import load_coverage
from subledger.plugins.stripe.config import StripeConfig
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox
from subledger.sync.apply import apply_actions
from subledger.sync.pull import pull
from subledger.testing import FakeClock

KEY = "unbilled_overage:acme:api_calls:2026-01"
PAYLOAD = {
    "customer_external_id": "cus_acme", "currency": "USD", "description": "API calls not billed in January",
    "lines": [{"description": "API calls overage", "amount_minor": 600, "quantity": "1500",
               "service_start": "2026-01-01", "service_end": "2026-01-31", "component": "api_calls", "kind": "usage"},
              {"description": "Overage handling fee", "amount_minor": 100}],
}


@pytest.fixture
def store(empty_engine: Engine, isolated_plugins: None, server: SandboxServer, sandbox: StripeSandbox
          ) -> Iterator[Engine]:
    sandbox.seed(basic_fixture(int(time.time())))
    SQLModel.metadata.create_all(empty_engine)
    if not any(ep.name == "stripe" for ep in importlib.metadata.entry_points(group="subledger")):
        register_plugin(stripe_plugin, name="stripe")
    config = StripeConfig(api_key=DEFAULT_API_KEY, api_base=server.url, page_size=3)
    with Session(empty_engine) as session, session.begin():
        session.add(Connection(name="stripe", plugin="stripe", config=config_for_storage(config)))
        session.add(Action(id="act_overage", idempotency_key=KEY, kind="create_invoice", connection="stripe",
                           summary="bill Acme's January API overage", payload=PAYLOAD, amount_minor=700,
                           currency="USD", status="approved", approved_by="tests"))
    yield empty_engine


def stripe_overage_invoices(server: SandboxServer) -> list[Any]:
    v1 = stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": server.url}, max_network_retries=0).v1
    return [i for i in v1.invoices.list(params={"customer": "cus_acme", "limit": 100}).data
            if i.metadata.to_dict().get("subledger_action_id") == KEY]


def action(engine: Engine) -> Action:
    with Session(engine) as session:
        found = session.get(Action, "act_overage")
        assert found is not None
        return found


def test_pull_stores_the_stripe_account(store: Engine) -> None:
    report = pull(store, "stripe")
    by_stream = {s.stream: s for s in report.streams}
    assert by_stream["invoices"].records == 3 and by_stream["contracts"].records == 1
    assert report.rejected == 0
    with Session(store) as session:
        lines = session.exec(select(InvoiceLine).where(InvoiceLine.meter == "api_calls")).all()
    assert sorted(ln.amount_minor for ln in lines) == [0, 600]
    again = pull(store, "stripe")
    assert sum(s.records for s in again.streams) == 0  # nothing changed, nothing re-read


def test_pull_covers_usage_from_the_contract_history_start_in_one_window(store: Engine, server: SandboxServer
                                                                          ) -> None:
    """No usage_start is configured: usage is read from the day Acme's subscription started
    (60 days ago), so its first month can be judged; the 1,500 calls of 40 days ago and the
    300 of 3 days ago are stored. The next pull re-checks the 2-day lookback; its window
    overlaps and the store still holds one window."""
    v1 = stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": server.url}, max_network_retries=0).v1
    started = datetime.fromtimestamp(v1.subscriptions.retrieve("sub_acme").start_date, UTC)
    first, today = (datetime(d.year, d.month, d.day, tzinfo=UTC) for d in (started, datetime.now(UTC)))
    pull(store, "stripe", streams=["usage"])
    pull(store, "stripe", streams=["usage"])
    with Session(store) as session:
        coverage = load_coverage(session, "stripe")
        quantities = sorted(e.quantity for e in session.exec(select(UsageEvent)).all())
        rows = session.exec(select(CoverageWindow)).all()
    assert quantities == [Decimal(300), Decimal(1500)]
    assert [(r.meter, r.start, r.end) for r in rows] == [("api_calls", first, today)]
    assert coverage.gap(["api_calls"], first, today) is None
    assert coverage.gap(["api_calls"], first - timedelta(days=1), today) == first - timedelta(days=1)


def test_an_applied_correction_reads_back_with_its_contract(store: Engine, server: SandboxServer) -> None:
    with Session(store) as session, session.begin():
        act = session.get(Action, "act_overage")
        assert act is not None
        act.payload = {**PAYLOAD, "contract_external_id": "800Kc00000ACME01"}
        session.add(act)
    assert apply_actions(store, actor="tests").done == ["act_overage"]
    pull(store, "stripe", streams=["invoices"])
    with Session(store) as session:
        [invoice] = session.exec(select(Invoice).where(Invoice.external_id == action(store).external_id)).all()
        lines = session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id)).all()
    assert (invoice.contract_external_id, invoice.total_minor) == ("800Kc00000ACME01", 700)
    assert sorted((ln.amount_minor, ln.component, ln.kind, ln.quantity) for ln in lines) == [
        (100, None, "other", Decimal(1)), (600, "api_calls", "usage", Decimal(1500))]


def test_apply_creates_exactly_one_invoice_when_the_connection_drops_after_the_write(
    store: Engine, server: SandboxServer, sandbox: StripeSandbox, fake_clock: FakeClock
) -> None:
    sandbox.faults.inject("drop", method="POST", path="/v1/invoices")
    report = apply_actions(store, actor="tests")
    assert report.done == ["act_overage"] and not report.failed
    [invoice] = stripe_overage_invoices(server)
    assert (invoice.total, invoice.status, len(invoice.lines.data)) == (700, "draft", 2)
    assert action(store).external_id == invoice.id
    pull(store, "stripe", streams=["invoices"])
    with Session(store) as session:
        stored = session.exec(select(Invoice).where(Invoice.external_id == invoice.id)).all()
    assert [i.total_minor for i in stored] == [700]


def test_an_apply_that_lost_every_answer_is_settled_by_the_next_apply(
    store: Engine, server: SandboxServer, sandbox: StripeSandbox, fake_clock: FakeClock
) -> None:
    """Every answer to the first line is lost (5 attempts): the action stays in flight; the
    next apply looks the invoice up by its metadata and completes it, still one invoice."""
    sandbox.faults.inject("drop", method="POST", path="/v1/invoiceitems", times=5)
    first = apply_actions(store, actor="tests")
    assert first.failed == ["act_overage"] and action(store).status == "in_flight"
    sandbox.clock.advance(2 * 86400)  # long enough for Stripe to forget the idempotency keys
    second = apply_actions(store, actor="tests")
    assert second.done == ["act_overage"]
    [invoice] = stripe_overage_invoices(server)
    assert (invoice.total, [ln.amount for ln in invoice.lines.data]) == (700, [600, 100])
    assert (action(store).status, action(store).external_id) == ("done", invoice.id)
