"""Posting subledger's journal to NetSuite: exactly once, mapped, balanced, into open periods.

A month of January 2026: each day an invoice entry (Dr AR 1200, Cr deferred revenue 2400,
Cr sales tax 2200) and, for the 31st, a recognition entry (Dr deferred revenue, Cr usage
revenue 4100): 32 entries, each upserted by its stable ``JournalEntry.external_id``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from subledger.core.connector import WriteAction
from subledger.core.errors import ConfigError, TransientError
from subledger.core.model import JournalEntry, JournalLine
from subledger.core.model.journal import journal_payload
from subledger.core.sandbox import SandboxError
from subledger.plugins.netsuite.accounts import load_mapping, parse_mapping
from subledger.plugins.netsuite.connector import NetSuiteConnector
from subledger.plugins.netsuite.sandbox import NetSuiteSandbox
from subledger.testing import FakeClock

MAPPING = """\
subsidiary: "1"
accounts:
  "1200": "12"     # Accounts Receivable
  "2400": "21"     # Deferred Revenue
  "2200": "22"     # Sales Tax Payable
  revenue: "42"    # every revenue account -> Usage Revenue
periods:
  "2026-01": "201"
"""
NS_ACCOUNT = {"12": "1200", "21": "2400", "22": "2200", "42": "4100"}


def _entry(key: str, day: date, lines: list[tuple[str, str, int, int]]) -> tuple[JournalEntry, list[JournalLine]]:
    ext = f"{key}:{hashlib.sha256(repr(lines).encode()).hexdigest()[:12]}"
    entry = JournalEntry(id=f"je_{len(ext)}_{key}", external_id=ext, key=key, kind=key.split(":")[0],
                         entry_date=day, period=day.strftime("%Y-%m"), currency="USD", memo=key)
    rows = [JournalLine(entry_id=entry.id, line_no=n, role=role, account=account, debit_minor=d, credit_minor=c,
                        currency="USD") for n, (role, account, d, c) in enumerate(lines, 1)]
    return entry, rows


def january() -> list[tuple[JournalEntry, list[JournalLine]]]:
    """31 invoice entries of 100.00 + 8.25 tax + n cents, and the month's recognition."""
    out = []
    for d in range(1, 32):
        net = 10000 + d
        out.append(_entry(f"invoice:stripe:in_{d}", date(2026, 1, d), [
            ("accounts_receivable", "1200", net + 825, 0), ("contract_liability", "2400", 0, net),
            ("tax_payable", "2200", 0, 825)]))
    recognized = sum(10000 + d for d in range(1, 32))
    out.append(_entry("recognition:ctr_acme:2026-01", date(2026, 1, 31), [
        ("contract_liability", "2400", recognized, 0), ("revenue", "4100", 0, recognized)]))
    return out


def action(entry: JournalEntry, lines: list[JournalLine]) -> WriteAction:
    return WriteAction("create_journal_entry", f"post:{entry.external_id}", journal_payload(entry, lines))


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "netsuite-accounts.yaml"
    path.write_text(MAPPING)
    return path


@pytest.fixture
def poster(connect: Callable[..., NetSuiteConnector], mapping_file: Path) -> NetSuiteConnector:
    return connect(account_mapping=str(mapping_file))


