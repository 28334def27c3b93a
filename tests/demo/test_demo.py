"""`subledger demo` finds exactly the leaks it planted, fixes the fixable ones, and closes the books.

One run of the whole demo on 20 customers (every pricing model, a year from November 2025)
through the real Salesforce, Stripe and NetSuite connectors and their sandboxes on
127.0.0.1. With 20 customers one leak of each kind is planted:

* 68.00 USD of late API calls at demo-00001 (per unit) never billed in 2026-02;
* demo-00008's Stripe price is 0.001 a call below its Salesforce contract: every month
  under-billed, and a terms drift worth October's shortfall;
* demo-00005's usage fell below its 1,000.00 minimum in 2026-01 with no true-up (500.00);
* demo-00007 prepaid 10,200.00 of credit usable until 1 May 2026 and used 8,192.00 of it:
  2,008.00 expired with no breakage revenue booked, until revenue recognition books it;
* demo-00002's latest invoice never reached NetSuite;
* demo-00003's payment for one invoice sits unapplied in NetSuite (so that invoice is
  also paid in Stripe but open in NetSuite);
* a Stripe pilot customer is linked to no CRM account.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import Session, select

from subledger.core.model import JournalEntry, JournalLine
from subledger.demo.company import generate
from subledger.demo.report import render_report
from subledger.demo.run import DemoResult, post_journal, report_data, run_demo

LEAK_RULES = {"unbilled_usage", "expired_credit_unrecognized", "over_billing",
              "terms_drift", "invoice_missing_from_erp", "customer_missing_from_erp",
              "unapplied_payment", "paid_in_billing_open_in_erp", "identity", "contract_without_billing",
              "billing_customer_without_contract", "thresholds", "usage_drift"}
FIXABLE = {"unbilled_usage", "invoice_missing_from_erp", "expired_credit_unrecognized"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo's result, plus what was checked while the sandboxes still served."""
    seen: dict[str, Any] = {}

    def while_serving(result: DemoResult) -> None:
        assert result.engine is not None
        months = result.revrec["journal_months"]
        again, posted_again = post_journal(result.engine, months)  # a second posting run
        seen["second_posting"] = (again.applied.done, posted_again)
        seen["html"] = render_report(report_data(result))

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBLEDGER_SECRET_KEY", "cT5SmvN8qBvdPGxbXW3lwM6pyBf9Hu4U1o2yQ-0s7Lc=")
        result = run_demo(20, workdir=tmp_path_factory.mktemp("demo"), keep=while_serving)
    yield {"result": result, **seen}


