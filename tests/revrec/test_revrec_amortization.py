"""Ratable recognition: the four amortization policies and cumulative rounding."""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction

import pytest

from subledger.core.errors import ConfigError
from subledger.core.money import Rounding
from subledger.core.revrec.amortization import AmortizationPolicy, ServicePeriod, elapsed_fraction
from subledger.core.revrec.calendar import Month
from subledger.core.revrec.curves import Ratable
from subledger.core.revrec.rounding import cumulative_deltas, round_fraction
from subledger.core.revrec.schedule import as_table, daily, monthly, recognized_through

FOUR_MONTHS = ServicePeriod(datetime(2026, 6, 15, 12, tzinfo=UTC), datetime(2026, 10, 13, 12, tzinfo=UTC))


def test_120_over_four_months_by_second() -> None:
    # Jun 15.5 days, Jul 31, Aug 31, Sep 30, Oct 12.5 days of a 120-day period at $1/day.
    schedule = as_table(monthly(Ratable(12000, FOUR_MONTHS, AmortizationPolicy.BY_SECOND)))
    assert schedule == {"2026-06": 1550, "2026-07": 3100, "2026-08": 3100, "2026-09": 3000, "2026-10": 1250}


def test_120_over_four_months_by_day_cuts_off_the_partial_last_day() -> None:
    schedule = as_table(monthly(Ratable(12000, FOUR_MONTHS, AmortizationPolicy.BY_DAY)))
    assert schedule == {"2026-06": 1600, "2026-07": 3100, "2026-08": 3100, "2026-09": 3000, "2026-10": 1200}


def test_120_over_four_months_by_month_evenly_cuts_off_the_partial_last_month() -> None:
    schedule = as_table(monthly(Ratable(12000, FOUR_MONTHS, AmortizationPolicy.MONTHLY_EVEN)))
    assert schedule == {"2026-06": 3000, "2026-07": 3000, "2026-08": 3000, "2026-09": 3000}


def test_120_over_four_months_by_month_with_prorated_first_and_last_month() -> None:
    # Partial June and October earn their time share (15.50 and 12.50); July to September
    # split the remaining 92.00 evenly, 30.666... each, rounded cumulatively:
    # 46.1666 -> 46.17, 76.8333 -> 76.83, 107.50 -> 107.50.
    schedule = as_table(monthly(Ratable(12000, FOUR_MONTHS, AmortizationPolicy.MONTHLY_PRORATED)))
    assert schedule == {"2026-06": 1550, "2026-07": 3067, "2026-08": 3066, "2026-09": 3067, "2026-10": 1250}
    assert sum(schedule.values()) == 12000


def test_31_dollar_month_finalized_jan_15() -> None:
    # Service Jan 15 - Feb 14 (31 days): 17 days in January, 14 in February.
    curve = Ratable(3100, ServicePeriod.from_dates(date(2026, 1, 15), date(2026, 2, 14)))
    assert as_table(monthly(curve)) == {"2026-01": 1700, "2026-02": 1400}
    assert 3100 - recognized_through(curve, date(2026, 1, 31)) == 1400  # deferred at Jan 31


def test_1200_annual_by_day() -> None:
    curve = Ratable(120000, ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 12, 31)))
    assert recognized_through(curve, date(2026, 1, 31)) == 10192  # 1200 x 31/365 = 101.9178
    assert 120000 - recognized_through(curve, date(2026, 1, 31)) == 109808
    schedule = monthly(curve)
    assert len(schedule) == 12 and sum(s.amount_minor for s in schedule) == 120000


def test_365_annual_by_day_is_one_dollar_a_day() -> None:
    curve = Ratable(36500, ServicePeriod.from_dates(date(2019, 1, 1), date(2019, 12, 31)))
    table = as_table(monthly(curve))
    assert (table["2019-01"], table["2019-02"], table["2019-03"]) == (3100, 2800, 3100)


def test_daily_schedule_recognizes_each_day() -> None:
    curve = Ratable(700, ServicePeriod.from_dates(date(2026, 3, 1), date(2026, 3, 7)))
    assert [s.amount_minor for s in daily(curve)] == [100] * 7


def test_cumulative_rounding_keeps_every_period_within_one_minor_unit() -> None:
    # $100.00 over 3 months evenly: 33.33, 33.34, 33.33 (cumulative 33.333 -> 33.33, 66.67, 100).
    curve = Ratable(10000, ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 3, 31)),
                    AmortizationPolicy.MONTHLY_EVEN)
    assert [s.amount_minor for s in monthly(curve)] == [3333, 3334, 3333]


def test_monthly_policy_recognizes_a_month_only_when_it_ends() -> None:
    curve = Ratable(12000, FOUR_MONTHS, AmortizationPolicy.MONTHLY_EVEN)
    assert recognized_through(curve, date(2026, 6, 29)) == 0
    assert recognized_through(curve, date(2026, 6, 30)) == 3000


def test_a_period_within_one_day_is_recognized_that_day() -> None:
    start = datetime(2026, 2, 3, 9, tzinfo=UTC)
    period = ServicePeriod(start, start)
    assert elapsed_fraction(period, AmortizationPolicy.BY_DAY, datetime(2026, 2, 4, tzinfo=UTC)) == 1
    assert elapsed_fraction(period, AmortizationPolicy.BY_SECOND, datetime(2026, 2, 4, tzinfo=UTC)) == 1
    assert as_table(monthly(Ratable(500, period, AmortizationPolicy.MONTHLY_EVEN))) == {"2026-02": 500}


def test_a_service_period_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"ends .* before it starts"):
        ServicePeriod.from_dates(date(2026, 3, 1), date(2026, 2, 1))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        ServicePeriod(datetime(2026, 1, 1), datetime(2026, 2, 1))


def test_unknown_policy_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="by_week") as err:
        AmortizationPolicy.parse("by_week")
    assert "monthly_prorated" in (err.value.fix or "")
    assert AmortizationPolicy.parse(None) is AmortizationPolicy.BY_DAY


@pytest.mark.parametrize(
    ("value", "mode", "expected"),
    [
        (Fraction(5, 2), Rounding.HALF_UP, 3),
        (Fraction(-5, 2), Rounding.HALF_UP, -3),
        (Fraction(5, 2), Rounding.HALF_EVEN, 2),
        (Fraction(7, 2), Rounding.HALF_EVEN, 4),
        (Fraction(7, 3), Rounding.UP, 3),
        (Fraction(-7, 3), Rounding.DOWN, -2),
        (Fraction(-7, 3), Rounding.FLOOR, -3),
        (Fraction(-7, 3), Rounding.CEILING, -2),
        (Fraction(4), Rounding.UP, 4),
    ],
)
def test_exact_rounding_of_fractions(value: Fraction, mode: Rounding, expected: int) -> None:
    assert round_fraction(value, mode) == expected


def test_cumulative_deltas_sum_to_the_rounded_total() -> None:
    assert cumulative_deltas([Fraction(10, 3), Fraction(20, 3), Fraction(10)]) == [3, 4, 3]


def test_month_parsing_and_arithmetic() -> None:
    assert Month.parse("2026-03") == Month(2026, 3)
    assert Month.parse("2026-03-15") == Month(2026, 3)
    assert Month(2026, 12).next() == Month(2027, 1)
    assert Month(2026, 1).previous() == Month(2025, 12)
    assert Month(2024, 2).last_day == date(2024, 2, 29)
    with pytest.raises(ConfigError, match="not a month"):
        Month.parse("March")
