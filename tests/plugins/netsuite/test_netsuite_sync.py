"""NetSuite as the ERP under the sync engine: the orphan and cash rules, and write-back.

The billing system (the in-memory connector) has Acme's invoice INV-1 for 501.50, paid,
and invoice B-77 for 42.00 that NetSuite has never seen. NetSuite has INV-1 with 300.00 of
a customer payment applied, so 201.50 is still due there.

* ``invoice_missing_from_erp`` finds B-77 and, auto-approved up to 100.00, creates it in
  NetSuite exactly once, although the sandbox drops the connection right after
  committing the upsert; the next sync reads it back (source system and id in custom
  body fields) and the finding resolves itself.
* ``paid_in_billing_open_in_erp`` finds INV-1: paid in billing, 201.50 due in NetSuite.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from ns_testkit import tba_config
from sqlalchemy import Engine
from sqlmodel import Session, select

import subledger.plugins.netsuite as netsuite_plugin
from subledger.core.model import Action, Connection, Finding, Invoice
from subledger.core.plugins import register_plugin
from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import config_for_storage, load_config
from subledger.plugins.netsuite.config import NetSuiteConfig
from subledger.plugins.netsuite.sandbox import NetSuiteSandbox
from subledger.sync.apply import apply_actions
from subledger.sync.engine import sync
from subledger.sync.settings import AutoApproval, IdentitySettings, SyncSettings
from subledger.testing import FakeClock
from subledger.testing.memory import DEFAULT_API_KEY, MemoryConfig, memory_connector, memory_store, reset_memory_stores

SETTINGS = SyncSettings(
    roles={"billing": ["billing"], "netsuite": ["erp"]},
    identity=IdentitySettings(master="billing"),
    auto_approve=[AutoApproval(rule="invoice_missing_from_erp", max_amount="100.00")],
)


@pytest.fixture
def connected(engine: Engine, isolated_plugins: None, server: SandboxServer) -> Iterator[Engine]:
    reset_memory_stores()
    billing = memory_store("billing")
    billing.put("customers", "cus_acme", name="Acme Corp", email="ap@acme.example", email_domain="acme.example",
                currency="USD")
    for ext, number, total, status in (("in_1", "INV-1", 50150, "paid"), ("in_77", "B-77", 4200, "open")):
        billing.put("invoices", ext, customer_external_id="cus_acme", currency="USD", status=status, number=number,
                    subtotal_minor=total, total_minor=total, amount_due_minor=0 if status == "paid" else total,
                    issued_at=datetime(2026, 1, 5, tzinfo=UTC), period_start=date(2026, 1, 1),
                    period_end=date(2026, 1, 31),
                    lines=[{"line_key": "l1", "kind": "usage", "description": "API calls", "quantity": "4200",
                            "amount_minor": total, "currency": "USD", "service_start": date(2026, 1, 1),
                            "service_end": date(2026, 1, 31)}])
    if not any(ep.name == "netsuite" for ep in importlib.metadata.entry_points(group="subledger")):
        register_plugin(netsuite_plugin, name="netsuite")
    ns_config = load_config(NetSuiteConfig, tba_config(server.url))
    mem_config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
    with Session(engine) as s, s.begin():
        s.add(Connection(name="billing", plugin="memory", config=config_for_storage(mem_config)))
        s.add(Connection(name="netsuite", plugin="netsuite", config=config_for_storage(ns_config)))
    with memory_connector():
        yield engine
    reset_memory_stores()


def _open(engine: Engine, rule: str) -> list[Finding]:
    with Session(engine) as s:
        return list(s.exec(select(Finding).where(Finding.rule == rule, Finding.status == "open")).all())


def test_missing_invoice_is_created_in_netsuite_once_and_paid_invoice_open_there_is_found(
    connected: Engine, sandbox: NetSuiteSandbox, fake_clock: FakeClock
) -> None:
    drop = sandbox.faults.inject("drop", method="PUT", path="/services/rest/record/v1/invoice/*")
    report = sync(connected, trigger="test", settings=SETTINGS)
    assert report.run.status == "succeeded"

    [missing] = [f for f in _open(connected, "invoice_missing_from_erp") if f.key == "billing:in_77"]
    assert (missing.amount_minor, missing.currency, missing.customer) == (4200, "USD", "cus_acme")
    [paid] = _open(connected, "paid_in_billing_open_in_erp")
    assert (paid.key, paid.amount_minor) == ("billing:in_1", 20150)
    assert paid.evidence == [{"system": "billing", "object": "invoice", "id": "in_1"},
                             {"system": "netsuite", "object": "invoice", "id": "2001"}]

    with Session(connected) as s:
        [action] = s.exec(select(Action).where(Action.kind == "create_invoice")).all()
    assert (action.status, action.connection) == ("done", "netsuite")
    assert drop.fired == 1, "the upsert's answer was lost once"
    created = [r for r in sandbox.store.collection("invoice").values() if r.get("custbody_subledger_source_id")]
    assert len(created) == 1, "the dropped answer must not make a second NetSuite invoice"
    [invoice] = created
    # Its external id is derived from the billing invoice it copies, so any later action for it finds it.
    assert (invoice["externalId"], invoice["id"]) == ("subledger:billing:in_77", action.external_id)
    assert (invoice["custbody_subledger_source_system"], invoice["total"], invoice["otherRefNum"]) == (
        "billing", 42, "B-77")
    assert invoice["entity"]["id"] == "1001"
    assert [(ln["revRecStartDate"], ln["revRecEndDate"], ln["amount"]) for ln in invoice["item"]["items"]] == [
        ("2026-01-01", "2026-01-31", 42)]

    # The next sync reads the invoice back; its source fields match it to B-77: resolved, nothing re-planned.
    again = sync(connected, trigger="test", settings=SETTINGS)
    assert again.run.actions_planned == 0 and again.run.actions_applied == 0
    assert not [f for f in _open(connected, "invoice_missing_from_erp") if f.key == "billing:in_77"]
    with Session(connected) as s:
        stored = s.exec(select(Invoice).where(Invoice.system == "netsuite", Invoice.external_id == invoice["id"])).one()
    assert stored.attributes["source_system"] == "billing" and stored.attributes["source_external_id"] == "in_77"
    assert len([r for r in sandbox.store.collection("invoice").values() if r.get("custbody_subledger_source_id")]) == 1


def test_a_journal_entry_action_is_applied_through_the_outbox_exactly_once(
    engine: Engine, isolated_plugins: None, server: SandboxServer, sandbox: NetSuiteSandbox, fake_clock: FakeClock,
    tmp_path: Path,
) -> None:
    """A revrec posting planned as an outbox action: every answer to the upsert is lost (five
    attempts, each committed); apply then looks the entry up by its external id, finds it,
    and completes; a second apply writes nothing."""
    mapping = tmp_path / "accounts.yaml"
    mapping.write_text('subsidiary: "1"\naccounts: {"1200": "12", "2400": "21"}\n')
    if not any(ep.name == "netsuite" for ep in importlib.metadata.entry_points(group="subledger")):
        register_plugin(netsuite_plugin, name="netsuite")
    config = load_config(NetSuiteConfig, tba_config(server.url, account_mapping=str(mapping)))
    payload = {"external_id": "invoice:stripe:in_9:0a1b2c3d4e5f", "key": "invoice:stripe:in_9", "kind": "invoice",
               "entry_date": "2026-01-09", "period": "2026-01", "currency": "USD", "memo": "in_9",
               "lines": [{"line_no": 1, "role": "accounts_receivable", "account": "1200", "debit_minor": 12345,
                          "credit_minor": 0, "currency": "USD"},
                         {"line_no": 2, "role": "contract_liability", "account": "2400", "debit_minor": 0,
                          "credit_minor": 12345, "currency": "USD"}]}
    with Session(engine) as s, s.begin():
        s.add(Connection(name="netsuite", plugin="netsuite", config=config_for_storage(config)))
        s.add(Action(id="act_je", idempotency_key="post:invoice:stripe:in_9", kind="create_journal_entry",
                     connection="netsuite", payload=payload, amount_minor=12345, currency="USD", status="approved",
                     approved_by="tests"))
    sandbox.faults.inject("drop", method="PUT", path="/services/rest/record/v1/journalEntry/*", times=5)
    first = apply_actions(engine, actor="tests")
    assert first.done == ["act_je"] and not first.failed
    second = apply_actions(engine, actor="tests")
    assert second.done == [] and not second.failed
    [entry] = sandbox.store.collection("journalEntry").values()
    assert entry["externalId"] == payload["external_id"]
    assert [(ln["account"]["id"], ln["debit"], ln["credit"]) for ln in entry["line"]["items"]] == [
        ("12", Decimal("123.45"), None), ("21", None, Decimal("123.45"))]
    with Session(engine) as s:
        done = s.get(Action, "act_je")
        assert done is not None and (done.status, done.external_id) == ("done", entry["id"])
