"""Never act on what was not read, and never bill the same money twice (issue 15, A and B).

A: a rule judges nothing from a connection whose pull failed in this sync or that was
never read completely: it is *not covered*, its findings stay as they are, nothing is
planned or applied from it. B: corrections subledger has committed to — approved or in
flight, written but not read back, or left as a draft — are pending billing: a later
drift plans only what they do not cover.

The store is put together by hand: a ``crm`` connection holding acme's contract (1.00 a
call), a ``billing`` connection (billing and metering) holding its usage and invoices
under customer ``cus_1``, and an ``erp``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.connector import UsageCoverage, UsageEventIn
from subledger.core.errors import TransientError
from subledger.core.model import Action, Connection, Contract, Customer, Finding, Invoice, InvoiceLine, record_id
from subledger.core.secrets import config_for_storage, load_config
from subledger.core.store.coverage import record_coverage
from subledger.core.store.usage import ingest_usage
from subledger.core.terms import load_terms, terms_to_document
from subledger.sync.engine import reconcile, sync
from subledger.sync.rules.billing import UnbilledUsageRule
from subledger.sync.rules.orphans import InvoiceMissingFromErpRule
from subledger.sync.settings import SyncSettings
from subledger.testing.memory import (
    DEFAULT_API_KEY,
    MemoryConfig,
    MemoryConnector,
    memory_connector,
    memory_store,
    reset_memory_stores,
)

READ = datetime(2000, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 2, 10, tzinfo=UTC)
SETTINGS = SyncSettings(roles={"crm": ["crm"], "billing": ["billing", "metering"], "erp": ["erp"]})
TERMS = {"currency": "USD", "start_date": "2026-01-01", "end_date": "2026-12-31", "billing": {"interval": "month"},
         "components": [{"type": "usage", "id": "api", "meter": "api_calls",
                         "price": {"model": "per_unit", "unit_price": "1.00"}}]}


def seed(engine: Engine, *, erp_read: bool = True) -> None:
    with Session(engine) as s, s.begin():
        s.add(Connection(name="crm", plugin="memory", last_complete_pull_at=READ))
        s.add(Connection(name="billing", plugin="memory", last_complete_pull_at=READ))
        s.add(Connection(name="erp", plugin="memory", last_complete_pull_at=READ if erp_read else None))
        for system, ext in (("crm", "acme"), ("billing", "cus_1")):
            s.add(Customer(id=record_id("cus", system, ext), system=system, external_id=ext, name="Acme Inc"))
        s.add(Contract(id=record_id("con", "crm", "acme-2026"), system="crm", external_id="acme-2026",
                       customer_external_id="acme", currency="USD", start_date=date(2026, 1, 1),
                       end_date=date(2026, 12, 31), terms=terms_to_document(load_terms(TERMS))))
        record_coverage(s, "billing", [UsageCoverage(datetime(2026, 1, 1, tzinfo=UTC), NOW)])


def use(engine: Engine, calls: int, tag: str) -> None:
    """``calls`` January API calls reported to the metering system."""
    with Session(engine) as s, s.begin():
        ingest_usage(s, "billing", [UsageEventIn(f"e-{tag}", "cus_1", "api_calls", Decimal(calls),
                                                 datetime(2026, 1, 20, tzinfo=UTC), {}, f"h-{tag}")])


def invoice(engine: Engine, ext: str, amount: int, *, status: str = "paid") -> None:
    with Session(engine) as s, s.begin():
        inv = record_id("inv", "billing", ext)
        s.add(Invoice(id=inv, system="billing", external_id=ext, customer_external_id="cus_1", currency="USD",
                      status=status, issued_at=datetime(2026, 2, 2, tzinfo=UTC), total_minor=amount))
        s.add(InvoiceLine(invoice_id=inv, line_key="1", kind="usage", meter="api_calls", amount_minor=amount,
                          currency="USD", service_start=date(2026, 1, 1), service_end=date(2026, 1, 31)))


def actions(engine: Engine) -> list[tuple[int, str]]:
    with Session(engine) as s:
        return sorted((a.amount_minor, a.status) for a in s.exec(select(Action)).all())


def set_action(engine: Engine, amount: int, **fields: object) -> None:
    with Session(engine) as s, s.begin():
        (a,) = [a for a in s.exec(select(Action)).all() if a.amount_minor == amount]
        for k, v in fields.items():
            setattr(a, k, v)
        s.add(a)


def unbilled(engine: Engine) -> list[tuple[int, str]]:
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[UnbilledUsageRule()])
    return actions(engine)


# -------------------------------------------------------------------------- B: pending billing


def test_a_draft_correction_is_pending_billing_so_late_usage_plans_only_the_increment(engine: Engine) -> None:
    # 237 January calls, nothing invoiced: a 237.00 correction. subledger writes it as a
    # draft (Stripe's default). 100 late calls arrive: only 100.00 more is planned, so
    # 337.00 is billed in all (not 237.00 + 337.00 = 574.00).
    seed(engine)
    use(engine, 237, "a")
    assert unbilled(engine) == [(23700, "planned")]
    set_action(engine, 23700, status="done", external_id="in_draft")
    invoice(engine, "in_draft", 23700, status="draft")
    use(engine, 100, "late")
    assert unbilled(engine) == [(10000, "planned"), (23700, "done")]
    with Session(engine) as s:
        (f,) = s.exec(select(Finding).where(Finding.status == "open")).all()
    assert (f.amount_minor, f.details["pending_minor"]) == (33700, 23700)  # at stake until really billed


def test_an_in_flight_correction_is_pending_billing(engine: Engine) -> None:
    # An outage left the 237.00 correction in flight (its outcome unknown): late usage plans
    # only the 100.00 increment; the in-flight one is recovered by find-before-create.
    seed(engine)
    use(engine, 237, "a")
    unbilled(engine)
    set_action(engine, 23700, status="in_flight")
    use(engine, 100, "late")
    assert unbilled(engine) == [(10000, "planned"), (23700, "in_flight")]


def test_an_approved_correction_is_kept_while_the_gap_still_needs_it(engine: Engine) -> None:
    seed(engine)
    use(engine, 237, "a")
    unbilled(engine)
    set_action(engine, 23700, status="approved")
    use(engine, 100, "late")
    assert unbilled(engine) == [(10000, "planned"), (23700, "approved")]


def test_an_approved_correction_the_gap_no_longer_needs_is_superseded(engine: Engine) -> None:
    # Someone billed the 237.00 by hand before the approved correction was sent: it is
    # superseded, and nothing new is planned.
    seed(engine)
    use(engine, 237, "a")
    unbilled(engine)
    set_action(engine, 23700, status="approved")
    invoice(engine, "in_by_hand", 23700)
    assert unbilled(engine) == [(23700, "superseded")]


def test_someone_elses_draft_is_not_billing(engine: Engine) -> None:
    seed(engine)
    use(engine, 237, "a")
    invoice(engine, "in_their_draft", 23700, status="draft")
    assert unbilled(engine) == [(23700, "planned")]


# ------------------------------------------------------------------ A: never act on the unread


def test_an_erp_never_read_completely_is_not_judged(engine: Engine) -> None:
    # A first `subledger sync stripe`: the ERP has never been read, so its emptiness says
    # nothing. invoice_missing_from_erp is not covered: no finding, no invoice planned.
    seed(engine, erp_read=False)
    invoice(engine, "in_1", 5000)
    report = reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[InvoiceMissingFromErpRule()])
    assert [n.to_json() for n in report.rules_not_covered] == [{
        "rule": "invoice_missing_from_erp",
        "connections": {"erp": "has never been read completely: run `subledger sync erp`"},
        "message": "not covered: rule invoice_missing_from_erp was not judged (erp has never been read "
                   "completely: run `subledger sync erp`)",
    }]
    assert actions(engine) == []
    with Session(engine) as s:
        assert s.exec(select(Finding)).all() == []
    # Once the ERP has been read, the same invoice is judged missing and one copy is planned.
    with Session(engine) as s, s.begin():
        erp = s.get(Connection, "erp")
        assert erp is not None
        erp.last_complete_pull_at = READ
        s.add(erp)
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[InvoiceMissingFromErpRule()])
    with Session(engine) as s:
        assert [a.kind for a in s.exec(select(Action)).all()] == ["create_invoice"]


class InvoicesDown(MemoryConnector):
    """A billing system whose invoice API is down (every other stream answers)."""

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        if stream == "invoices":
            raise TransientError("billing answered 503 to GET /invoices", fix="retry when the vendor is back")
        yield from super().read(stream, state)


@pytest.fixture
def billing_outage() -> Iterator[None]:
    reset_memory_stores()
    with memory_connector(InvoicesDown):
        memory_store("billing").seed_example()
        yield
    reset_memory_stores()


def test_a_failed_pull_judges_nothing_from_that_connection_and_applies_nothing(
    engine: Engine, billing_outage: None
) -> None:
    config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
    with Session(engine) as s, s.begin():
        s.add(Connection(name="billing", plugin="memory", config=config_for_storage(config),
                         last_complete_pull_at=READ))
    report = sync(engine, ["billing"], trigger="t", settings=SyncSettings(), rules=[InvoiceMissingFromErpRule()])
    assert report.run.status == "failed"
    (failed,) = [s for p in report.pulls for s in p.failed]
    assert failed.stream == "invoices" and failed.kind == "transient"
    loaded = {s.stream: s.records for p in report.pulls for s in p.streams if s.error is None}
    assert loaded["customers"] > 0 and loaded["payments"] > 0  # the other streams were still read
    assert report.reconcile is not None
    assert [n.rule for n in report.reconcile.rules_not_covered] == ["invoice_missing_from_erp"]
    assert report.applied is None and actions(engine) == []
    assert any(e.get("stage") == "apply" for e in report.run.errors)


def test_a_vendor_record_with_a_nul_is_a_reject_and_the_rest_of_the_batch_loads(engine: Engine) -> None:
    # PostgreSQL cannot store a NUL in text: the one record becomes a reject naming the
    # field; the other customers of the page are stored.
    reset_memory_stores()
    with memory_connector():
        store = memory_store("billing").seed_example()
        store.update("customers", "cus_globex", name="Glo\x00bex")
        config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
        with Session(engine) as s, s.begin():
            s.add(Connection(name="billing", plugin="memory", config=config_for_storage(config)))
        from subledger.core.model import Reject
        from subledger.sync.pull import pull

        report = pull(engine, "billing", streams=["customers"])
    reset_memory_stores()
    (customers,) = report.streams
    assert (customers.rejected, customers.error) == (1, None)
    with Session(engine) as s:
        assert sorted(c.external_id for c in s.exec(select(Customer)).all()) == ["cus_acme", "cus_initech"]
        (reject,) = s.exec(select(Reject)).all()
        assert (reject.field, reject.location) == ("name", "customer cus_globex")
