"""The database keeps the ledger's invariants, whatever code or SQL tries to break them.

Issue 15, failure D and Deliver 9: every attempt below (raw SQL, ORM bulk statements,
``session.add`` of a line into a posted entry, and on PostgreSQL concurrent writers) is
refused by the database with an error naming the invariant (docs/architecture.md,
"Invariants"), and the ledger is unchanged afterwards. The legitimate paths (posting,
closing, late data, reversals, ingest) still work on a guarded store.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, select

from subledger.core import model as M
from subledger.core.connector import UsageEventIn
from subledger.core.revrec import reports
from subledger.core.revrec.calendar import Month
from subledger.core.revrec.ledger import close_period, entry_id
from subledger.core.revrec.run import run_recognition
from subledger.core.store.migrate import install_ledger_invariants, upgrade
from subledger.core.store.usage import ingest_usage

LEDGER = (M.UsageEvent, M.CreditLedgerEntry, M.JournalEntry, M.JournalLine, M.AccountingPeriod)
APPEND_ONLY = "ledger_append_only"
BALANCES = "journal_entry_balances"
SEALED = "journal_entry_sealed"
FROZEN = "closed_period_frozen"
FINAL = "closed_period_final"


def utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


@pytest.fixture
def ledger(engine: Engine) -> Engine:
    """A guarded store: an annual contract recognized through March 2019, January closed,
    two usage events and a credit grant's ledger."""
    install_ledger_invariants(engine)
    with Session(engine, expire_on_commit=False) as s:
        s.add(M.Contract(id="ctr_1", system="crm", external_id="C1", customer_external_id="cus_1",
                         currency="USD", start_date=date(2019, 1, 1)))
        s.add(M.Invoice(id="inv_1", system="stripe", external_id="in_365", customer_external_id="cus_1",
                        contract_external_id="C1", currency="USD", issued_at=utc(2019, 1, 1), status="open",
                        total_minor=36500))
        s.flush()
        s.add(M.InvoiceLine(invoice_id="inv_1", line_key="1", currency="USD", kind="recurring",
                            component="platform", amount_minor=36500, service_start=date(2019, 1, 1),
                            service_end=date(2019, 12, 31)))
        s.add(M.CreditGrant(id="g1", system="stripe", external_id="grant_1", customer_external_id="cus_1",
                            currency="USD", amount_minor=5000, effective_at=utc(2019, 1, 1)))
        s.flush()
        s.add(M.CreditLedgerEntry(entry_key="g1:grant", grant_id="g1", kind="grant", amount_minor=5000,
                                  currency="USD", occurred_at=utc(2019, 1, 1)))
        ingest_usage(s, "files", [
            UsageEventIn("e1", "cus_1", "api_calls", Decimal(600), utc(2019, 1, 20), {}, "h1"),
            UsageEventIn("e2", "cus_1", "api_calls", Decimal(400), utc(2019, 2, 3), {}, "h2"),
        ])
        s.commit()
        run_recognition(s, through=date(2019, 3, 31))
        close_period(s, Month(2019, 1), today=date(2019, 2, 2))
        s.commit()
    return engine


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {m.__tablename__: sorted(map(tuple, conn.execute(select(m.__table__)).all()), key=repr)
                for m in LEDGER}


def entries(engine: Engine) -> dict[str, M.JournalEntry]:
    """The posted entries by ``period/kind``: one each of the ones the tests aim at."""
    with Session(engine) as s:
        out = {}
        for e in s.exec(select(M.JournalEntry).order_by(M.JournalEntry.external_id)).all():
            out.setdefault(f"{e.period}/{e.kind}", e)
        return out


def posted_in(engine: Engine, period: str) -> list[tuple[Any, ...]]:
    """Every entry and line posted in ``period``, as stored."""
    stmt = (select(M.JournalEntry.__table__, M.JournalLine.__table__)
            .where(M.JournalLine.entry_id == M.JournalEntry.id, M.JournalEntry.period == period))
    with engine.connect() as conn:
        return sorted(map(tuple, conn.execute(stmt).all()), key=repr)


def january_revenue(engine: Engine) -> str:
    with Session(engine) as s:
        return next(r for r in reports.revenue(s, by="contract").rows if r[0] == "ctr_1")[2]


