"""A full sync finds a Stripe customer's missing overage and bills it exactly once.

The contract lives in the CRM (a files folder): 3 seats at $20.00 a month plus $0.01 per
API call. Stripe bills the calls at its own price, $0.005 each for the first 1,000 and a
flat $1.00 beyond: for 1,500 calls in the first month Stripe billed $6.00 where the
contract says $15.00. The sync finds $9.00 unbilled, plans one Stripe invoice, and applies
it exactly once although the sandbox drops the connection right after creating it; the
next sync pulls that invoice and the finding resolves itself.
"""

from __future__ import annotations

import importlib.metadata
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import stripe
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select
from stripe_testkit import DAY, basic_fixture

import subledger.plugins.stripe as stripe_plugin
from subledger.core.model import Action, Connection, Finding
from subledger.core.plugins import register_plugin
from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import config_for_storage, load_config
from subledger.plugins.files.connector import FilesConfig
from subledger.plugins.stripe.config import StripeConfig
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox
from subledger.sync.engine import sync
from subledger.sync.settings import AutoApproval, SyncSettings

SETTINGS = SyncSettings(
    roles={"crm": ["crm"], "stripe": ["billing", "metering"]},
    auto_approve=[AutoApproval(rule="unbilled_usage", max_amount="50.00")],
)


def write_crm(folder: Path, start: datetime) -> None:
    (folder / "contracts").mkdir(parents=True)
    (folder / "customers.csv").write_text("id,name,email\nacme,Acme Corp,ap@acme.example\n")
    (folder / "contracts" / "acme.yaml").write_text(f"""\
id: acme-2026
customer: acme
currency: USD
start_date: {start:%Y-%m-%d}
billing: {{interval: month, anchor_day: {start.day}}}
components:
  - {{type: flat_fee, id: seats, amount: "20.00", quantity: 3}}
  - type: usage
    id: api_calls
    meter: api_calls
    price: {{model: per_unit, unit_price: "0.01"}}
""")


@pytest.fixture
def engine_with_connections(empty_engine: Engine, isolated_plugins: None, server: SandboxServer,
                            sandbox: StripeSandbox, tmp_path: Path) -> Engine:
    now = int(time.time())
    sandbox.seed(basic_fixture(now))
    created = datetime.fromtimestamp(now - 60 * DAY, UTC)
    write_crm(tmp_path / "crm", created)
    SQLModel.metadata.create_all(empty_engine)
    if not any(ep.name == "stripe" for ep in importlib.metadata.entry_points(group="subledger")):
        register_plugin(stripe_plugin, name="stripe")
    stripe_config = StripeConfig(api_key=DEFAULT_API_KEY, api_base=server.url, finalize_invoices=True,
                                 usage_start=created.date())
    files_config = load_config(FilesConfig, {"path": str(tmp_path / "crm")})
    with Session(empty_engine) as s, s.begin():
        s.add(Connection(name="stripe", plugin="stripe", config=config_for_storage(stripe_config)))
        s.add(Connection(name="crm", plugin="files", config=config_for_storage(files_config)))
    return empty_engine


def findings(engine: Engine, rule: str) -> list[Finding]:
    with Session(engine) as s:
        return list(s.exec(select(Finding).where(Finding.rule == rule)).all())


def test_sync_bills_the_missing_overage_once_and_then_finds_nothing(
    engine_with_connections: Engine, server: SandboxServer, sandbox: StripeSandbox
) -> None:
    engine = engine_with_connections
    sandbox.faults.inject("drop", method="POST", path="/v1/invoices")  # dies after Stripe committed
    first = sync(engine, trigger="test", settings=SETTINGS)
    assert first.run.status == "succeeded", first.run.errors
    (leak,) = [f for f in findings(engine, "unbilled_usage") if f.details["charge"] == "usage:api_calls"]
    assert (leak.customer, leak.amount_minor, leak.currency) == ("acme", 900, "USD")
    assert {e["system"] for e in leak.evidence} >= {"crm", "stripe"}
    with Session(engine) as s:
        (action,) = s.exec(select(Action).where(Action.finding_id == leak.id)).all()
    assert (action.status, action.connection, action.amount_minor) == ("done", "stripe", 900)

    v1 = stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": server.url}, max_network_retries=0).v1
    ours = [i for i in v1.invoices.list(params={"customer": "cus_acme", "limit": 100}).data
            if i.metadata.to_dict().get("subledger_action_id")]
    assert [(i.total, i.status) for i in ours] == [(900, "open")]  # exactly one, finalized

    second = sync(engine, trigger="test", settings=SETTINGS)
    assert second.run.findings_resolved >= 1
    assert [f.status for f in findings(engine, "unbilled_usage") if f.id == leak.id] == ["resolved"]
    assert second.run.actions_applied == 0
    assert len([i for i in v1.invoices.list(params={"customer": "cus_acme", "limit": 100}).data
                if i.metadata.to_dict().get("subledger_action_id")]) == 1
