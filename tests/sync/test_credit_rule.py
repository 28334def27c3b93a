"""expired_credit_unrecognized: prepaid credit that expired unused is breakage revenue, and must be booked.

Worked example: a customer prepaid 600.00 of credit on 1 January 2026, usable until
1 April. It drew 250.00 in February and 200.00 in March, so 150.00 expired unused.
Until revenue recognition books 150.00 of breakage, the rule reports 150.00.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.model import Connection, CreditGrant, CreditLedgerEntry, Finding, JournalEntry, JournalLine
from subledger.core.model.base import evidence_ref
from subledger.core.revrec.run import run_recognition
from subledger.core.revrec.sources import SourceScope
from subledger.sync.engine import reconcile
from subledger.sync.rules.credits import ExpiredCreditUnrecognizedRule
from subledger.sync.settings import SyncSettings

# The data below is put in the store by hand: its connections count as read completely.
READ = datetime(2000, 1, 1, tzinfo=UTC)

SETTINGS = SyncSettings(roles={"stripe": ["billing"]})
NOW = datetime(2026, 5, 15, tzinfo=UTC)


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def _grant(gid: str, *, category: str = "paid", expires: datetime | None = at(2026, 4, 1)) -> CreditGrant:
    return CreditGrant(id=f"cg_{gid}", system="stripe", external_id=gid, customer_external_id="cus_1",
                       category=category, currency="USD", amount_minor=60000, effective_at=at(2026, 1, 1),
                       expires_at=expires, cost_basis=1 if category == "paid" else 0)


def _entry(gid: str, n: int, kind: str, minor: int, when: datetime) -> CreditLedgerEntry:
    return CreditLedgerEntry(entry_key=f"stripe:{gid}:{n}", grant_id=f"cg_{gid}", kind=kind, amount_minor=minor,
                             currency="USD", occurred_at=when,
                             evidence=[evidence_ref("stripe", "credit_balance_transaction", f"cbtxn_{n}")])


def _seed(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.add(Connection(name="stripe", plugin="memory", config={}, last_complete_pull_at=READ))
        for gid, category, expires in (("credgr_a", "paid", at(2026, 4, 1)),
                                       ("credgr_promo", "promotional", at(2026, 4, 1)),
                                       ("credgr_live", "paid", at(2026, 12, 1)),
                                       ("credgr_noledger", "paid", at(2026, 4, 1))):
            s.add(_grant(gid, category=category, expires=expires))
        s.flush()
        for gid in ("credgr_a", "credgr_promo", "credgr_live"):
            s.add(_entry(gid, 1, "grant", 60000, at(2026, 1, 1)))
            s.add(_entry(gid, 2, "draw_down", -25000, at(2026, 2, 1)))
            s.add(_entry(gid, 3, "draw_down", -20000, at(2026, 3, 1)))
            s.add(_entry(gid, 4, "expiry", -15000, at(2026, 4, 1)))


def _open(engine: Engine) -> list[Finding]:
    with Session(engine) as s:
        return list(s.exec(select(Finding).where(Finding.rule == "expired_credit_unrecognized",
                                                 Finding.status == "open")).all())


def _book_breakage(engine: Engine, n: int, minor: int) -> None:
    with Session(engine) as s, s.begin():
        s.add(JournalEntry(id=f"je_b{n}", external_id=f"sl-b{n}", entry_date=date(2026, 4, 30), period="2026-04",
                           currency="USD", kind="recognition"))
        s.add(JournalLine(entry_id=f"je_b{n}", line_no=1, role="contract_liability", account="2100",
                          debit_minor=minor, currency="USD"))
        s.add(JournalLine(entry_id=f"je_b{n}", line_no=2, role="breakage_revenue", account="4900",
                          credit_minor=minor, currency="USD", obligation_key="credit_grant:stripe:credgr_a"))


def test_the_unused_balance_of_an_expired_paid_grant_is_reported_until_its_breakage_is_booked(
    engine: Engine,
) -> None:
    _seed(engine)
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[ExpiredCreditUnrecognizedRule()])
    [finding] = _open(engine)
    # 600.00 - 250.00 - 200.00 = 150.00; the promotional, unexpired and ledger-less grants are not reported.
    assert (finding.key, finding.amount_minor, finding.currency) == ("stripe:credgr_a", 15000, "USD")
    assert finding.period_start == date(2026, 4, 1)
    assert finding.details["unused_minor"] == 15000
    assert {"system": "stripe", "object": "credit_grant", "id": "credgr_a"} in finding.evidence
    assert {"system": "stripe", "object": "credit_balance_transaction", "id": "cbtxn_4"} in finding.evidence

    _book_breakage(engine, 1, 10000)  # 100.00 booked: 50.00 still missing
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[ExpiredCreditUnrecognizedRule()])
    assert [f.amount_minor for f in _open(engine)] == [5000]

    _book_breakage(engine, 2, 5000)
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[ExpiredCreditUnrecognizedRule()])
    assert _open(engine) == []


def test_a_draw_down_after_the_expiry_does_not_reduce_what_expired(engine: Engine) -> None:
    _seed(engine)
    with Session(engine) as s, s.begin():
        s.add(_entry("credgr_a", 5, "draw_down", -7500, at(2026, 4, 15)))
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[ExpiredCreditUnrecognizedRule()])
    assert [f.amount_minor for f in _open(engine)] == [15000]


def test_revenue_recognition_books_the_breakage_and_the_finding_resolves(engine: Engine) -> None:
    _seed(engine)
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[ExpiredCreditUnrecognizedRule()])
    assert [f.amount_minor for f in _open(engine)] == [15000]
    with Session(engine) as s, s.begin():
        run_recognition(s, through=date(2026, 4, 30), scope=SourceScope(billing_systems=("stripe",)))
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[ExpiredCreditUnrecognizedRule()])
    assert _open(engine) == []