def refused(engine: Engine, attempt: Callable[[Session], Any], invariant: str) -> None:
    """``attempt`` in one transaction fails (at the statement or at commit) naming
    ``invariant``, and leaves the ledger as it was."""
    before = snapshot(engine)
    with Session(engine) as s:
        with pytest.raises(IntegrityError) as refusal:
            attempt(s)
            s.commit()
        s.rollback()
    message = str(refusal.value.orig)
    assert re.match(f"({invariant}): ", message), message  # the database's own error names the invariant
    assert snapshot(engine) == before, f"{invariant}: the ledger changed"


def line(entry: str, no: int, *, debit: int = 0, credit: int = 0, currency: str = "USD",
         role: str = "revenue") -> dict[str, Any]:
    return dict(entry_id=entry, line_no=no, role=role, account="4000", debit_minor=debit, credit_minor=credit,
                currency=currency, memo="", evidence=[])


def entry(external_id: str, day: date) -> dict[str, Any]:
    return dict(id=entry_id(external_id), external_id=external_id, key=external_id, kind="manual", entry_date=day,
                period=day.strftime("%Y-%m"), origin_period=day.strftime("%Y-%m"), currency="USD", memo="",
                content_hash="", source=[], created_at=utc(2019, 3, 1))


def post_raw(s: Session, head: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    """Post as the ledger does: bulk INSERTs, lines first, then the entry."""
    if lines:
        s.execute(insert(M.JournalLine), lines)
    s.execute(insert(M.JournalEntry), [head])


def sql(statement: str, **params: Any) -> Callable[[Session], Any]:
    return lambda s: s.execute(text(statement), params)


def _only(request: pytest.FixtureRequest, backend: str) -> None:
    if request.node.callspec.params.get("empty_engine") != backend:
        pytest.skip(f"{backend} only")


# ------------------------------------------------------------------ failure D, by the ORM


def test_failure_d_every_orm_attempt_is_refused_and_revrec_sees_an_unchanged_ledger(ledger: Engine) -> None:
    e = entries(ledger)
    jan, feb = e["2019-01/recognition"].id, e["2019-02/recognition"].id
    january = january_revenue(ledger)
    assert january == "31.00"

    attempts: list[tuple[str, Callable[[Session], Any], str]] = [
        # 1-2. session.add of a line into a closed entry, and into a posted open one
        ("line into a closed entry", lambda s: (s.add(M.JournalLine(**line(jan, 9, credit=10000))), s.flush()),
         SEALED),
        ("balanced lines into an open entry",
         lambda s: (s.add(M.JournalLine(**line(feb, 8, debit=500, role="contract_liability"))),
                    s.add(M.JournalLine(**line(feb, 9, credit=500))), s.flush()), SEALED),
        # 3-6. bulk update and delete of entries and lines
        ("bulk update of lines", lambda s: s.execute(
            update(M.JournalLine).where(M.JournalLine.entry_id == jan).values(credit_minor=M.JournalLine.credit_minor
                                                                              + 10000)), APPEND_ONLY),
        ("bulk delete of lines", lambda s: s.execute(delete(M.JournalLine).where(M.JournalLine.entry_id == jan)),
         APPEND_ONLY),
        ("bulk update of entries", lambda s: s.execute(
            update(M.JournalEntry).where(M.JournalEntry.id == jan).values(period="2019-02")), APPEND_ONLY),
        ("bulk delete of entries", lambda s: s.execute(delete(M.JournalEntry)), APPEND_ONLY),
        # 7. bulk insert: into a closed period, and unbalanced into an open one
        ("bulk insert into a closed period", lambda s: post_raw(
            s, entry("manual:jan", date(2019, 1, 15)),
            [line(entry_id("manual:jan"), 1, debit=100, role="cash"), line(entry_id("manual:jan"), 2, credit=100)]),
         FROZEN),
        ("bulk insert of an unbalanced entry", lambda s: post_raw(
            s, entry("manual:mar", date(2019, 3, 15)), [line(entry_id("manual:mar"), 1, credit=100)]), BALANCES),
        # 8-9. deleting or updating the closed period (reopening it)
        ("bulk delete of closed periods", lambda s: s.execute(delete(M.AccountingPeriod)), FINAL),
        ("reopening a closed period", lambda s: s.execute(update(M.AccountingPeriod).values(status="open")), FINAL),
        # 10-11. bulk update and delete of usage events, and of the credit ledger
        ("bulk update of usage events", lambda s: s.execute(update(M.UsageEvent).values(quantity=Decimal(1))),
         APPEND_ONLY),
        ("bulk delete of usage events", lambda s: s.execute(delete(M.UsageEvent)), APPEND_ONLY),
        ("bulk update of the credit ledger", lambda s: s.execute(
            update(M.CreditLedgerEntry).values(amount_minor=1)), APPEND_ONLY),
        ("bulk delete of the credit ledger", lambda s: s.execute(delete(M.CreditLedgerEntry)), APPEND_ONLY),
    ]
    for name, attempt, invariant in attempts:
        try:
            refused(ledger, attempt, invariant)
        except BaseException as exc:  # pragma: no cover - names the attempt that got through
            raise AssertionError(f"{name}: {exc}") from exc

    assert january_revenue(ledger) == january
    with Session(ledger) as s:
        assert run_recognition(s, through=date(2019, 3, 31)).entries_posted == 0


# --------------------------------------------------------------------------- raw SQL


def test_raw_sql_cannot_change_or_remove_ledger_rows(ledger: Engine) -> None:
    jan = entries(ledger)["2019-01/recognition"].id
    for table in ("journal_line", "journal_entry", "usage_event", "credit_ledger_entry"):
        column = {"journal_line": "memo", "journal_entry": "memo", "usage_event": "meter",
                  "credit_ledger_entry": "kind"}[table]
        refused(ledger, sql(f"UPDATE {table} SET {column} = 'x'"), APPEND_ONLY)
        refused(ledger, sql(f"DELETE FROM {table}"), APPEND_ONLY)
    refused(ledger, sql("UPDATE journal_line SET credit_minor = credit_minor + 1 WHERE entry_id = :e", e=jan),
            APPEND_ONLY)
    refused(ledger, sql("DELETE FROM accounting_period WHERE period = '2019-01'"), FINAL)
    refused(ledger, sql("UPDATE accounting_period SET period = '2018-12'"), FINAL)
    refused(ledger, sql("INSERT INTO accounting_period (period, status, closed_at, closed_by) "
                        "VALUES ('2019-02', 'open', '2019-03-01', 'x')"), FINAL)
    refused(ledger, sql("INSERT INTO accounting_period (period, status, closed_at, closed_by) "
                        "VALUES ('2019-2', 'closed', '2019-03-01', 'x')"), FINAL)
    # an upsert updates the row it conflicts with: refused like any update
    columns = ("system, event_id, customer_external_id, meter, quantity, occurred_at, properties, payload_hash, "
               "fetched_at")
    refused(ledger, sql(f"INSERT INTO usage_event ({columns}) SELECT {columns} FROM usage_event WHERE event_id = 'e1' "
                        "ON CONFLICT (system, event_id) DO UPDATE SET quantity = excluded.quantity"), APPEND_ONLY)


def test_raw_sql_cannot_post_an_unbalanced_or_misplaced_entry(ledger: Engine) -> None:
    posted = entries(ledger)
    jan, feb = posted["2019-01/recognition"].id, posted["2019-02/recognition"].id
    add_line = ("INSERT INTO journal_line (entry_id, line_no, role, account, debit_minor, credit_minor, currency, "
                "memo, evidence) VALUES (:e, :n, 'revenue', '4000', :d, :c, :cur, '', '[]')")

    def raw_entry(ext: str, day: str, period: str, currency: str = "USD") -> str:
        return ("INSERT INTO journal_entry (id, external_id, key, kind, entry_date, period, origin_period, currency, "
                f"memo, content_hash, source, created_at) VALUES ('{entry_id(ext)}', '{ext}', '{ext}', 'manual', "
                f"'{day}', '{period}', '{period}', '{currency}', '', '', '[]', '2019-03-01 00:00:00')")

    def lines_then(ext: str, day: str, period: str, amounts: list[tuple[int, int, str]],
                   currency: str = "USD") -> Callable[[Session], Any]:
        def attempt(s: Session) -> None:
            for n, (d, c, cur) in enumerate(amounts, 1):
                s.execute(text(add_line), {"e": entry_id(ext), "n": n, "d": d, "c": c, "cur": cur})
            s.execute(text(raw_entry(ext, day, period, currency)))
        return attempt

    balanced = [(100, 0, "USD"), (0, 100, "USD")]
    refused(ledger, sql(add_line, e=jan, n=50, d=0, c=10000, cur="USD"), SEALED)  # closed January
    refused(ledger, sql(add_line, e=feb, n=50, d=0, c=10000, cur="USD"), SEALED)  # open February
    refused(ledger, lines_then("x:1", "2019-03-15", "2019-03", [(100, 0, "USD"), (0, 99, "USD")]), BALANCES)
    refused(ledger, lines_then("x:2", "2019-03-15", "2019-03", []), BALANCES)  # no lines
    refused(ledger, lines_then("x:3", "2019-03-15", "2019-03", [(100, 0, "EUR"), (0, 100, "EUR")]), BALANCES)
    refused(ledger, lines_then("x:4", "2019-01-15", "2019-01", balanced), FROZEN)
    refused(ledger, lines_then("x:5", "2019-01-15", "2019-03", balanced), FROZEN)  # dated in January
    refused(ledger, lines_then("x:6", "2019-03-15", "2019-01", balanced), FROZEN)
    # lines of a new entry, but the entry row never comes: its foreign key fails at commit
    with pytest.raises(IntegrityError), Session(ledger) as s:
        s.execute(text(add_line), {"e": "je_never", "n": 1, "d": 0, "c": 100, "cur": "USD"})
        s.commit()
    # a balanced entry in an open period, posted lines first, is accepted
    with Session(ledger) as s:
        lines_then("x:7", "2019-03-15", "2019-03", balanced)(s)
        s.commit()


def test_an_entry_cannot_be_built_entry_first(ledger: Engine) -> None:
    """The ORM inserts an entry before its lines: the entry is sealed empty (and refused)."""
    def attempt(s: Session) -> None:
        s.add(M.JournalEntry(**entry("manual:orm", date(2019, 3, 15))))
        s.add(M.JournalLine(**line(entry_id("manual:orm"), 1, debit=100, role="cash")))
        s.add(M.JournalLine(**line(entry_id("manual:orm"), 2, credit=100)))
        s.flush()

    refused(ledger, attempt, f"{SEALED}|{BALANCES}")


def test_sqlite_refuses_replace_and_guards_other_clients(ledger: Engine, request: pytest.FixtureRequest) -> None:
    _only(request, "sqlite")
    # A REPLACE deletes the row it conflicts with: each is refused (by whichever guard fires first).
    for table, key, invariant in (("journal_entry", "id", f"{APPEND_ONLY}|{FROZEN}"),
                                  ("journal_line", "id", f"{APPEND_ONLY}|{SEALED}"),
                                  ("credit_ledger_entry", "id", APPEND_ONLY), ("usage_event", "id", APPEND_ONLY),
                                  ("accounting_period", "period", FINAL)):
        refused(ledger, sql(f"INSERT OR REPLACE INTO {table} SELECT * FROM {table} ORDER BY {key} LIMIT 1"),
                invariant)
    refused(ledger, sql("REPLACE INTO journal_line SELECT * FROM journal_line ORDER BY id LIMIT 1"),
            f"{APPEND_ONLY}|{SEALED}")
    # A client other than subledger (no foreign keys, no recursive triggers) is refused too.
    before = snapshot(ledger)
    path = ledger.url.database
    assert path
    other = sqlite3.connect(path)
    try:
        for statement in ("UPDATE journal_line SET credit_minor = 0", "DELETE FROM journal_entry",
                          "DELETE FROM accounting_period", "UPDATE usage_event SET quantity = '0'",
                          "INSERT OR REPLACE INTO journal_entry SELECT * FROM journal_entry LIMIT 1",
                          "INSERT OR REPLACE INTO journal_line SELECT * FROM journal_line LIMIT 1",
                          "INSERT OR REPLACE INTO accounting_period SELECT * FROM accounting_period LIMIT 1"):
            with pytest.raises(sqlite3.IntegrityError, match=f"^({APPEND_ONLY}|{FINAL}|{SEALED}|{FROZEN}): "):
                other.execute(statement)
            other.rollback()
    finally:
        other.close()
    assert snapshot(ledger) == before


# -------------------------------------------------------------------------- PostgreSQL




def test_postgres_refuses_truncate(ledger: Engine, request: pytest.FixtureRequest) -> None:
    _only(request, "postgresql")
    for table in ("journal_line", "journal_entry", "usage_event", "credit_ledger_entry"):
        refused(ledger, sql(f"TRUNCATE {table} CASCADE"), APPEND_ONLY)
    refused(ledger, sql("TRUNCATE accounting_period"), FINAL)


def test_postgres_a_concurrent_writer_cannot_add_lines_to_an_entry_posted_meanwhile(
    ledger: Engine, request: pytest.FixtureRequest
) -> None:
    _only(request, "postgresql")
    ext = "manual:concurrent"
    balanced = [line(entry_id(ext), 1, debit=100, role="cash"), line(entry_id(ext), 2, credit=100)]
    with Session(ledger) as poster, Session(ledger) as intruder:
        post_raw(poster, entry(ext, date(2019, 3, 15)), balanced)
        # the entry is not committed yet, so the intruder's line passes the immediate check...
        intruder.execute(insert(M.JournalLine), [line(entry_id(ext), 3, credit=10000)])
        poster.commit()
        with pytest.raises(IntegrityError, match=SEALED):  # ...and is refused at its commit
            intruder.commit()
    with Session(ledger) as s:
        assert len(s.exec(select(M.JournalLine).where(M.JournalLine.entry_id == entry_id(ext))).all()) == 2


def test_postgres_closing_waits_for_a_posting_in_flight(ledger: Engine, request: pytest.FixtureRequest) -> None:
    _only(request, "postgresql")
    ext = "manual:in-flight"
    with Session(ledger) as poster, Session(ledger) as closer:
        post_raw(poster, entry(ext, date(2019, 3, 15)),
                 [line(entry_id(ext), 1, debit=100, role="cash"), line(entry_id(ext), 2, credit=100)])
        closer.execute(text("SET LOCAL lock_timeout = '200ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            close_period(closer, Month(2019, 3), today=date(2019, 4, 2))
        closer.rollback()
        poster.commit()
        assert close_period(closer, Month(2019, 3), today=date(2019, 4, 2)) == [Month(2019, 2), Month(2019, 3)]
        closer.commit()
    with Session(ledger) as s:
        assert s.get(M.JournalEntry, entry_id(ext)) is not None  # posted before the close, kept


# ----------------------------------------------------------------- what still works


def test_the_legitimate_paths_work_on_a_guarded_store(ledger: Engine) -> None:
    frozen = posted_in(ledger, "2019-01")
    with Session(ledger, expire_on_commit=False) as s:
        # ingest: a re-read of the same events (and a conflicting one) inserts nothing, changes nothing
        again = ingest_usage(s, "files", [
            UsageEventIn("e1", "cus_1", "api_calls", Decimal(600), utc(2019, 1, 20), {}, "h1"),
            UsageEventIn("e2", "cus_1", "api_calls", Decimal(1), utc(2019, 2, 3), {}, "changed"),
            UsageEventIn("e3", "cus_1", "api_calls", Decimal(5), utc(2019, 3, 3), {}, "h3"),
        ])
        assert (again.inserted, again.duplicates, len(again.conflicts)) == (1, 1, 1)
        s.add(M.CreditLedgerEntry(entry_key="g1:draw", grant_id="g1", kind="draw_down", amount_minor=-1000,
                                  currency="USD", occurred_at=utc(2019, 2, 1)))
        # late data for closed January: posted in February, the first open month
        s.add(M.Invoice(id="inv_late", system="stripe", external_id="in_late", customer_external_id="cus_1",
                        contract_external_id="C1", currency="USD", issued_at=utc(2019, 1, 20), status="open",
                        total_minor=5000))
        s.flush()
        s.add(M.InvoiceLine(invoice_id="inv_late", line_key="1", currency="USD", kind="other", amount_minor=5000))
        s.commit()
        late = run_recognition(s, through=date(2019, 3, 31))
        s.commit()
        assert late.entries_posted > 0 and {p.period for p in late.postings} == {Month(2019, 2)}
        # a voided invoice is reversed by new entries, never by changing the posted ones
        voided = s.get(M.Invoice, "inv_late")
        assert voided is not None
        voided.status = "void"
        s.add(voided)
        s.commit()
        assert run_recognition(s, through=date(2019, 3, 31)).reversals > 0
        s.commit()
        assert close_period(s, Month(2019, 2), today=date(2019, 3, 2)) == [Month(2019, 2)]
        s.commit()
        assert run_recognition(s, through=date(2019, 3, 31)).entries_posted == 0
    assert posted_in(ledger, "2019-01") == frozen
    assert january_revenue(ledger) == "31.00"


# ---------------------------------------------------------------------- the migration


TRIGGERS = {
    "sqlite": {
        *(f"{t}_no_{e}" for t in ("usage_event", "credit_ledger_entry", "journal_entry", "journal_line",
                                  "accounting_period") for e in ("update", "delete")),
        "journal_entry_no_replace", "journal_line_no_replace", "credit_ledger_entry_no_replace",
        "journal_line_sealed", "journal_entry_balances", "journal_entry_closed_period", "accounting_period_close",
    },
    "postgresql": {
        *(f"{t}_{g}" for t in ("usage_event", "credit_ledger_entry", "journal_entry", "journal_line")
          for g in ("append_only", "no_truncate")),
        "journal_line_sealed", "journal_line_sealed_at_commit", "journal_entry_balances",
        "journal_entry_closed_period", "accounting_period_final", "accounting_period_no_truncate",
        "accounting_period_close",
    },
}


def _triggers(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
        return set(conn.execute(text(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace")).scalars())


def test_the_migration_installs_every_invariant_and_its_downgrade_removes_them(empty_engine: Engine) -> None:
    from alembic import command

    from subledger.core.store.migrate import alembic_config

    upgrade(empty_engine)
    assert _triggers(empty_engine) == TRIGGERS[empty_engine.dialect.name]
    with empty_engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "d1a2b3c4e5f6")
    assert _triggers(empty_engine) == set()
    upgrade(empty_engine)
    assert _triggers(empty_engine) == TRIGGERS[empty_engine.dialect.name]


def test_a_store_built_by_create_all_gets_the_same_guards(engine: Engine) -> None:
    assert _triggers(engine) == set()
    install_ledger_invariants(engine)
    assert _triggers(engine) == TRIGGERS[engine.dialect.name]


def test_invariant_names_are_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    section = doc.split("## Invariants", 1)[1].split("\n## ", 1)[0]
    for name in (APPEND_ONLY, BALANCES, SEALED, FROZEN, FINAL):
        assert re.search(rf"`{name}`", section), name


def test_a_changed_credit_grant_keeps_its_ledger_entries(ledger: Engine) -> None:
    from subledger.core.connector import RecordGroup
    from subledger.core.store.records import upsert_batch

    def grant(amount: int) -> RecordGroup:
        return RecordGroup(
            M.CreditGrant(id="g9", system="stripe", external_id="grant_9", customer_external_id="cus_1",
                          currency="USD", amount_minor=amount, effective_at=utc(2019, 1, 1),
                          payload_hash=f"h{amount}"),
            [M.CreditLedgerEntry(entry_key="g9:grant", grant_id="g9", kind="grant", amount_minor=amount,
                                 currency="USD", occurred_at=utc(2019, 1, 1))])

    with Session(ledger) as s:
        upsert_batch(s, [grant(5000)], system="stripe")
        s.commit()
        upsert_batch(s, [grant(6000)], system="stripe")  # re-read: the grant changed at the source
        s.commit()
        # The ledger keeps what it recorded; a changed grant's new movements come as new entries.
        entries = s.exec(select(M.CreditLedgerEntry).where(M.CreditLedgerEntry.grant_id == "g9")).all()
        assert [(e.entry_key, e.amount_minor) for e in entries] == [("g9:grant", 5000)]
        assert s.get(M.CreditGrant, "g9").amount_minor == 6000  # type: ignore[union-attr]
