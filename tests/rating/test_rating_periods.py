"""Billing periods, anchors, proration by day, and flat-fee cadences."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from rating_support import make_terms, rate_one

from subledger.core.errors import ConfigError
from subledger.core.rating import compile_terms
from subledger.core.rating.periods import add_months, schedule, select_period
from subledger.core.rating.proration import prorate

FEE = {"type": "flat_fee", "id": "fee", "amount": "31"}


def starts(periods: list) -> list[tuple[date, date]]:
    return [(p.start, p.end) for p in periods]


def test_anchor_past_month_end_falls_on_the_last_day() -> None:
    grid = schedule(date(2026, 1, 31), date(2026, 5, 30), 1, None)
    assert starts(grid.periods()) == [
        (date(2026, 1, 31), date(2026, 2, 28)),
        (date(2026, 2, 28), date(2026, 3, 31)),
        (date(2026, 3, 31), date(2026, 4, 30)),
        (date(2026, 4, 30), date(2026, 5, 31)),
    ]
    assert add_months(2024, 1, 1, 31) == date(2024, 2, 29)  # leap year


def test_start_between_anchors_gives_a_partial_first_period() -> None:
    grid = schedule(date(2026, 1, 10), date(2026, 3, 31), 1, 1)
    first, second, third = grid.periods()
    assert (first.start, first.end, first.cycle_start, first.cycle_end) == (
        date(2026, 1, 10), date(2026, 2, 1), date(2026, 1, 1), date(2026, 2, 1))
    assert first.is_partial and (first.days, first.cycle_days) == (22, 31)
    assert not second.is_partial and (third.start, third.end) == (date(2026, 3, 1), date(2026, 4, 1))
    assert [p.index for p in (first, second, third)] == [0, 1, 2]


def test_anchor_after_the_start_day_uses_the_previous_cycle() -> None:
    grid = schedule(date(2026, 1, 10), None, 1, 15)
    assert starts(grid.periods(until=date(2026, 2, 20))) == [
        (date(2026, 1, 10), date(2026, 1, 15)),  # part of the cycle 15 Dec - 15 Jan
        (date(2026, 1, 15), date(2026, 2, 15)),
        (date(2026, 2, 15), date(2026, 3, 15)),
    ]
    assert select_period(grid, "2025-12").start == date(2026, 1, 10)
    assert select_period(grid, "2026-01").start == date(2026, 1, 15)
    assert select_period(grid, "2026-02-20").start == date(2026, 2, 15)


def test_inclusive_end_date_makes_a_partial_last_period() -> None:
    grid = schedule(date(2026, 1, 1), date(2026, 6, 15), 1, None)
    last = grid.periods()[-1]
    assert (last.start, last.end, last.days, last.cycle_days) == (date(2026, 6, 1), date(2026, 6, 16), 15, 30)


def test_quarterly_periods_and_selecting_a_month_without_a_start() -> None:
    grid = schedule(date(2026, 1, 1), date(2026, 12, 31), 3, None)
    assert [p.start.month for p in grid.periods()] == [1, 4, 7, 10]
    with pytest.raises(ConfigError) as info:
        select_period(grid, "2026-02")
    assert "periods start on 2026-01-01 and 2026-04-01" in str(info.value)
    assert "2026-04" in info.value.fix


@pytest.mark.parametrize("selector", ["2027-01", "2025-11", "2026-13", "26-03", "2026-02-30"])
def test_bad_or_outside_periods_are_refused(selector: str) -> None:
    grid = schedule(date(2026, 1, 1), date(2026, 12, 31), 1, None)
    with pytest.raises(ConfigError):
        select_period(grid, selector)


def test_open_term_needs_an_until() -> None:
    grid = schedule(date(2026, 1, 1), None, 1, None)
    with pytest.raises(ValueError, match="open-ended"):
        grid.periods()
    assert len(grid.periods(until=date(2026, 12, 1))) == 12


def test_prorate_is_exact_for_a_full_period_and_by_day_otherwise() -> None:
    assert prorate(Decimal("99.99"), 31, 31) == Decimal("99.99")
    assert prorate(Decimal("31"), 10, 31) == Decimal(10)
    rated = rate_one(make_terms([FEE], start_date="2026-03-11", billing={"anchor_day": 1}), period="2026-03")
    [line] = rated.lines
    assert line.proration == (21, 31) and line.amount == 21_00  # $31 x 21/31


def test_proration_none_charges_a_partial_period_in_full() -> None:
    fee = {**FEE, "proration": "none"}
    rated = rate_one(make_terms([fee], start_date="2026-03-11", billing={"anchor_day": 1}), period="2026-03")
    assert rated.lines[0].amount == 31_00 and rated.lines[0].proration is None


def test_advance_is_billed_at_the_start_and_arrears_at_the_end() -> None:
    terms = make_terms([FEE, {**FEE, "id": "later", "timing": "arrears"}])
    advance, arrears = rate_one(terms).lines
    assert (advance.billed_on, arrears.billed_on) == (date(2026, 3, 1), date(2026, 4, 1))
    assert advance.service_start == arrears.service_start == date(2026, 3, 1)


def test_annual_fee_on_a_monthly_contract() -> None:
    terms = make_terms([
        {"type": "flat_fee", "id": "platform", "amount": "1200", "cadence": {"interval": "year"}},
        {"type": "flat_fee", "id": "support", "amount": "1200", "timing": "arrears",
         "cadence": {"interval": "year"}},
    ])
    plan = compile_terms(terms)
    by_month = {p.start.month: rate_one(terms, period=p.start.strftime("%Y-%m")).lines for p in plan.periods()}
    assert [(ln.component, ln.amount) for ln in by_month[1]] == [("platform", 1200_00)]
    assert [(ln.component, ln.amount) for ln in by_month[12]] == [("support", 1200_00)]
    assert all(not by_month[m] for m in range(2, 12))
    assert (by_month[1][0].service_start, by_month[1][0].service_end) == (date(2026, 1, 1), date(2027, 1, 1))


def test_annual_fee_for_a_short_term_is_prorated_by_day() -> None:
    terms = make_terms([{"type": "flat_fee", "id": "platform", "amount": "365",
                         "cadence": {"interval": "year"}}], end_date="2026-03-31")
    [line] = rate_one(terms, period="2026-01").lines
    assert line.proration == (90, 365) and line.amount == 90_00
    assert line.service_end == date(2026, 4, 1)


def test_quarterly_fee_in_advance_on_monthly_billing() -> None:
    terms = make_terms([{"type": "flat_fee", "id": "q", "amount": "300", "cadence": {"interval": "quarter"}}])
    charged = [m for m in range(1, 13) if rate_one(terms, period=f"2026-{m:02d}").lines]
    assert charged == [1, 4, 7, 10]


def test_monthly_fee_on_quarterly_billing_gives_one_line_per_month() -> None:
    terms = make_terms([{"type": "flat_fee", "id": "m", "amount": "10", "cadence": {"interval": "month"}}],
                       billing={"interval": "quarter"})
    lines = rate_one(terms, period="2026-04").lines
    assert [(ln.service_start.month, ln.amount) for ln in lines] == [(4, 10_00), (5, 10_00), (6, 10_00)]
    assert len({ln.key for ln in lines}) == 3


def test_seats_multiply_the_fee() -> None:
    [line] = rate_one(make_terms([{**FEE, "amount": "12.50", "quantity": 8}])).lines
    assert (line.quantity, line.unit_price, line.amount) == (8, 12.5, 100_00)