def netsuite_lines(record: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(our account, debit, credit) in minor units for each line of a NetSuite journal entry."""
    return [(NS_ACCOUNT[ln["account"]["id"]], int((ln["debit"] or 0) * 100), int((ln["credit"] or 0) * 100))
            for ln in record["line"]["items"]]


def test_a_month_killed_halfway_and_rerun_posts_each_entry_exactly_once(
    poster: NetSuiteConnector, connect: Callable[..., NetSuiteConnector], mapping_file: Path,
    sandbox: NetSuiteSandbox, fake_clock: FakeClock,
) -> None:
    month = january()
    # After 16 entries have committed, every answer is lost: the run dies on entry 16 with
    # its outcome unknown (5 attempts, each of them committed and then dropped).
    drop = sandbox.faults.inject("drop", method="PUT", path="/services/rest/record/v1/journalEntry/*", skip=15,
                                 times=5)
    posted = []
    with pytest.raises(TransientError):
        for entry, lines in month:
            posted.append(poster.write(action(entry, lines)))
    assert len(posted) == 15 and drop.fired == 5
    assert len(sandbox.store.collection("journalEntry")) == 16

    # The re-run (a new process): 16 found by external id and left alone, 16 created.
    rerun = connect(account_mapping=str(mapping_file))
    results = [rerun.write(action(entry, lines)) for entry, lines in month]
    assert [r.created for r in results] == [False] * 16 + [True] * 16
    assert [r.external_id for r in results[:15]] == [r.external_id for r in posted]

    in_netsuite = {r["externalId"]: r for r in rerun.journal_entries()}
    assert sorted(in_netsuite) == sorted(e.external_id for e, _ in month)
    for entry, lines in month:
        record = in_netsuite[entry.external_id]
        assert netsuite_lines(record) == [(ln.account, ln.debit_minor, ln.credit_minor) for ln in lines]
        assert (record["postingPeriod"]["id"], record["tranDate"], record["subsidiary"]["id"]) == (
            "201", entry.entry_date.isoformat(), "1")
    recognition = in_netsuite[month[-1][0].external_id]
    assert netsuite_lines(recognition) == [("2400", 310496, 0), ("4100", 0, 310496)]


def test_an_unbalanced_entry_is_refused_before_anything_is_sent(
    poster: NetSuiteConnector, sandbox: NetSuiteSandbox
) -> None:
    entry, lines = _entry("manual:1", date(2026, 1, 9), [("revenue", "4100", 0, 1000),
                                                          ("accounts_receivable", "1200", 999, 0)])
    with pytest.raises(ConfigError, match="does not balance: debits 999, credits 1000") as raised:
        poster.write(action(entry, lines))
    assert "balanced" in (raised.value.fix or "")
    assert sandbox.store.collection("journalEntry") == {}


def test_an_unmapped_account_is_refused_naming_the_account_and_the_fix(
    poster: NetSuiteConnector, mapping_file: Path, sandbox: NetSuiteSandbox
) -> None:
    entry, lines = _entry("payment:stripe:py_1", date(2026, 1, 9), [("cash", "1000", 5000, 0),
                                                                    ("accounts_receivable", "1200", 0, 5000)])
    with pytest.raises(ConfigError, match=r"journal account '1000' \(role 'cash'\) has no NetSuite account") as raised:
        poster.write(action(entry, lines))
    assert f'add it under accounts: in {mapping_file}, e.g. "1000": "<NetSuite account internal id>"' in str(
        raised.value.fix)
    assert sandbox.store.collection("journalEntry") == {}


def test_posting_into_a_closed_period_is_refused_by_the_connector_and_by_netsuite(
    poster: NetSuiteConnector, sandbox: NetSuiteSandbox
) -> None:
    sandbox.save("accountingPeriod", {"closed": True}, sandbox.store.get("accountingPeriod", "201"), partial=True)
    entry, lines = january()[0]
    with pytest.raises(ConfigError, match="NetSuite period Jan 2026 is closed or locked") as raised:
        poster.write(action(entry, lines))
    assert "first open period" in (raised.value.fix or "")
    # NetSuite itself refuses too, whoever posts.
    with pytest.raises(SandboxError, match="Jan 2026 is closed or locked") as refused:
        sandbox.save("journalEntry", {"subsidiary": {"id": "1"}, "tranDate": "2026-01-10", "line": {"items": [
            {"account": {"id": "12"}, "debit": 1}, {"account": {"id": "41"}, "credit": 1}]}}, None)
    assert (refused.value.status, refused.value.param) == (400, "postingPeriod")
    # An AR lock stops invoices but not journal entries.
    sandbox.save("accountingPeriod", {"closed": False, "arLocked": True}, sandbox.store.get("accountingPeriod", "201"),
                 partial=True)
    with pytest.raises(SandboxError, match="closed or locked"):
        sandbox.save("invoice", {"entity": {"id": "1001"}, "tranDate": "2026-01-10",
                                 "item": {"items": [{"item": {"id": "501"}, "amount": 1}]}}, None)
    assert poster.write(action(entry, lines)).created


def test_netsuite_refuses_an_unbalanced_entry_too(sandbox: NetSuiteSandbox) -> None:
    with pytest.raises(SandboxError, match=r"not in balance: debits 10\.00, credits 9\.99"):
        sandbox.save("journalEntry", {"subsidiary": {"id": "1"}, "tranDate": "2026-01-10", "line": {"items": [
            {"account": {"id": "12"}, "debit": "10.00"}, {"account": {"id": "41"}, "credit": "9.99"}]}}, None)


def test_journal_entries_need_a_mapping_file(connect: Callable[..., NetSuiteConnector]) -> None:
    entry, lines = january()[0]
    with pytest.raises(ConfigError, match="needs account_mapping") as raised:
        connect().write(action(entry, lines))
    assert "set account_mapping to its path" in (raised.value.fix or "")


@pytest.mark.parametrize(("doc", "message"), [
    ({"accounts": {"1200": "12"}}, "subsidiary is missing"),
    ({"subsidiary": "1", "accounts": {}}, "accounts is empty"),
    ({"subsidiary": "1", "accounts": {"1200": ["12"]}}, "accounts must map names to NetSuite internal ids"),
    ({"subsidiary": "1", "accounts": {"1200": "12"}, "periods": {"Jan 2026": "201"}}, "is not YYYY-MM"),
    ({"subsidiary": "1", "accounts": {"1200": "12"}, "acounts": {}}, "unknown key"),
])
def test_a_bad_mapping_file_names_the_problem(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_mapping(doc, "accounts.yaml")


def test_mapping_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_mapping(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("subsidiary: [\n")
    with pytest.raises(ConfigError, match=re.escape(f"account mapping file {bad}:2:1: not valid YAML")):
        load_mapping(bad)


def test_an_answer_that_times_out_after_netsuite_committed_lands_once(
    connect: Callable[..., NetSuiteConnector], mapping_file: Path, sandbox: NetSuiteSandbox, fake_clock: FakeClock
) -> None:
    """The upsert commits, the answer never comes (the client gives up after 0.3 s); the
    retried PUT updates the same entry instead of adding one."""
    timeout = sandbox.faults.inject("timeout", method="PUT", path="/services/rest/record/v1/journalEntry/*",
                                    phase="after", seconds=2)
    entry, lines = january()[0]
    result = connect(account_mapping=str(mapping_file), timeout_seconds=0.3).write(action(entry, lines))
    assert result.created and timeout.fired == 1 and len(fake_clock.sleeps) == 1
    [record] = sandbox.store.collection("journalEntry").values()
    assert (record["id"], record["externalId"]) == (result.external_id, entry.external_id)
