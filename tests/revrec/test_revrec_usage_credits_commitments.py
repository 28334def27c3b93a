"""Usage as incurred, hybrid contracts, prepaid credits and minimum commitments."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from subledger.core.errors import ConfigError
from subledger.core.revrec.amortization import ServicePeriod
from subledger.core.revrec.commitments import CommitmentPolicy, commitment_curve
from subledger.core.revrec.credits import (
    BreakagePolicy,
    breakage_curve,
    promotional_consumption,
    redemptions_curve,
)
from subledger.core.revrec.curves import Ratable
from subledger.core.revrec.schedule import as_table, daily, final_amount, monthly, recognized_through
from subledger.core.revrec.usage import overage_in_period, per_unit, pooled_overage

Q1 = ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 3, 31))
YEAR = ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 12, 31))


def _utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


# --- usage ----------------------------------------------------------------------------


def test_five_cents_per_call_is_recognized_on_the_days_it_is_used() -> None:
    usage = [(date(2026, 1, 3), 200), (date(2026, 1, 10), 500), (date(2026, 1, 20), 300)]
    curve = per_unit(usage, Decimal("0.05"), "USD")
    assert {str(s.period): s.amount_minor for s in daily(curve)} == {
        "2026-01-03": 1000, "2026-01-10": 2500, "2026-01-20": 1500,
    }
    assert recognized_through(curve, date(2026, 1, 31)) == 5000  # 50.00 to date, before any invoice


def test_hybrid_platform_fee_ratable_and_overage_as_incurred() -> None:
    # $1,000/month including 10,000 calls, overage $0.02; usage 8,000 / 12,500 / 15,000.
    months = [(1, 31, 8000), (2, 28, 12500), (3, 31, 15000)]
    revenue = {}
    for month, last, calls in months:
        fee = Ratable(100000, ServicePeriod.from_dates(date(2026, month, 1), date(2026, month, last)))
        over = overage_in_period([(date(2026, month, 15), calls)], Decimal(10000), Decimal("0.02"), "USD")
        revenue[month] = final_amount(fee) + final_amount(over)
    assert revenue == {1: 100000, 2: 105000, 3: 110000}


def test_overage_starts_on_the_day_usage_passes_the_allotment() -> None:
    usage = [(date(2026, 2, d), 2500) for d in (1, 8, 15, 22, 28)]  # 12,500 in February
    over = overage_in_period(usage, Decimal(10000), Decimal("0.02"), "USD")
    assert {str(s.period): s.amount_minor for s in daily(over)} == {"2026-02-28": 5000}


def test_pooled_allotment_produces_overage_only_after_cumulative_usage_passes_the_pool() -> None:
    # A 30,000-call pool for the year; 12,000 a month; overage $0.01 from the pool's end.
    usage = [(date(2026, m, 10), 12000) for m in range(1, 5)]
    curve = pooled_overage(usage, Decimal(30000), Decimal("0.01"), "USD")
    assert as_table(monthly(curve)) == {"2026-03": 6000, "2026-04": 12000}


# --- prepaid credits ------------------------------------------------------------------

REDEMPTIONS = [(_utc(2026, 3, 31), 270000), (_utc(2026, 6, 30), 225000),
               (_utc(2026, 9, 30), 180000), (_utc(2026, 12, 15), 175000)]
EXPIRY = _utc(2027, 1, 1)  # valid through Dec 31


def _quarters(table: dict[str, int]) -> list[int]:
    return [sum(v for k, v in table.items() if int(k[5:7]) in range(q * 3 - 2, q * 3 + 1)) for q in (1, 2, 3, 4)]


def test_prepaid_credits_with_remote_breakage_at_expiry() -> None:
    redeemed = redemptions_curve(1000000, REDEMPTIONS, EXPIRY)
    breakage = breakage_curve(1000000, redeemed, EXPIRY, BreakagePolicy.AT_EXPIRY)
    assert _quarters(as_table(monthly(redeemed))) == [270000, 225000, 180000, 175000]
    assert as_table(monthly(breakage)) == {"2027-01": 150000}  # 1,500 when the credits expire
    assert final_amount(redeemed) + final_amount(breakage) == 1000000


def test_proportional_breakage_follows_redemptions_and_trues_up_at_expiry() -> None:
    # Expected breakage 15%: each redeemed dollar brings 0.15 / 0.85 of breakage.
    redeemed = redemptions_curve(1000000, REDEMPTIONS, EXPIRY)
    breakage = breakage_curve(1000000, redeemed, EXPIRY, BreakagePolicy.PROPORTIONAL, Fraction(15, 100))
    q1 = recognized_through(breakage, date(2026, 3, 31))
    assert q1 == 47647  # 150,000 x 270,000 / 850,000 = 47,647.06
    # Redemptions of 8,500 are exactly the expected 85%: breakage is complete before expiry.
    assert recognized_through(breakage, date(2026, 12, 31)) == 150000
    assert final_amount(redeemed) + final_amount(breakage) == 1000000


def test_proportional_breakage_reverses_when_redemptions_beat_the_estimate() -> None:
    redeemed = redemptions_curve(10000, [(_utc(2026, 1, 5), 5000), (_utc(2026, 2, 5), 5000)], EXPIRY)
    breakage = breakage_curve(10000, redeemed, EXPIRY, BreakagePolicy.PROPORTIONAL, Fraction(1, 5))
    table = as_table(monthly(breakage))
    assert table == {"2026-01": 1250, "2026-02": -1250}  # capped by the balance, then nothing left
    assert final_amount(redeemed) + final_amount(breakage) == 10000


def test_redeeming_more_than_was_bought_is_refused() -> None:
    with pytest.raises(ConfigError, match="exceed"):
        redemptions_curve(1000, [(_utc(2026, 1, 2), 600), (_utc(2026, 1, 3), 600)], None)


def test_redeeming_after_expiry_is_refused() -> None:
    with pytest.raises(ConfigError, match="expiry"):
        redemptions_curve(1000, [(_utc(2027, 1, 2), 100)], EXPIRY)


def test_proportional_breakage_needs_a_rate() -> None:
    redeemed = redemptions_curve(1000, [], EXPIRY)
    with pytest.raises(ConfigError, match="expected breakage rate"):
        breakage_curve(1000, redeemed, EXPIRY, BreakagePolicy.PROPORTIONAL, None)


def test_promotional_credits_are_contra_revenue_when_consumed() -> None:
    curve = promotional_consumption([(_utc(2026, 2, 10), 2500)])
    assert as_table(monthly(curve)) == {"2026-02": -2500}


def test_breakage_policy_aliases() -> None:
    assert BreakagePolicy.parse("remote") is BreakagePolicy.AT_EXPIRY
    with pytest.raises(ConfigError):
        BreakagePolicy.parse("sometimes")


# --- minimum commitments --------------------------------------------------------------

USAGE = [(date(2026, 1, 20), 200000), (date(2026, 2, 20), 300000), (date(2026, 3, 20), 100000)]


def test_commitment_ratable_minimum_then_usage_above_it() -> None:
    # Minimum 9,000 over Q1 (90 days, by day). Usage 2,000 / 3,000 / 1,000 never passes it.
    curve = commitment_curve(900000, Q1, USAGE, CommitmentPolicy.RATABLE_MINIMUM)
    assert as_table(monthly(curve)) == {"2026-01": 310000, "2026-02": 280000, "2026-03": 310000}


def test_commitment_ratable_minimum_recognizes_usage_once_cumulative_passes_it() -> None:
    heavy = [(date(2026, 1, 20), 600000), (date(2026, 2, 20), 600000)]  # passes 9,000 in Feb
    curve = commitment_curve(900000, Q1, heavy, CommitmentPolicy.RATABLE_MINIMUM)
    # Jan 3,100 of minimum; Feb 2,800 + 3,000 above the minimum; Mar 3,100.
    assert as_table(monthly(curve)) == {"2026-01": 310000, "2026-02": 580000, "2026-03": 310000}


def test_commitment_scaled_consumption() -> None:
    # Expected usage 6,000 against a 9,000 minimum: each dollar of usage earns 1.50.
    curve = commitment_curve(900000, Q1, USAGE, CommitmentPolicy.SCALED_CONSUMPTION,
                             expected_usage_minor=600000)
    assert as_table(monthly(curve)) == {"2026-01": 300000, "2026-02": 450000, "2026-03": 150000}


def test_commitment_consumption_with_the_shortfall_at_term_end() -> None:
    curve = commitment_curve(900000, Q1, USAGE, CommitmentPolicy.SHORTFALL_AT_END)
    # Usage 2,000 / 3,000, then March 1,000 usage + 3,000 shortfall.
    assert as_table(monthly(curve)) == {"2026-01": 200000, "2026-02": 300000, "2026-03": 400000}


@pytest.mark.parametrize("policy", list(CommitmentPolicy))
@pytest.mark.parametrize("usage_total", [0, 600000, 900000, 1500000])
def test_every_commitment_policy_recognizes_max_of_minimum_and_usage(
    policy: CommitmentPolicy, usage_total: int
) -> None:
    usage = [(date(2026, 2, 1), usage_total)] if usage_total else []
    curve = commitment_curve(900000, Q1, usage, policy, expected_usage_minor=600000)
    assert final_amount(curve) == max(900000, usage_total)


def test_commitment_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="outside the commitment term"):
        commitment_curve(100, Q1, [(date(2026, 4, 1), 5)], CommitmentPolicy.SHORTFALL_AT_END)
    with pytest.raises(ConfigError, match="expected usage"):
        commitment_curve(100, Q1, [], CommitmentPolicy.SCALED_CONSUMPTION)
    with pytest.raises(ConfigError, match="negative"):
        commitment_curve(-1, Q1, [], CommitmentPolicy.SHORTFALL_AT_END)
    assert CommitmentPolicy.parse("a") is CommitmentPolicy.RATABLE_MINIMUM
