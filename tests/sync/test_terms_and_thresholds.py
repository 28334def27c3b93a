"""terms_drift (CRM vs billing configuration) and thresholds (80% / 100% of an allotment)."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.connector import UsageCoverage, UsageEventIn
from subledger.core.model import Connection, Contract, Customer, Finding, record_id
from subledger.core.store.coverage import record_coverage
from subledger.core.store.usage import ingest_usage
from subledger.core.terms import load_terms, terms_hash, terms_to_document
from subledger.sync.engine import reconcile
from subledger.sync.rules.terms_drift import TermsDriftRule
from subledger.sync.rules.thresholds import ThresholdRule
from subledger.sync.settings import SyncSettings

# The data below is put in the store by hand: its connections count as read completely.
READ = datetime(2000, 1, 1, tzinfo=UTC)

SETTINGS = SyncSettings(roles={"crm": ["crm"], "billing": ["billing", "metering"]})
TERMS = {
    "currency": "USD",
    "start_date": "2026-01-01",
    "end_date": "2026-12-31",
    "billing": {"interval": "month"},
    "components": [
        {"type": "flat_fee", "id": "platform", "amount": "1000.00"},
        {
            "type": "usage",
            "id": "api",
            "meter": "api_calls",
            "allotment": {"quantity": 10000},
            "price": {"model": "per_unit", "unit_price": "0.02"},
        },
    ],
}


def contract(system: str, ext: str, customer: str, terms: dict) -> Contract:
    t = load_terms(terms)
    return Contract(
        id=record_id("con", system, ext),
        system=system,
        external_id=ext,
        customer_external_id=customer,
        currency="USD",
        start_date=date(2026, 1, 1),
        end_date=date(2026, 12, 31),
        terms=terms_to_document(t),
        terms_hash=terms_hash(t),
    )


def seed(engine: Engine, billing_overage: str, usage: list[tuple[datetime, int]]) -> None:
    billing_terms = copy.deepcopy(TERMS)
    billing_terms["components"][1]["price"]["unit_price"] = billing_overage
    with Session(engine) as s, s.begin():
        for name in ("crm", "billing"):
            s.add(Connection(name=name, plugin="memory", config={}, last_complete_pull_at=READ))
        s.add(Customer(id=record_id("cus", "crm", "001A"), system="crm", external_id="001A", name="Acme Inc."))
        s.add(
            Customer(id=record_id("cus", "billing", "cus_9"), system="billing", external_id="cus_9", name="ACME, Inc")
        )
        s.add(contract("crm", "800A", "001A", TERMS))
        s.add(contract("billing", "sub_1", "cus_9", billing_terms))
        # Billing has read its usage from the start of the year through April 10.
        read = UsageCoverage(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 10, tzinfo=UTC))
        record_coverage(s, "billing", [read])
        ingest_usage(
            s,
            "billing",
            [
                UsageEventIn(f"e{i}", "cus_9", "api_calls", Decimal(n), at, {}, f"h{i}")
                for i, (at, n) in enumerate(usage)
            ],
        )


def open_findings(engine: Engine, rule: str) -> list[Finding]:
    with Session(engine) as s:
        return list(
            s.exec(select(Finding).where(Finding.rule == rule, Finding.status == "open").order_by(Finding.key)).all()
        )


def test_crm_overage_of_2_cents_against_billing_at_1_5_cents_is_terms_drift(engine: Engine) -> None:
    # March: 15,000 calls, 5,000 over the allotment. The CRM says $0.02 each ($100.00);
    # billing charges $0.015 ($75.00): billing under-charges $25.00 a month.
    seed(engine, "0.015", [(datetime(2026, 3, 10, tzinfo=UTC), 15000)])
    now = datetime(2026, 4, 10, tzinfo=UTC)
    reconcile(engine, settings=SETTINGS, actor="t", now=now, rules=[TermsDriftRule()])
    (f,) = open_findings(engine, "terms_drift")
    assert (f.customer, f.amount_minor, f.currency) == ("001A", 2500, "USD")  # linked by name
    assert f.details["differences"] == {"usage[api_calls].unit_price": {"crm": "0.02", "billing": "0.015"}}
    assert f.details["conflict"] is False
    assert {e["id"] for e in f.evidence} == {"800A", "sub_1"}


def test_matching_terms_raise_nothing(engine: Engine) -> None:
    seed(engine, "0.02", [(datetime(2026, 3, 10, tzinfo=UTC), 15000)])
    reconcile(engine, settings=SETTINGS, actor="t", now=datetime(2026, 4, 10, tzinfo=UTC), rules=[TermsDriftRule()])
    assert open_findings(engine, "terms_drift") == []


def test_thresholds_fire_once_per_threshold_per_period(engine: Engine) -> None:
    # 10,000 calls included in April; 8,500 used by April 20 -> 85%: the 80% threshold.
    seed(engine, "0.02", [(datetime(2026, 4, 5, tzinfo=UTC), 8500)])
    rule = ThresholdRule()
    now = datetime(2026, 4, 20, tzinfo=UTC)
    reconcile(engine, settings=SETTINGS, actor="t", now=now, rules=[rule])
    reconcile(engine, settings=SETTINGS, actor="t", now=now + timedelta(hours=1), rules=[rule])
    assert [f.key.rsplit(":", 1)[1] for f in open_findings(engine, "thresholds")] == ["0.8"]
    # 2,000 more: 105% -> the 100% threshold too; the 80% one is not raised again.
    with Session(engine) as s, s.begin():
        ingest_usage(
            s,
            "billing",
            [UsageEventIn("more", "cus_9", "api_calls", Decimal(2000), datetime(2026, 4, 21, tzinfo=UTC), {}, "hm")],
        )
    reconcile(engine, settings=SETTINGS, actor="t", now=now + timedelta(days=2), rules=[rule])
    found = open_findings(engine, "thresholds")
    assert [f.key.rsplit(":", 1)[1] for f in found] == ["0.8", "1"]
    assert found[1].details == {
        "measure": "allotment:api",
        "used": "10500",
        "limit": "10000",
        "unit": "api_calls",
        "threshold": "1",
    }
    # In May the April crossings are over: they resolve by themselves.
    reconcile(engine, settings=SETTINGS, actor="t", now=datetime(2026, 5, 2, tzinfo=UTC), rules=[rule])
    assert open_findings(engine, "thresholds") == []
