"""Reports of closed periods come from the journal (issue 15, Deliver 13).

The revenue schedule is rewritten by every run; the journal never changes. The waterfall
shows closed months as posted, a restatement as an adjustment in the first open month,
and agrees with the journal-based revenue report on every recognized month.
"""

from __future__ import annotations

from datetime import date

from revrec_data import add_invoice, seed_annual, utc
from sqlmodel import Session, select

from subledger.core import model as M
from subledger.core.revrec import reports
from subledger.core.revrec.calendar import Month
from subledger.core.revrec.ledger import close_period
from subledger.core.revrec.run import run_recognition

MONTHS = ("2019-01", "2019-02", "2019-03")


def rows(report: reports.Report) -> dict[str, dict[str, str]]:
    return {r[0]: dict(zip(report.columns, r, strict=True)) for r in report.rows}


def agree(session: Session, by: str = "contract") -> None:
    """Waterfall == revenue report, per group and month, on every month the journal holds."""
    wf, rev = rows(reports.waterfall(session, by=by)), rows(reports.revenue(session, by=by))
    assert rev, "nothing posted"
    for group, posted in rev.items():
        for month in (c for c in posted if c[:2] == "20"):
            assert wf[group][month] == posted[month], (by, group, month)


def scheduled(session: Session, month: str) -> int:
    return sum(r.amount_minor for r in session.exec(select(M.RevenueScheduleLine)).all() if r.period == month)


def test_a_closed_month_stays_as_posted_and_its_restatement_shows_in_the_open_month(session: Session) -> None:
    seed_annual(session)
    run_recognition(session, through=date(2019, 3, 31))
    close_period(session, Month(2019, 1), today=date(2019, 2, 2))
    session.commit()
    before = rows(reports.waterfall(session))["ctr_1"]
    assert [before[m] for m in MONTHS] == ["31.00", "28.00", "31.00"] and before["total"] == "365.00"
    agree(session)

    # A one-off January charge arrives after January is closed: January would restate.
    add_invoice(session, "in_late", utc(2019, 1, 20), [{"kind": "other", "amount_minor": 5000}])
    session.commit()
    result = run_recognition(session, through=date(2019, 3, 31))
    session.commit()
    assert result.late > 0 and all(p.period == Month(2019, 2) for p in result.postings)
    assert scheduled(session, "2019-01") == 3100 + 5000  # the schedule restates January...

    wf = reports.waterfall(session)
    after = rows(wf)["ctr_1"]
    assert after["2019-01"] == "31.00"  # ...the waterfall does not: January is closed
    assert after["2019-02"] == "78.00"  # 28.00 + the 50.00 adjustment, posted in February
    assert (after["2019-03"], after["total"]) == ("31.00", "415.00")
    assert wf.meta["closed_through"] == "2019-01" and "closed through 2019-01" in wf.title
    for by in ("contract", "customer", "product", "obligation"):
        agree(session, by)
    revenue = rows(reports.revenue(session, by="contract"))["ctr_1"]
    assert [revenue[m] for m in MONTHS] == ["31.00", "78.00", "31.00"]

    # Recognized to the end of the term, the two reports agree on every month and in total.
    run_recognition(session, through=date(2019, 12, 31))
    session.commit()
    agree(session)
    full, revenue = rows(reports.waterfall(session))["ctr_1"], rows(reports.revenue(session))["cus_1"]
    assert full["2019-01"] == "31.00" and full["total"] == revenue["total"] == "415.00"


def test_a_restatement_not_posted_yet_shows_in_the_first_open_month(session: Session) -> None:
    """A run through an earlier day rewrites the schedule but posts nothing for January's
    end: the closed month still shows what was posted, the difference waits in February."""
    seed_annual(session)
    run_recognition(session, through=date(2019, 2, 28))
    close_period(session, Month(2019, 1), today=date(2019, 2, 2))
    session.commit()
    add_invoice(session, "in_late", utc(2019, 1, 20), [{"kind": "other", "amount_minor": 5000}])
    session.commit()
    assert run_recognition(session, through=date(2019, 1, 10)).entries_posted == 0
    session.commit()
    row = rows(reports.waterfall(session))["ctr_1"]
    assert (row["2019-01"], row["2019-02"], row["total"]) == ("31.00", "78.00", "415.00")
    revenue = rows(reports.revenue(session, by="contract"))["ctr_1"]
    assert (revenue["2019-01"], revenue["2019-02"]) == ("31.00", "28.00")  # not posted yet
    run_recognition(session, through=date(2019, 2, 28))  # the next run posts it, in February
    session.commit()
    agree(session)
    assert rows(reports.waterfall(session))["ctr_1"]["2019-02"] == "78.00"


def test_a_month_recognized_part_way_adds_the_rest_of_its_schedule(session: Session) -> None:
    seed_annual(session)
    run_recognition(session, through=date(2019, 3, 15))
    session.commit()
    row = rows(reports.waterfall(session))["ctr_1"]
    assert (row["2019-03"], row["2019-04"], row["total"]) == ("31.00", "30.00", "365.00")
    assert rows(reports.revenue(session, by="contract"))["ctr_1"]["2019-03"] == "15.00"
