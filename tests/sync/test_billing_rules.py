"""unbilled_usage and over_billing: expected (rated) charges against invoiced lines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.connector import UsageCoverage, UsageEventIn
from subledger.core.model import Connection, Contract, Customer, Invoice, InvoiceLine, record_id
from subledger.core.store.coverage import record_coverage
from subledger.core.store.usage import ingest_usage
from subledger.core.terms import load_terms, terms_to_document
from subledger.sync.engine import reconcile
from subledger.sync.rules.billing import OverBillingRule, UnbilledUsageRule
from subledger.sync.settings import SyncSettings

# The data below is put in the store by hand: its connections count as read completely.
READ = datetime(2000, 1, 1, tzinfo=UTC)

NOW = datetime(2026, 4, 10, tzinfo=UTC)
TERMS = {
    "currency": "USD",
    "start_date": "2026-01-01",
    "end_date": "2026-12-31",
    "billing": {"interval": "month"},
    "components": [
        {
            "type": "usage",
            "id": "api",
            "meter": "api_calls",
            "allotment": {"quantity": 1000},
            "price": {"model": "per_unit", "unit_price": "0.01"},
        },
    ],
    "commitments": [{"id": "min", "kind": "minimum", "amount": "5.00", "per": "period"}],
}


def seed(engine: Engine, *, january_usage: int, invoiced: dict[str, int]) -> None:
    """One customer on 1,000 included calls then $0.01 each, with a $5.00 monthly minimum."""
    terms = load_terms(TERMS)
    with Session(engine) as s, s.begin():
        s.add(Connection(name="files", plugin="files", config={}, last_complete_pull_at=READ))
        s.add(Customer(id=record_id("cus", "files", "acme"), system="files", external_id="acme", name="Acme"))
        s.add(
            Contract(
                id=record_id("con", "files", "acme-2026"),
                system="files",
                external_id="acme-2026",
                customer_external_id="acme",
                currency="USD",
                start_date=date(2026, 1, 1),
                end_date=date(2026, 12, 31),
                terms=terms_to_document(terms),
            )
        )
        inv_id = record_id("inv", "files", "in_jan")
        s.add(
            Invoice(
                id=inv_id,
                system="files",
                external_id="in_jan",
                number="INV-1",
                customer_external_id="acme",
                currency="USD",
                status="paid",
                period_start=date(2026, 1, 1),
                period_end=date(2026, 1, 31),
                total_minor=sum(invoiced.values()),
            )
        )
        for i, (kind, amount) in enumerate(invoiced.items()):
            s.add(
                InvoiceLine(
                    invoice_id=inv_id,
                    line_key=str(i),
                    kind=kind,
                    meter="api_calls" if kind == "usage" else None,
                    amount_minor=amount,
                    currency="USD",
                    service_start=date(2026, 1, 1),
                    service_end=date(2026, 1, 31),
                )
            )
        t0 = datetime(2026, 1, 5, tzinfo=UTC)
        # The usage below is all there is for the year: the metering system has read it whole.
        record_coverage(s, "files", [UsageCoverage(datetime(2026, 1, 1, tzinfo=UTC), NOW)])
        ingest_usage(
            s,
            "files",
            [
                UsageEventIn(f"e{i}", "acme", "api_calls", Decimal(1), t0 + timedelta(minutes=i), {}, f"h{i}")
                for i in range(january_usage)
            ],
        )


def drifts(engine: Engine, rule):  # type: ignore[no-untyped-def]
    from sqlmodel import select

    from subledger.core.model import Finding

    reconcile(engine, settings=SyncSettings(), actor="test", now=NOW, rules=[rule])
    with Session(engine) as s:
        rows = s.exec(select(Finding).where(Finding.rule == rule.name, Finding.status == "open")).all()
        return sorted((f.key.split(":", 2)[2], f.amount_minor) for f in rows)


def test_a_missing_overage_and_missing_true_ups_are_unbilled(engine: Engine) -> None:
    # January: 1,300 calls -> 300 over the allotment x $0.01 = $3.00; the invoice billed $2.00.
    # The $5.00 minimum then needs a $2.00 true-up, which was not billed either.
    # February and March: no usage and no invoice -> each month's $5.00 minimum true-up is due.
    seed(engine, january_usage=1300, invoiced={"usage": 200})
    assert drifts(engine, UnbilledUsageRule()) == [
        ("minimum_true_up:2026-01-01", 200),
        ("minimum_true_up:2026-02-01", 500),
        ("minimum_true_up:2026-03-01", 500),
        ("usage:api_calls:2026-01-01", 100),
    ]
    assert drifts(engine, OverBillingRule()) == []


def test_clean_billing_raises_nothing(engine: Engine) -> None:
    seed(engine, january_usage=1300, invoiced={"usage": 300, "true_up": 200})
    unbilled = drifts(engine, UnbilledUsageRule())
    assert [k for k, _ in unbilled if k.endswith("2026-01-01")] == []


def test_billing_more_than_the_contract_says_is_over_billing(engine: Engine) -> None:
    seed(engine, january_usage=1300, invoiced={"usage": 450, "true_up": 200})
    assert drifts(engine, OverBillingRule()) == [("usage:api_calls:2026-01-01", -150)]


def test_the_unbilled_finding_proposes_an_invoice_for_the_delta_only(engine: Engine) -> None:
    from sqlmodel import select

    from subledger.core.model import Action

    seed(engine, january_usage=1300, invoiced={"usage": 200, "true_up": 200})
    reconcile(engine, settings=SyncSettings(), actor="test", now=NOW, rules=[UnbilledUsageRule()])
    with Session(engine) as s:
        actions = s.exec(select(Action).where(Action.rule == "unbilled_usage")).all()
        jan = [a for a in actions if a.payload["period_start"] == "2026-01-01"]
    assert len(jan) == 1
    (line,) = jan[0].payload["lines"]
    assert (jan[0].amount_minor, line["meter"], line["amount_minor"], line["service_end"]) == (
        100,
        "api_calls",
        100,
        "2026-01-31",
    )
