"""The contract read model: which line pays which term, what is judged, and as of when.

Every store below has one contract system ``crm``, one billing system ``billing`` and one
usage system ``meter``; the customer is ``acme`` in the CRM, ``cus_1`` in billing and
``m_1`` in metering, tied together by the identity map.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.connector import UsageCoverage, UsageEventIn
from subledger.core.model import Contract, CreditNote, ExternalRef, Invoice, InvoiceLine, record_id
from subledger.core.store.coverage import record_coverage
from subledger.core.store.usage import ingest_usage
from subledger.core.terms import load_terms, terms_to_document
from subledger.sync.contracts import ContractReadModel, Roles

ROLES = Roles(contract_systems=("crm",), billing_systems=("billing",), usage_system="meter")
AS_OF = datetime(2026, 5, 1, tzinfo=UTC)


def at(month: int, day: int = 1) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC)


def add_contract(s: Session, ext: str, terms: dict[str, Any], customer: str = "acme") -> None:
    t = load_terms(terms)
    s.add(Contract(id=record_id("con", "crm", ext), system="crm", external_id=ext, customer_external_id=customer,
                   currency=t.currency, start_date=t.start_date, end_date=t.end_date,
                   terms=terms_to_document(t)))


def link(s: Session, **ids: str) -> None:
    """``link(s, crm="acme", billing="cus_1", meter="m_1")``: one canonical customer (the CRM id)."""
    for system, ext in ids.items():
        s.add(ExternalRef(entity_type="customer", canonical_id=ids["crm"], system=system, object_type="customer",
                          external_id=ext, method="source" if system == "crm" else "explicit"))


def add_invoice(s: Session, ext: str, issued: datetime, lines: list[dict[str, Any]], contract: str | None = None,
                customer: str = "cus_1") -> None:
    inv_id = record_id("inv", "billing", ext)
    s.add(Invoice(id=inv_id, system="billing", external_id=ext, customer_external_id=customer,
                  contract_external_id=contract, currency="USD", status="paid", issued_at=issued,
                  total_minor=sum(ln["amount_minor"] for ln in lines)))
    for n, ln in enumerate(lines):
        s.add(InvoiceLine(invoice_id=inv_id, line_key=str(n), currency="USD", **ln))


def usage(s: Session, points: list[tuple[datetime, int]], meter: str = "api_calls") -> None:
    ingest_usage(s, "meter", [UsageEventIn(f"e{i}", "m_1", meter, Decimal(q), when, {}, f"h{i}")
                              for i, (when, q) in enumerate(points)])


HYBRID = {
    "currency": "USD", "start_date": "2026-01-01", "end_date": "2026-12-31", "billing": {"interval": "month"},
    "components": [
        {"type": "flat_fee", "id": "platform", "amount": "100.00"},
        {"type": "usage", "id": "api", "meter": "api_calls", "price": {"model": "per_unit", "unit_price": "0.01"}},
    ],
}


def charges(model: ContractReadModel, ext: str, month: int) -> dict[str, tuple[int, int]]:
    (view,) = [v for v in model.views() if v.contract.external_id == ext]
    (pv,) = [p for p in view.periods if p.period.start == date(2026, month, 1)]
    assert view.plan is not None
    return {k: (c.expected_minor, c.invoiced_minor) for k, c in pv.charges(view.plan).items()}


def test_a_credit_note_line_naming_a_component_credits_that_components_lines(engine: Engine) -> None:
    # January: 1,000 calls x 0.01 = 10.00 of usage and the 100.00 fee, invoiced 110.00. A
    # 10.00 credit note on the api line leaves usage invoiced at 0.00 and the fee untouched.
    with Session(engine) as s, s.begin():
        add_contract(s, "acme-2026", HYBRID)
        link(s, crm="acme", billing="cus_1", meter="m_1")
        record_coverage(s, "meter", [UsageCoverage(at(1), AS_OF)])
        usage(s, [(at(1, 10), 1000)])
        add_invoice(s, "in_1", at(2), [
            {"kind": "recurring", "component": "platform", "amount_minor": 10000, "service_start": date(2026, 1, 1)},
            {"kind": "usage", "component": "api", "meter": "api_calls", "amount_minor": 1000,
             "service_start": date(2026, 1, 1)},
        ])
        s.add(CreditNote(id="cn", system="billing", external_id="cn_1", customer_external_id="cus_1",
                         invoice_external_id="in_1", currency="USD", total_minor=1000, issued_at=at(2, 5),
                         lines=[{"kind": "other", "component": "api", "amount_minor": 1000}]))
    with Session(engine) as s:
        assert charges(ContractReadModel(s, ROLES, as_of=AS_OF), "acme-2026", 1) == {
            "flat_fee": (10000, 10000), "usage:api_calls": (1000, 0)}
        # As of a day before the credit note, the usage was still billed in full.
        assert charges(ContractReadModel(s, ROLES, as_of=at(2, 4)), "acme-2026", 1)["usage:api_calls"] == (1000, 1000)


def test_an_arrears_fee_is_placed_on_the_period_that_bills_it(engine: Engine) -> None:
    # A quarterly fee billed in arrears starts in January but is billed in March's period.
    terms = {**HYBRID, "components": [
        {"type": "flat_fee", "id": "support", "amount": "300.00", "cadence": {"interval": "quarter"},
         "timing": "arrears"}]}
    with Session(engine) as s, s.begin():
        add_contract(s, "acme-2026", terms)
        link(s, crm="acme", billing="cus_1", meter="m_1")
        add_invoice(s, "in_q1", at(4), [{"kind": "recurring", "amount_minor": 30000,
                                         "service_start": date(2026, 1, 1), "service_end": date(2026, 3, 31)}])
    with Session(engine) as s:
        model = ContractReadModel(s, ROLES, as_of=AS_OF)
        assert charges(model, "acme-2026", 3) == {"flat_fee": (30000, 30000)}
        assert charges(model, "acme-2026", 1) == {}


def test_a_line_two_contracts_could_bill_is_unmatched_with_the_fix(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        add_contract(s, "acme-a", HYBRID)
        add_contract(s, "acme-b", HYBRID)
        link(s, crm="acme", billing="cus_1", meter="m_1")
        add_invoice(s, "in_1", at(2), [{"kind": "usage", "meter": "api_calls", "amount_minor": 500,
                                        "service_start": date(2026, 1, 1)}])
        add_invoice(s, "in_2", at(2), [{"kind": "usage", "meter": "api_calls", "amount_minor": 700,
                                        "service_start": date(2026, 1, 1)}], contract="acme-b")
        add_invoice(s, "in_3", at(2), [{"kind": "usage", "meter": "storage_gb", "amount_minor": 900,
                                        "service_start": date(2026, 1, 1)}])
    with Session(engine) as s:
        model = ContractReadModel(s, ROLES, as_of=AS_OF)
        reasons = {ln.invoice: (ln.reason, ln.fix) for ln in model.unplaced()}
        assert charges(model, "acme-b", 1)["usage:api_calls"][1] == 700  # in_2 names its contract
    assert reasons == {
        "in_1": ("contracts acme-a, acme-b all bill this line", "name the contract on the invoice"),
        "in_3": ("the line (kind 'usage', component None, meter 'storage_gb') is not a charge of contract acme-a",
                 "give the line the contract component it bills (component), or its kind and meter"),
    }


def test_a_gap_in_usage_leaves_its_period_and_the_periods_that_carry_its_state_unjudged(engine: Engine) -> None:
    # Usage was read from February on. A rollover allotment carries January's unused units
    # into every later month, so none of them can be judged; the plain contract's months
    # from February on can.
    rollover = {**HYBRID, "components": [
        {"type": "usage", "id": "api", "meter": "api_calls", "allotment": {"quantity": 1000, "rollover": True},
         "price": {"model": "per_unit", "unit_price": "0.01"}}]}
    with Session(engine) as s, s.begin():
        add_contract(s, "acme-plain", HYBRID)
        add_contract(s, "beta-rollover", rollover, customer="beta")
        link(s, crm="acme", billing="cus_1", meter="m_1")
        link(s, crm="beta", billing="cus_2", meter="m_2")
        record_coverage(s, "meter", [UsageCoverage(at(2), AS_OF)])
    with Session(engine) as s:
        model = ContractReadModel(s, ROLES, as_of=AS_OF)
        judged = {v.contract.external_id: [f"{p.period.start:%m}" for p in v.periods if p.judged]
                  for v in model.views()}
        gaps = model.not_covered()
    assert judged == {"acme-plain": ["02", "03", "04"], "beta-rollover": []}
    assert [(g.gap, len(g.periods)) for g in gaps] == [(at(1), 5)]  # 1 + 4 periods, all from January
    assert gaps[0].text().startswith("not covered: pull usage from 2026-01-01 (meter): 5 ended period(s)")


def test_usage_and_invoices_after_the_as_of_instant_are_not_seen(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        add_contract(s, "acme-2026", HYBRID)
        link(s, crm="acme", billing="cus_1", meter="m_1")
        record_coverage(s, "meter", [UsageCoverage(at(1), at(6))])
        usage(s, [(at(4, 10), 1000), (at(4, 20), 3000)])
        add_invoice(s, "in_apr", at(5, 1), [{"kind": "usage", "meter": "api_calls", "amount_minor": 4000,
                                            "service_start": date(2026, 4, 1)}])
    with Session(engine) as s:
        on_15th = ContractReadModel(s, ROLES, as_of=at(4, 15))
        (view,) = on_15th.views()
        april = view.current(at(4, 15))
        assert april is not None and not april.ended
        assert [ln.amount for ln in april.rating.lines if ln.kind == "usage"] == [1000]
        assert april.lines == []  # in_apr was issued on 1 May
        assert charges(ContractReadModel(s, ROLES, as_of=AS_OF), "acme-2026", 4)["usage:api_calls"] == (4000, 4000)
