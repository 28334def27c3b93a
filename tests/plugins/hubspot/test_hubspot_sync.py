"""HubSpot in a full sync: terms drift against the billing system, and usage written back exactly once.

HubSpot (the CRM) says Acme's API calls above 10,000 a month cost $0.02; the billing system
(the in-memory connector) charges $0.015. February's 12,500 calls make 2,500 over: $50.00
by the contract, $37.50 as billed, so $12.50 is at stake. March so far has 12,000 calls:
2,000 over at $0.02 = $40.00 of overage to date, which lands on the HubSpot company once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from hubspot_testkit import portal
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.model import Action, Connection, Finding
from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import config_for_storage, load_config
from subledger.core.terms import load_terms, terms_to_document
from subledger.plugins.hubspot.config import HubSpotConfig
from subledger.plugins.hubspot.sandbox import DEFAULT_TOKEN, HubSpotSandbox
from subledger.sync.apply import apply_actions
from subledger.sync.engine import reconcile
from subledger.sync.pull import pull
from subledger.sync.rules.crm_fields import CrmUsageFieldsRule
from subledger.sync.rules.terms_drift import TermsDriftRule
from subledger.sync.settings import AutoApproval, SyncSettings
from subledger.testing.memory import DEFAULT_API_KEY, MemoryConfig, memory_connector, memory_store, reset_memory_stores

NOW = datetime(2026, 3, 20, tzinfo=UTC)
SETTINGS = SyncSettings(roles={"hubspot": ["crm"], "billing": ["billing", "metering"]},
                        auto_approve=[AutoApproval(rule="crm_usage_fields")])
RULES = [TermsDriftRule(), CrmUsageFieldsRule()]
BILLING_TERMS = terms_to_document(load_terms({
    "currency": "USD", "start_date": "2026-01-01", "end_date": "2026-12-31", "billing": {"interval": "month"},
    "components": [
        {"type": "flat_fee", "id": "platform", "amount": "1000.00"},
        {"type": "usage", "id": "api", "meter": "api_calls", "allotment": {"quantity": 10000},
         "price": {"model": "per_unit", "unit_price": "0.015"}},
    ],
}))


def acme_only() -> dict:
    """The test portal cut down to Acme: company 101, deal 9001, line items 5001 and 5002."""
    data = portal()
    data["companies"] = [c for c in data["companies"] if c["id"] == "101"]
    data["deals"] = [d for d in data["deals"] if d["id"] == "9001"]
    data["line_items"] = [li for li in data["line_items"] if li["id"] in ("5001", "5002")]
    return data


@pytest.fixture
def hubspot(engine: Engine, hubspot_registered: None) -> Iterator[HubSpotSandbox]:
    sandbox = HubSpotSandbox(fixture=acme_only())
    with SandboxServer(sandbox) as server, memory_connector():
        reset_memory_stores()
        billing = memory_store("billing")
        billing.put("customers", "cus_9", name="Acme, Inc")
        billing.put("contracts", "sub_1", customer_external_id="cus_9", currency="USD", start_date=date(2026, 1, 1),
                    end_date=date(2026, 12, 31), status="active", terms=BILLING_TERMS)
        for n, (day, qty) in enumerate((("2026-02-03", 12500), ("2026-03-02", 7000), ("2026-03-09", 5000))):
            billing.put("usage_events", f"e{n}", customer_external_id="cus_9", meter="api_calls", quantity=str(qty),
                        occurred_at=f"{day}T00:00:00+00:00", properties={})
        hs = HubSpotConfig(access_token=DEFAULT_TOKEN, base_url=server.url)
        mem = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
        with Session(engine) as s, s.begin():
            s.add(Connection(name="hubspot", plugin="hubspot", config=config_for_storage(hs)))
            s.add(Connection(name="billing", plugin="memory", config=config_for_storage(mem)))
        yield sandbox
    reset_memory_stores()


def cycle(engine: Engine) -> None:
    pull(engine, "hubspot")
    pull(engine, "billing")
    reconcile(engine, settings=SETTINGS, actor="tests", now=NOW, rules=RULES)
    apply_actions(engine, actor="tests")


def company_updates(sandbox: HubSpotSandbox) -> int:
    return sum(1 for e in sandbox.exchanges
               if e.request.path == "/crm/v3/objects/companies/batch/update" and e.response.status == 200)


def test_terms_drift_and_usage_to_date_written_back_exactly_once(engine: Engine, hubspot: HubSpotSandbox) -> None:
    cycle(engine)
    with Session(engine) as s:
        [drift] = s.exec(select(Finding).where(Finding.rule == "terms_drift")).all()
    assert drift.details["differences"] == {"usage[api_calls].unit_price": {"crm": "0.02", "billing": "0.015"}}
    assert (drift.amount_minor, drift.currency) == (1250, "USD")  # 2,500 calls x $0.005 in February

    acme = hubspot.store.get("companies", "101")["properties"]
    assert (acme["subledger_usage_to_date"], acme["subledger_overage_to_date"]) == ("api_calls: 12000", "40.00")
    assert acme["subledger_open_findings"] == "1"
    assert company_updates(hubspot) == 1

    cycle(engine)  # HubSpot now shows the figures: nothing more to write
    cycle(engine)
    assert company_updates(hubspot) == 1
    with Session(engine) as s:
        assert [a.status for a in s.exec(select(Action).where(Action.kind == "update_customer_fields"))] == ["done"]


def test_a_hubspot_edit_since_the_last_read_is_a_conflict_not_an_overwrite(
    engine: Engine, hubspot: HubSpotSandbox
) -> None:
    pull(engine, "hubspot")
    pull(engine, "billing")
    reconcile(engine, settings=SETTINGS, actor="tests", now=NOW, rules=RULES)
    with hubspot.store.lock:
        hubspot.store.get("companies", "101")["properties"]["subledger_usage_to_date"] = "typed by a person"
    report = apply_actions(engine, actor="tests")
    assert len(report.conflicts) == 1
    assert hubspot.store.get("companies", "101")["properties"]["subledger_usage_to_date"] == "typed by a person"
    assert company_updates(hubspot) == 0
