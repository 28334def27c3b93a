"""Contract-derived obligations: the terms, rated on stored usage, drive recognition."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from revrec_data import add_invoice, balances, utc
from sqlmodel import Session, select

from subledger.core import model as M
from subledger.core.connector import UsageEventIn
from subledger.core.store.usage import ingest_usage
from subledger.sync.recognition import recognize


def hybrid_terms() -> dict:
    return {
        "currency": "USD", "start_date": "2026-01-01", "end_date": "2026-12-31",
        "billing": {"interval": "month", "anchor_day": 1},
        "components": [
            {"type": "flat_fee", "id": "platform", "amount": "1000.00"},
            {"type": "usage", "id": "api_calls", "meter": "api_calls",
             "allotment": {"quantity": 10000, "per": "period"},
             "price": {"model": "per_unit", "unit_price": "0.02"}},
        ],
    }


def add_usage(s: Session, points: list[tuple[date, int]], meter: str = "api_calls", customer: str = "cus_h") -> None:
    events = [UsageEventIn(f"{meter}-{d.isoformat()}-{q}", customer, meter, Decimal(q), utc(d.year, d.month, d.day),
                           {}, f"h{d.isoformat()}{q}") for d, q in points]
    ingest_usage(s, "meter", events)


def revenue_by_month(s: Session) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in s.exec(select(M.RevenueScheduleLine)).all():
        out[r.period] = out.get(r.period, 0) + r.amount_minor
    return dict(sorted(out.items()))


def test_hybrid_contract_fee_ratable_overage_as_incurred_unbilled_until_invoiced(session: Session) -> None:
    session.add(M.Contract(id="ctr_h", system="crm", external_id="H1", customer_external_id="cus_h",
                           currency="USD", start_date=date(2026, 1, 1), terms=hybrid_terms()))
    add_usage(session, [(date(2026, 1, 12), 8000), (date(2026, 2, 10), 6000), (date(2026, 2, 20), 6500),
                        (date(2026, 3, 5), 15000)])
    for month in (1, 2, 3):  # the platform fee is billed on the 1st, in advance
        add_invoice(session, f"fee_{month}", utc(2026, month, 1), [
            {"kind": "recurring", "component": "platform", "amount_minor": 100000,
             "service_start": date(2026, month, 1), "service_end": date(2026, month, 28)},
        ], contract="H1", customer="cus_h")
    add_invoice(session, "over_feb", utc(2026, 3, 1), [  # February overage, billed in arrears
        {"kind": "usage", "component": "api_calls", "meter": "api_calls", "amount_minor": 5000,
         "service_start": date(2026, 2, 1), "service_end": date(2026, 2, 28)},
    ], contract="H1", customer="cus_h")
    session.commit()
    result = recognize(session, through=date(2026, 3, 31))
    session.commit()
    assert result.warnings == []
    months = revenue_by_month(session)
    assert (months["2026-01"], months["2026-02"], months["2026-03"]) == (100000, 105000, 110000)
    march = balances(session, "2026-03")
    assert march["revenue"] == -(100000 + 105000 + 110000)
    # March overage (100.00) is earned but not yet invoiced: unbilled receivable.
    assert march["unbilled_receivable"] == 10000
    assert recognize(session, through=date(2026, 3, 31)).entries_posted == 0


COMMITMENT_TERMS = {
    "currency": "USD", "start_date": "2026-01-01", "end_date": "2026-03-31",
    "billing": {"interval": "month", "anchor_day": 1},
    "components": [{"type": "usage", "id": "units", "meter": "units",
                    "price": {"model": "per_unit", "unit_price": "1.00"}}],
    "commitments": [{"id": "q1-minimum", "kind": "minimum", "amount": "9000.00", "per": "term"}],
}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"commitment": "ratable_minimum"}, (310000, 280000, 310000)),
        ({"commitment": "scaled_consumption", "expected_usage": "6000.00"}, (300000, 450000, 150000)),
        ({"commitment": "shortfall_at_end"}, (200000, 300000, 400000)),
    ],
)
def test_commitment_policies_on_a_contract(session: Session, policy: dict, expected: tuple[int, int, int]) -> None:
    session.add(M.Contract(id="ctr_m", system="crm", external_id="MIN", customer_external_id="cus_m",
                           currency="USD", start_date=date(2026, 1, 1),
                           terms={**COMMITMENT_TERMS, "revenue_recognition": policy}))
    add_usage(session, [(date(2026, 1, 20), 2000), (date(2026, 2, 20), 3000), (date(2026, 3, 20), 1000)],
              meter="units", customer="cus_m")
    session.commit()
    result = recognize(session, through=date(2026, 3, 31))
    session.commit()
    assert result.warnings == []
    months = revenue_by_month(session)
    assert (months.get("2026-01", 0), months.get("2026-02", 0), months.get("2026-03", 0)) == expected
    assert sum(months.values()) == 900000


def test_terms_the_rating_engine_rejects_fall_back_to_invoices(session: Session) -> None:
    session.add(M.Contract(id="ctr_bad", system="crm", external_id="BAD", customer_external_id="cus_b",
                           currency="USD", start_date=date(2026, 1, 1),
                           terms={"currency": "USD", "start_date": "2026-01-01",
                                  "components": [{"type": "flat_fee", "id": "x", "amount": "-5"}]}))
    add_invoice(session, "in_b", utc(2026, 1, 1), [{"kind": "other", "amount_minor": 700}], contract="BAD",
                customer="cus_b")
    session.commit()
    result = recognize(session, through=date(2026, 1, 31))
    assert any("contract crm/BAD" in w and "invoices only" in w for w in result.warnings)
    assert balances(session)["revenue"] == -700
