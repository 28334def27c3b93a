"""run_recognition on the store: idempotent, closing freezes periods, late data, sources."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from revrec_data import add_invoice, balances, seed_annual, utc
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core import model as M
from subledger.core.connector import UsageEventIn
from subledger.core.model.base import ImmutableRecordError
from subledger.core.revrec import reports
from subledger.core.revrec.calendar import Month
from subledger.core.revrec.chart import waterfall_svg
from subledger.core.revrec.ledger import close_period, closed_through
from subledger.core.revrec.run import run_recognition
from subledger.core.store.usage import ingest_usage

_utc = utc


def test_annual_subscription_through_march(session: Session) -> None:
    seed_annual(session)
    result = run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    assert result.to_json()["entries_by_kind"] == {"invoice": 1, "payment": 1, "recognition": 3}
    assert balances(session) == {
        "cash": 40150, "tax_liability": -3650, "contract_liability": -(36500 - 9000), "revenue": -9000,
    }
    jan = balances(session, "2019-01")
    assert (jan["revenue"], jan["contract_liability"]) == (-3100, -33400)
    schedule = session.exec(select(M.RevenueScheduleLine)).all()
    assert len(schedule) == 12 and sum(r.amount_minor for r in schedule) == 36500
    lines = session.exec(select(M.JournalLine)).all()
    assert all(ln.evidence for ln in lines)
    assert any({"system": "stripe", "object": "invoice", "id": "in_365"} in ln.evidence for ln in lines)


def test_rerunning_posts_nothing_new(session: Session) -> None:
    seed_annual(session)
    run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    before = {e.external_id for e in session.exec(select(M.JournalEntry)).all()}
    again = run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    assert again.entries_posted == 0 and again.schedule_changes == 0
    assert {e.external_id for e in session.exec(select(M.JournalEntry)).all()} == before


def test_closing_freezes_a_period_and_late_data_posts_in_the_first_open_one(session: Session) -> None:
    seed_annual(session)
    run_recognition(session, through=date(2019, 3, 31))
    assert close_period(session, Month(2019, 2), today=date(2019, 4, 2)) == [Month(2019, 1), Month(2019, 2)]
    session.commit()
    frozen = sorted((e.external_id, e.period) for e in session.exec(select(M.JournalEntry)).all()
                    if e.period <= "2019-02")
    # A one-off January charge arrives late, after January is closed.
    add_invoice(session, "in_late", _utc(2019, 1, 20), [{"kind": "other", "amount_minor": 5000}])
    session.commit()
    result = run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    assert result.entries_posted > 0 and all(p.period == Month(2019, 3) for p in result.postings)
    assert sorted((e.external_id, e.period) for e in session.exec(select(M.JournalEntry)).all()
                  if e.period <= "2019-02") == frozen
    assert balances(session)["revenue"] == -(9000 + 5000)
    assert run_recognition(session, through=date(2019, 3, 31)).entries_posted == 0
    assert closed_through(session) == Month(2019, 2)


def test_the_store_refuses_entries_in_a_closed_period_and_edits_of_posted_ones(
    session: Session, engine: Engine
) -> None:
    seed_annual(session)
    run_recognition(session, through=date(2019, 1, 31))
    close_period(session, Month(2019, 1), today=date(2019, 2, 1))
    session.commit()
    session.add(M.JournalEntry(id="je_x", external_id="manual", entry_date=date(2019, 1, 9), period="2019-01",
                               currency="USD"))
    with pytest.raises(M.ClosedPeriodError, match="closed"):
        session.flush()
    session.rollback()
    entry = session.exec(select(M.JournalEntry)).first()
    assert entry is not None
    entry.memo = "edited"
    session.add(entry)
    with pytest.raises(ImmutableRecordError):
        session.flush()
    session.rollback()


def test_closing_the_future_is_refused(session: Session) -> None:
    from subledger.core.errors import ConfigError

    with pytest.raises(ConfigError, match="has not started"):
        close_period(session, Month(2030, 1), today=date(2026, 3, 5))


def test_a_voided_invoice_is_reversed(session: Session) -> None:
    seed_annual(session)
    run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    inv = session.get(M.Invoice, "inv_in_365")
    assert inv is not None
    inv.status = "void"
    session.add(inv)
    session.commit()
    result = run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    assert result.reversals == 4  # the invoice and three months of recognition
    assert set(balances(session)) == {"cash", "accounts_receivable"}  # the cash now sits against AR


def test_usage_line_is_recognized_in_the_months_the_usage_occurred(session: Session) -> None:
    session.add(M.Meter(id="m1", system="files", external_id="api_calls", key="api_calls"))
    ingest_usage(session, "files", [
        UsageEventIn("e1", "cus_1", "api_calls", Decimal(600), _utc(2026, 1, 20), {}, "h1"),
        UsageEventIn("e2", "cus_1", "api_calls", Decimal(400), _utc(2026, 2, 3), {}, "h2"),
    ])
    add_invoice(session, "in_use", _utc(2026, 2, 15), [
        {"kind": "usage", "meter": "api_calls", "component": "api_calls", "amount_minor": 5000,
         "service_start": date(2026, 1, 15), "service_end": date(2026, 2, 14)},
    ], contract=None)
    session.commit()
    run_recognition(session, through=date(2026, 2, 28))
    session.commit()
    jan = balances(session, "2026-01")
    assert jan == {"revenue": -3000, "unbilled_receivable": 3000}  # earned in January, invoiced in February
    assert balances(session) == {"revenue": -5000, "accounts_receivable": 5000}


def test_credit_note_discount_and_promotional_credit(session: Session) -> None:
    add_invoice(session, "in_q", _utc(2026, 1, 1), [
        {"kind": "recurring", "component": "seats", "amount_minor": 9000,
         "service_start": date(2026, 1, 1), "service_end": date(2026, 3, 31)},
        {"kind": "discount", "component": "seats", "amount_minor": -900},
        {"kind": "credit", "amount_minor": -100},
    ], contract=None)
    session.add(M.CreditNote(id="cn_1", system="stripe", external_id="cn_1", customer_external_id="cus_1",
                             invoice_external_id="in_q", currency="USD", total_minor=8000,
                             issued_at=_utc(2026, 2, 1)))
    session.commit()
    run_recognition(session, through=date(2026, 3, 31))
    session.commit()
    b = balances(session)
    # Net price 8,000 (9,000 - 900 discount - 100 promotional), fully credited on Feb 1:
    # what January had earned goes to refunds contra, the rest never reaches revenue.
    assert b.get("contract_liability", 0) == 0 and b.get("unbilled_receivable", 0) == 0
    assert b.get("accounts_receivable", 0) == 0
    net_revenue = sum(v for k, v in b.items() if k in reports.REVENUE_ROLES)
    assert net_revenue == 0
    assert b["discounts_contra"] > 0 and b["promotional_contra"] > 0 and b["refunds_contra"] > 0


def test_prepaid_credit_grant_with_purchase_invoice_draw_downs_and_breakage(session: Session) -> None:
    session.add(M.Contract(id="ctr_c", system="crm", external_id="CC", customer_external_id="cus_2",
                           currency="USD", start_date=date(2026, 1, 1),
                           terms={"revenue_recognition": {"breakage": "remote"}}))
    session.add(M.CreditGrant(id="g1", system="metronome", external_id="grant_1", customer_external_id="cus_2",
                              contract_external_id="CC", currency="USD", amount_minor=1000000,
                              effective_at=_utc(2026, 1, 1), expires_at=_utc(2027, 1, 1)))
    session.flush()
    for i, (when, amount) in enumerate([(_utc(2026, 3, 31), 270000), (_utc(2026, 6, 30), 225000),
                                        (_utc(2026, 9, 30), 180000), (_utc(2026, 12, 15), 175000)]):
        session.add(M.CreditLedgerEntry(entry_key=f"dd{i}", grant_id="g1", kind="draw_down",
                                        amount_minor=-amount, currency="USD", occurred_at=when))
    add_invoice(session, "in_credits", _utc(2026, 1, 1), [
        {"kind": "other", "amount_minor": 1000000, "evidence": [{"object": "credit_grant", "id": "grant_1"}]},
    ], contract="CC", customer="cus_2")
    session.commit()
    result = run_recognition(session, through=date(2027, 1, 31))
    session.commit()
    assert result.warnings == []
    b = balances(session)
    assert (b["revenue"], b["breakage_revenue"]) == (-850000, -150000)
    assert b.get("contract_liability", 0) == 0
    assert balances(session, "2026-12")["contract_liability"] == -150000


def test_a_grant_without_a_purchase_invoice_is_reported(session: Session) -> None:
    session.add(M.CreditGrant(id="g2", system="metronome", external_id="grant_2", customer_external_id="cus_3",
                              currency="USD", amount_minor=5000, effective_at=_utc(2026, 1, 1)))
    session.commit()
    result = run_recognition(session, through=date(2026, 1, 31))
    assert any("no purchase invoice" in w for w in result.warnings)


def test_reports_render_as_table_csv_json_and_svg(session: Session) -> None:
    seed_annual(session)
    run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    wf = reports.waterfall(session, by="contract")
    assert wf.meta["recognized_through"] == "2019-03"
    assert wf.rows == [["ctr_1", "USD", *["31.00", "28.00", "31.00", "30.00", "31.00", "30.00", "31.00", "31.00",
                                          "30.00", "31.00", "30.00", "31.00"], "365.00"]]
    assert wf.to_csv().splitlines()[0].startswith("contract,currency,2019-01")
    assert wf.to_json()["rows"][0]["total"] == "365.00"
    svg = waterfall_svg(wf)
    assert svg.startswith("<svg") and "ctr_1" in svg and svg.count("<rect") >= 13
    roll = reports.rollforward(session)
    march = next(r for r in roll.rows if r[0] == "contract_liability" and r[2] == "2019-03")
    assert march[3:] == ["306.00", "0.00", "-31.00", "0.00", "0.00", "275.00"]
    pos = reports.positions(session)
    assert pos.rows == [["cus_1", "ctr_1", "USD", "0.00", "275.00", "0.00", "275.00"]]
    rev = reports.revenue(session, by="product")
    assert rev.rows == [["platform", "USD", "31.00", "28.00", "31.00", "90.00"]]
    journal = reports.journal_entries_json(session)
    assert all(e["external_id"] for e in journal) and journal[0]["lines"]
    assert len(reports.journal_rows(session).rows) == sum(len(e["lines"]) for e in journal)


def test_contract_asset_and_liability_are_netted_per_contract(session: Session) -> None:
    # One contract: an annual fee billed up front (liability) and usage not yet invoiced (asset).
    seed_annual(session)
    session.add(M.Meter(id="m1", system="files", external_id="api_calls", key="api_calls"))
    add_invoice(session, "in_usage", _utc(2019, 4, 1), [
        {"kind": "usage", "meter": "api_calls", "amount_minor": 2000,
         "service_start": date(2019, 3, 1), "service_end": date(2019, 3, 31)},
    ])
    session.commit()
    run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    # March usage (invoiced in April) is unbilled receivable at March 31, beside 275.00 of
    # deferred platform fee: presented net, as a 255.00 contract liability.
    row = reports.positions(session).rows[0]
    assert row[3:] == ["20.00", "275.00", "0.00", "255.00"]
    run_recognition(session, through=date(2019, 4, 30))
    session.commit()
    row = reports.positions(session).rows[0]
    assert row[3:] == ["0.00", "245.00", "0.00", "245.00"]  # the April invoice moved usage to AR
