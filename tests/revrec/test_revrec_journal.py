"""The journal: balanced entries, contract asset/liability, AR, tax, cash, contra."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from subledger.core.errors import ConfigError
from subledger.core.revrec.accounts import AccountRole, ChartOfAccounts
from subledger.core.revrec.amortization import ServicePeriod
from subledger.core.revrec.credits import BreakagePolicy, breakage_curve, redemptions_curve
from subledger.core.revrec.curves import CatchUp, Ratable, Remainder, Scaled
from subledger.core.revrec.journal import Document, EntryDraft, PaymentIn, build_entries
from subledger.core.revrec.obligation import Billing, LineKind, Obligation, Recognition, Treatment
from subledger.core.revrec.usage import per_unit

R = AccountRole


def _utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def movements(entries: list[EntryDraft]) -> dict[tuple[str, AccountRole], int]:
    """Net movement (debit positive) per origin month and role."""
    out: dict[tuple[str, AccountRole], int] = defaultdict(int)
    for e in entries:
        for ln in e.lines:
            out[(str(e.origin_period), ln.role)] += ln.net
    return dict(out)


def balance(entries: list[EntryDraft], role: AccountRole) -> int:
    return sum(ln.net for e in entries for ln in e.lines if ln.role is role)


def annual_365() -> Obligation:
    period = ServicePeriod.from_dates(date(2019, 1, 1), date(2019, 12, 31))
    return Obligation(
        key="sub-365", currency="USD", treatment=Treatment.RATABLE, product="platform",
        recognitions=(Recognition(LineKind.REVENUE, Ratable(36500, period)),),
        billings=(Billing(_utc(2019, 1, 1), 36500, "invoice:demo:in_365"),), contract_id="ctr-365",
    )


def test_365_annual_revenue_and_deferred_movements() -> None:
    entries = build_entries([annual_365()], through=date(2019, 3, 31))
    mv = movements(entries)
    # Jan: +31 revenue, +334 deferred (365 billed less 31); Feb +28 / -28; Mar +31 / -31.
    assert (-mv[("2019-01", R.REVENUE)], -mv[("2019-01", R.CONTRACT_LIABILITY)]) == (3100, 33400)
    assert (-mv[("2019-02", R.REVENUE)], -mv[("2019-02", R.CONTRACT_LIABILITY)]) == (2800, -2800)
    assert (-mv[("2019-03", R.REVENUE)], -mv[("2019-03", R.CONTRACT_LIABILITY)]) == (3100, -3100)
    assert all(e.is_balanced() for e in entries)


def test_31_dollar_subscription_deferred_at_january_end() -> None:
    period = ServicePeriod.from_dates(date(2026, 1, 15), date(2026, 2, 14))
    ob = Obligation(
        key="sub-31", currency="USD", treatment=Treatment.RATABLE, product="plan",
        recognitions=(Recognition(LineKind.REVENUE, Ratable(3100, period)),),
        billings=(Billing(_utc(2026, 1, 15), 3100, "invoice:demo:in_31"),),
    )
    jan = build_entries([ob], through=date(2026, 1, 31))
    assert -balance(jan, R.REVENUE) == 1700
    assert -balance(jan, R.CONTRACT_LIABILITY) == 1400
    feb = build_entries([ob], through=date(2026, 2, 28))
    assert -balance(feb, R.REVENUE) == 3100 and balance(feb, R.CONTRACT_LIABILITY) == 0


def usage_obligation() -> Obligation:
    usage = [(date(2026, 1, 3), 200), (date(2026, 1, 10), 500), (date(2026, 1, 20), 300)]
    return Obligation(
        key="calls-jan", currency="USD", treatment=Treatment.USAGE, product="api_calls",
        recognitions=(Recognition(LineKind.REVENUE, per_unit(usage, Decimal("0.05"), "USD")),),
        billings=(Billing(_utc(2026, 2, 1), 5000, "invoice:demo:in_feb"),), contract_id="ctr-usage",
    )


def test_usage_is_unbilled_receivable_until_the_invoice_moves_it_to_ar() -> None:
    jan = build_entries([usage_obligation()], through=date(2026, 1, 31))
    assert -balance(jan, R.REVENUE) == 5000
    assert balance(jan, R.UNBILLED_RECEIVABLE) == 5000
    assert balance(jan, R.ACCOUNTS_RECEIVABLE) == 0
    feb = build_entries([usage_obligation()], through=date(2026, 2, 28))
    invoice = next(e for e in feb if e.key == "invoice:demo:in_feb")
    assert {(ln.role, ln.net) for ln in invoice.lines} == {
        (R.ACCOUNTS_RECEIVABLE, 5000), (R.UNBILLED_RECEIVABLE, -5000),
    }
    assert balance(feb, R.UNBILLED_RECEIVABLE) == 0 and balance(feb, R.CONTRACT_LIABILITY) == 0


def test_prepaid_credits_journal_releases_the_liability_and_books_breakage() -> None:
    expiry = _utc(2027, 1, 1)
    redemptions = [(_utc(2026, 3, 31), 270000), (_utc(2026, 6, 30), 225000),
                   (_utc(2026, 9, 30), 180000), (_utc(2026, 12, 15), 175000)]
    redeemed = redemptions_curve(1000000, redemptions, expiry)
    ob = Obligation(
        key="credits", currency="USD", treatment=Treatment.CREDIT, product="credits",
        recognitions=(Recognition(LineKind.REVENUE, redeemed),
                      Recognition(LineKind.BREAKAGE, breakage_curve(1000000, redeemed, expiry,
                                                                    BreakagePolicy.AT_EXPIRY))),
        billings=(Billing(_utc(2026, 1, 1), 1000000, "invoice:demo:credits"),),
    )
    entries = build_entries([ob], through=date(2027, 1, 31))
    assert -balance(entries, R.REVENUE) == 850000
    assert -balance(entries, R.BREAKAGE_REVENUE) == 150000
    assert balance(entries, R.CONTRACT_LIABILITY) == 0
    dec = build_entries([ob], through=date(2026, 12, 31))
    assert -balance(dec, R.CONTRACT_LIABILITY) == 150000  # unredeemed until expiry


def test_tax_is_a_liability_and_payments_clear_ar() -> None:
    doc = Document("invoice:demo:in_365", "invoice", _utc(2019, 1, 1), "USD", "cus", tax_minor=3650)
    pay = PaymentIn("payment:demo:py_1", _utc(2019, 1, 5), "USD", 41000, 40150, "cus")
    entries = build_entries([annual_365()], through=date(2019, 1, 31), documents=[doc], payments=[pay])
    assert -balance(entries, R.TAX_LIABILITY) == 3650
    assert balance(entries, R.ACCOUNTS_RECEIVABLE) == 0
    assert balance(entries, R.CASH) == 41000
    assert -balance(entries, R.CUSTOMER_BALANCE) == 850  # unapplied cash
    assert sum(-ln.net for e in entries for ln in e.lines if ln.role is R.REVENUE) == 3100


def test_discount_is_contra_revenue_recognized_with_what_it_discounts() -> None:
    period = ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 3, 31))
    gross = Ratable(90000, period)
    ob = Obligation(
        key="fee", currency="USD", treatment=Treatment.RATABLE, product="fee",
        recognitions=(Recognition(LineKind.REVENUE, gross),
                      Recognition(LineKind.DISCOUNT, Scaled(gross, Fraction(-9000, 90000)))),
        billings=(Billing(_utc(2026, 1, 1), 90000, "invoice:d:1"), Billing(_utc(2026, 1, 1), -9000, "invoice:d:1")),
    )
    entries = build_entries([ob], through=date(2026, 3, 31))
    assert -balance(entries, R.REVENUE) == 90000
    assert balance(entries, R.DISCOUNTS_CONTRA) == 9000
    assert balance(entries, R.CONTRACT_LIABILITY) == 0 and balance(entries, R.ACCOUNTS_RECEIVABLE) == 81000


def test_credit_note_reverses_recognized_revenue_to_refunds_and_the_rest_from_deferred() -> None:
    # $120 annual, fully refunded on the first day of month 3: 20.00 recognized -> refunds contra.
    period = ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 12, 31))
    gross = Ratable(12000, period, )
    cn_at = _utc(2026, 3, 1)
    reduction = Scaled(gross, Fraction(-1))
    ob = Obligation(
        key="annual", currency="USD", treatment=Treatment.RATABLE, product="plan",
        recognitions=(Recognition(LineKind.REVENUE, gross),
                      Recognition(LineKind.REFUND, CatchUp(reduction, cn_at)),
                      Recognition(LineKind.REVENUE, Remainder(reduction, cn_at))),
        billings=(Billing(_utc(2026, 1, 1), 12000, "invoice:d:a"), Billing(cn_at, -12000, "credit_note:d:c")),
    )
    entries = build_entries([ob], through=date(2026, 12, 31))
    recognized_before = 1019 + 921  # Jan + Feb by day (31 + 28 of 365 days)
    assert balance(entries, R.REFUNDS_CONTRA) == recognized_before
    assert -balance(entries, R.REVENUE) == recognized_before
    assert balance(entries, R.CONTRACT_LIABILITY) == 0 and balance(entries, R.ACCOUNTS_RECEIVABLE) == 0
    # As Stripe books it: the credit note clears AR against deferred revenue, and the
    # March recognition entry moves what had been recognized to the refunds account.
    note = next(e for e in entries if e.key == "credit_note:d:c")
    assert {(ln.role, ln.net) for ln in note.lines} == {(R.ACCOUNTS_RECEIVABLE, -12000), (R.CONTRACT_LIABILITY, 12000)}
    march = next(e for e in entries if e.key.startswith("recognition:") and e.key.endswith(":2026-03:USD"))
    assert {(ln.role, ln.net) for ln in march.lines} == {
        (R.REFUNDS_CONTRA, recognized_before), (R.CONTRACT_LIABILITY, -recognized_before),
    }
    assert not any(ln.role is R.UNBILLED_RECEIVABLE for e in entries for ln in e.lines)


def test_every_line_carries_evidence_and_entry_ids_are_stable() -> None:
    ev = ({"system": "stripe", "object": "invoice", "id": "in_1"},)
    ob = Obligation(
        key="k", currency="USD", treatment=Treatment.POINT_IN_TIME, product="setup",
        recognitions=(Recognition(LineKind.REVENUE, Ratable(500, ServicePeriod.from_dates(date(2026, 1, 1),
                                                                                          date(2026, 1, 1)))),),
        billings=(Billing(_utc(2026, 1, 1), 500, "invoice:stripe:in_1", ev),), evidence=ev,
    )
    first = build_entries([ob], through=date(2026, 1, 31))
    again = build_entries([ob], through=date(2026, 1, 31))
    assert [e.external_id() for e in first] == [e.external_id() for e in again]
    assert all(ln.evidence for e in first for ln in e.lines)


def test_chart_of_accounts_maps_roles_and_products(tmp_path: Path) -> None:
    path = tmp_path / "coa.yaml"
    path.write_text(
        "accounts:\n  contract_liability: '2450 Contract Liability'\n"
        "revenue:\n  default: '4000 Sales'\n  by_product:\n    api_calls: '4020 Usage Revenue'\n"
    )
    chart = ChartOfAccounts.load(path)
    assert chart.account(R.CONTRACT_LIABILITY) == "2450 Contract Liability"
    assert chart.account(R.REVENUE, "api_calls") == "4020 Usage Revenue"
    assert chart.account(R.REVENUE, "platform") == "4000 Sales"
    assert chart.account(R.CASH) == "1000 Cash"  # default kept
    entries = build_entries([usage_obligation()], through=date(2026, 1, 31), chart=chart)
    assert {ln.account for e in entries for ln in e.lines} == {"4020 Usage Revenue", "1250 Unbilled Receivable"}
    assert ChartOfAccounts.from_mapping(chart.to_mapping()) == chart


def test_chart_of_accounts_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad_role = tmp_path / "coa.yaml"
    bad_role.write_text("accounts:\n  deferred: '2400'\n")
    with pytest.raises(ConfigError, match=r"coa.yaml: accounts.deferred is not an account role") as err:
        ChartOfAccounts.load(bad_role)
    assert "contract_liability" in (err.value.fix or "")
    broken = tmp_path / "coa.json"
    broken.write_text('{"accounts": {"cash": "1000"}')
    with pytest.raises(ConfigError, match=r"coa\.json line 1: not valid JSON"):
        ChartOfAccounts.load(broken)
    empty_name = tmp_path / "e.yaml"
    empty_name.write_text("accounts:\n  cash: ''\n")
    with pytest.raises(ConfigError, match=r"accounts.cash: '' is not an account name"):
        ChartOfAccounts.load(empty_name)
    with pytest.raises(ConfigError, match="cannot read"):
        ChartOfAccounts.load(tmp_path / "missing.yaml")