def _as_found(findings: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter((f["rule"], f["customer"], f["amount_minor"], f["period"]) for f in findings
                   if f["rule"] in LEAK_RULES)


def test_the_first_sync_finds_exactly_the_planted_leaks(demo: dict[str, Any]) -> None:
    result: DemoResult = demo["result"]
    planted = Counter((leak.rule, leak.customer, leak.amount_minor, leak.period) for leak in result.company.leaks)
    assert _as_found(result.rounds[0].open_findings) == planted
    # The worked examples from the module docstring, written out.
    assert ("unbilled_usage", "demo-00001", 6800, "2026-02") in planted
    assert ("unbilled_usage", "demo-00005", 50000, "2026-01") in planted
    assert ("expired_credit_unrecognized", "demo-00007", 200800, "2026-05") in planted
    assert sum(1 for k in planted if k[:2] == ("unbilled_usage", "demo-00008")) == 12
    assert {k[0] for k in planted} == {"unbilled_usage", "terms_drift", "invoice_missing_from_erp",
                                       "expired_credit_unrecognized",
                                       "unapplied_payment", "paid_in_billing_open_in_erp", "identity",
                                       "billing_customer_without_contract"}


def test_unbilled_total_is_the_sum_of_the_planted_amounts(demo: dict[str, Any]) -> None:
    result: DemoResult = demo["result"]
    first = result.rounds[0]
    assert first.leakage is not None
    planted = sum(leak.amount_minor for leak in result.company.leaks if leak.rule == "unbilled_usage")
    assert first.leakage.totals["USD"]["unbilled_minor"] == planted


def test_after_apply_a_resync_finds_none_of_the_fixable_leaks(demo: dict[str, Any]) -> None:
    result: DemoResult = demo["result"]
    first, quiet = result.rounds[0], result.rounds[-1]
    assert quiet.label == "after the close"
    assert not first.applied.failed and not first.applied.conflicts
    fixable_found = [f for f in first.open_findings if f["rule"] in FIXABLE]
    assert fixable_found and len(first.applied.done) >= len(fixable_found)
    assert [f for f in quiet.open_findings if f["rule"] in FIXABLE] == []
    # What people must fix is still there, unchanged.
    left = Counter((leak.rule, leak.customer, leak.amount_minor, leak.period)
                   for leak in result.company.leaks if not leak.fixable)
    assert _as_found(quiet.open_findings) == left
    # Besides the leaks people must fix, what stays open is the journal of the months the demo
    # did not post (it posts the closing month) and the CRM's usage fields for the new month.
    assert {f["rule"] for f in quiet.open_findings if f["rule"] not in LEAK_RULES} <= {
        "journal_not_in_erp", "crm_usage_fields"}


def test_every_journal_entry_balances(demo: dict[str, Any]) -> None:
    result: DemoResult = demo["result"]
    assert result.engine is not None
    with Session(result.engine) as s:
        entries = s.exec(select(JournalEntry)).all()
        lines = s.exec(select(JournalLine)).all()
    assert len(entries) == result.revrec["run"]["entries_posted"] > 0
    sums: dict[str, list[int]] = {}
    for ln in lines:
        acc = sums.setdefault(ln.entry_id, [0, 0])
        acc[0] += ln.debit_minor
        acc[1] += ln.credit_minor
    assert {e.id for e in entries} == set(sums)
    assert all(debit == credit for debit, credit in sums.values())


def test_netsuite_holds_exactly_one_copy_of_each_posted_entry(demo: dict[str, Any]) -> None:
    result: DemoResult = demo["result"]
    posted = result.revrec["posted"]
    assert posted and result.revrec["journal_months"] == ["2026-10"]
    in_netsuite = list(result.sandboxes["netsuite"].store.collection("journalEntry").values())
    assert Counter(e["externalId"] for e in in_netsuite) == Counter(posted)
    for entry in in_netsuite:
        debit = sum(Decimal(str(ln.get("debit") or 0)) for ln in entry["line"]["items"])
        credit = sum(Decimal(str(ln.get("credit") or 0)) for ln in entry["line"]["items"])
        assert debit == credit > 0
    done, posted_again = demo["second_posting"]
    assert done == [] and posted_again == []  # nothing left to post: nothing sent twice


def test_the_year_is_closed(demo: dict[str, Any]) -> None:
    assert demo["result"].closed[-1] == "2026-10"


def test_the_report_is_one_self_contained_file(demo: dict[str, Any]) -> None:
    html: str = demo["html"]
    assert html.startswith("<!doctype html>")
    for section in ("Leakage by month", "Leakage by rule", "Revenue waterfall", "Deferred revenue over time",
                    "Findings, with evidence"):
        assert section in html
    assert "<svg" in html and "stripe:invoice_line:" in html
    assert "src=" not in html and "<link" not in html and "http://" not in html.replace(
        "http://www.w3.org/2000/svg", "")


def test_the_company_is_the_same_every_time() -> None:
    a, b = generate(20), generate(20)
    assert [(c.name, c.plan, c.usage) for c in a.customers] == [(c.name, c.plan, c.usage) for c in b.customers]
    assert a.leaks == b.leaks
    assert Counter(c.plan.model for c in a.customers) == {
        "per_unit": 3, "graduated": 3, "volume": 3, "hybrid": 3, "minimum": 3, "package": 3, "prepaid": 2}


def test_too_few_customers_is_a_clear_error() -> None:
    from subledger.core.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 14 customers"):
        generate(5)


def test_revenue_recognized_for_the_year_is_what_stripe_billed_for_it(demo: dict[str, Any]) -> None:
    """Every Stripe line serves whole months, so each month's revenue is exactly what was billed
    for it (corrections included); NetSuite's copies of the same invoices add nothing."""
    from subledger.core.model import Invoice, InvoiceLine
    from subledger.core.revrec.reports import waterfall

    result: DemoResult = demo["result"]
    assert result.engine is not None
    with Session(result.engine) as s:
        report = waterfall(s, by="customer")
        billed = s.exec(select(InvoiceLine.amount_minor).join(Invoice, InvoiceLine.invoice_id == Invoice.id).where(
            Invoice.system == "stripe", Invoice.status.in_(("open", "paid")),
            InvoiceLine.service_start >= date(2025, 11, 1), InvoiceLine.service_start <= date(2026, 10, 31))).all()
    year = [i for i, col in enumerate(report.columns) if "2025-11" <= col <= "2026-10"]
    recognized = sum(int(Decimal(row[i]) * 100) for row in report.rows for i in year)
    assert recognized == sum(billed) > 0
