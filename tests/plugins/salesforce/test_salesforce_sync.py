"""Salesforce as the CRM in a sync: terms drift is found, and usage to date lands in Salesforce once.

Acme's closed-won opportunity in Salesforce says: $500 platform fee a month, 10,000 API
calls included, then $0.02 a call. The billing system (the in-memory connector, playing
billing and metering) charges $0.015 a call for the same contract. Acme used 15,000 calls
in February and 12,500 so far in March (today is 20 March 2026).
"""

from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sf_testkit import ACME, ACME_CONTRACT, ACME_OPP, org_fixture
from sqlalchemy import Engine
from sqlmodel import Session, select

import subledger.plugins.salesforce as salesforce_plugin
from subledger.core.model import Action, Connection, Finding
from subledger.core.plugins import register_plugin, unregister_plugin
from subledger.core.secrets import config_for_storage, load_config
from subledger.plugins.salesforce.config import SalesforceConfig
from subledger.plugins.salesforce.sandbox import SalesforceSandbox
from subledger.sync.apply import apply_actions
from subledger.sync.engine import reconcile
from subledger.sync.pull import pull
from subledger.sync.rules.crm_fields import CrmUsageFieldsRule
from subledger.sync.rules.terms_drift import TermsDriftRule
from subledger.sync.settings import AutoApproval, SyncSettings
from subledger.testing import FakeClock
from subledger.testing.memory import DEFAULT_API_KEY, MemoryConfig, memory_connector, memory_store, reset_memory_stores

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
SETTINGS = SyncSettings(roles={"billing": ["billing", "metering"]},
                        auto_approve=[AutoApproval(rule="crm_usage_fields")])
RULES = [TermsDriftRule(), CrmUsageFieldsRule()]


def acme_org() -> dict[str, Any]:
    """The test org with Acme's deal only, its contract open-ended (active whatever today's date)."""
    fixture = org_fixture()
    [contract] = fixture["Contract"]
    del contract["ContractTerm"]
    fixture["Opportunity"] = [o for o in fixture["Opportunity"] if o["Id"] == ACME_OPP]
    fixture["OpportunityLineItem"] = [x for x in fixture["OpportunityLineItem"] if x["OpportunityId"] == ACME_OPP]
    return fixture


@pytest.fixture
def org(engine: Engine, config: SalesforceConfig, sandbox: SalesforceSandbox) -> Iterator[SalesforceSandbox]:
    sandbox.reset()
    sandbox.seed(acme_org())
    installed = any(ep.name == "salesforce" for ep in importlib.metadata.entry_points(group="subledger"))
    if not installed:
        register_plugin(salesforce_plugin, name="salesforce")
    reset_memory_stores()
    with memory_connector():
        with Session(engine) as s, s.begin():
            s.add(Connection(name="salesforce", plugin="salesforce", config=config_for_storage(config)))
            billing = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
            s.add(Connection(name="billing", plugin="memory", config=config_for_storage(billing)))
        yield sandbox
    reset_memory_stores()
    if not installed:
        unregister_plugin("salesforce")


def seed_billing(crm_terms: dict[str, Any]) -> None:
    """The billing system: Acme's subscription as Salesforce's terms at $0.015 a call, and Acme's usage."""
    store = memory_store("billing")
    # Linked the way subledger links a billing customer: the canonical id the CRM (master) account
    # carries in Subledger_Id__c ("acme"), stored in the billing customer's metadata.
    store.put("customers", "cus_acme", name="Acme Corp", canonical_hint="acme")
    terms = copy.deepcopy(crm_terms)
    terms.pop("metadata", None)
    [usage] = [c for c in terms["components"] if c["type"] == "usage"]
    usage["price"]["unit_price"] = "0.015"
    store.put("contracts", "sub_acme", customer_external_id="cus_acme", currency="USD",
              start_date=date(2026, 1, 1), status="active", terms=terms)
    for n, (day, calls) in enumerate([("2026-02-10", 15000), ("2026-03-05", 12500)]):
        store.put("usage_events", f"evt_{n}", customer_external_id="cus_acme", meter="api_calls",
                  quantity=str(calls), occurred_at=f"{day}T00:00:00+00:00", properties={})


def cycle(engine: Engine) -> None:
    pull(engine, "salesforce")
    pull(engine, "billing")
    reconcile(engine, settings=SETTINGS, actor="tests", now=NOW, rules=RULES)
    apply_actions(engine, actor="tests")


def crm_terms(engine: Engine) -> dict[str, Any]:
    from subledger.core.model import Contract

    pull(engine, "salesforce")
    with Session(engine) as s:
        contract = s.exec(select(Contract).where(Contract.system == "salesforce",
                                                 Contract.customer_external_id == ACME)).one()
        return dict(contract.terms)


def composite_writes(sandbox: SalesforceSandbox) -> int:
    return sum(1 for ex in sandbox.exchanges if ex.request.method == "POST" and ex.request.path.endswith("/composite"))


def test_the_crm_overage_rate_differs_from_billing_and_is_a_terms_drift_finding(
    engine: Engine, org: SalesforceSandbox
) -> None:
    seed_billing(crm_terms(engine))
    cycle(engine)
    with Session(engine) as s:
        [finding] = s.exec(select(Finding).where(Finding.rule == "terms_drift")).all()
    assert finding.customer == "acme" and finding.status == "open"  # the canonical id Acme carries
    assert finding.details["differences"] == {"usage[api_calls].unit_price": {"crm": "0.02", "billing": "0.015"}}
    # February: 15,000 calls, 5,000 over the 10,000 included; billing misses 5,000 x $0.005 = $25.00.
    assert (finding.amount_minor, finding.currency) == (2500, "USD")
    assert {"system": "salesforce", "object": "contract", "id": "0065g00000ACMEAAA"} in finding.evidence


def test_usage_to_date_lands_in_salesforce_exactly_once_even_when_the_answer_is_lost(
    engine: Engine, org: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    seed_billing(crm_terms(engine))
    org.exchanges.clear()
    org.faults.inject("drop", method="POST", path="/services/data/*/composite")  # committed, answer lost
    cycle(engine)  # the write is not resent blindly: the engine looks it up (find) and finds it done
    assert [ex.action for ex in org.exchanges if ex.fault is not None] == ["drop"]
    account = org.store.get("Account", ACME)
    assert account is not None
    # March so far: 12,500 calls, 2,500 over the 10,000 included at $0.02 = $50.00.
    assert (account["Usage_To_Date__c"], account["Overage_To_Date__c"]) == ("api_calls: 12500", "50.00")
    assert composite_writes(org) == 1
    with Session(engine) as s:
        assert [a.status for a in s.exec(select(Action))] == ["done"]
    cycle(engine)  # Salesforce now shows the figures: nothing more to write
    cycle(engine)
    assert composite_writes(org) == 1
    with Session(engine) as s:
        assert [a.status for a in s.exec(select(Action))] == ["done"]


def test_a_salesforce_edit_since_the_last_read_is_a_conflict_not_an_overwrite(
    engine: Engine, org: SalesforceSandbox
) -> None:
    seed_billing(crm_terms(engine))
    pull(engine, "salesforce")
    pull(engine, "billing")
    reconcile(engine, settings=SETTINGS, actor="tests", now=NOW, rules=RULES)
    org.modify("Account", ACME, {"Usage_To_Date__c": "typed by a person"})
    report = apply_actions(engine, actor="tests")
    assert len(report.conflicts) == 1
    assert org.store.get("Account", ACME)["Usage_To_Date__c"] == "typed by a person"
    assert ACME_CONTRACT  # the contract the terms came from is untouched

