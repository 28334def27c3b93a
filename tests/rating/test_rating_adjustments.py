"""Allotments, commitments, discounts, credits, matrix and percentage pricing through the engine."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from rating_support import make_terms, rate_one, unit_usage

from subledger.core.errors import ConfigError
from subledger.core.rating import (
    Grant,
    RatingInputError,
    UsageAggregate,
    compile_terms,
    rate_period,
    rate_periods,
    usage_queries,
)
from subledger.core.rating.lines import CREDIT, DISCOUNT, MAXIMUM_CAP, MINIMUM_TRUE_UP, USAGE

PER_CENT = {"model": "per_unit", "unit_price": "0.01"}
DOLLAR = {"model": "per_unit", "unit_price": "1"}


def rate_year(terms, quantities_by_month: dict[int, dict[str, str]]):  # type: ignore[no-untyped-def]
    """Rate every period of 2026 with usage by month number and component id."""
    plan = compile_terms(terms, contract_id="c-1", system="test")
    usage = {}
    for period in plan.periods():
        month = quantities_by_month.get(period.start.month, {})
        for component, query in zip(plan.usages, usage_queries(plan, period), strict=True):
            if component.id in month:
                usage[query] = (UsageAggregate(Decimal(month[component.id])),)
    return rate_periods(plan, usage)


def kinds(rated) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    return [(line.kind, line.amount) for line in rated.lines]


# ------------------------------------------------------------------------- allotments


def test_rollover_carries_unused_units_up_to_the_cap() -> None:
    terms = make_terms([unit_usage(PER_CENT, allotment={"quantity": 1000, "rollover": True, "rollover_cap": 500})])
    year = rate_year(terms, {1: {"u": "200"}, 2: {"u": "1000"}, 3: {"u": "2000"}})
    jan, feb, mar = (r.lines[0] for r in year[:3])
    assert (jan.included, jan.quantity) == (Decimal(200), 0)  # 800 unused, 500 carried
    assert (feb.included, feb.quantity) == (Decimal(1000), 0)  # 1,500 available, 500 carried again
    assert (mar.included, mar.quantity, mar.amount) == (Decimal(1500), Decimal(500), 5_00)
    assert year[2].state.allotments["u"] == 0


def test_without_rollover_unused_units_lapse() -> None:
    terms = make_terms([unit_usage(PER_CENT, allotment={"quantity": 1000})])
    year = rate_year(terms, {1: {"u": "0"}, 2: {"u": "1500"}})
    assert year[1].lines[0].quantity == 500


def test_term_pool_is_drawn_down_across_periods_then_overage() -> None:
    terms = make_terms([unit_usage(PER_CENT, allotment={"quantity": 10000, "per": "term"})])
    year = rate_year(terms, {1: {"u": "6000"}, 2: {"u": "3000"}, 3: {"u": "2500"}, 4: {"u": "100"}})
    assert [r.lines[0].quantity for r in year[:4]] == [0, 0, 1500, 100]
    assert [r.lines[0].included for r in year[:4]] == [6000, 3000, 1000, 0]
    assert year[3].total == 1_00


# ------------------------------------------------------------------------ commitments


def test_maximum_caps_a_period() -> None:
    terms = make_terms([unit_usage(DOLLAR)], commitments=[{"id": "cap", "kind": "maximum", "amount": "250"}])
    rated = rate_one(terms, {"u": 400})
    assert kinds(rated) == [(USAGE, 400_00), (MAXIMUM_CAP, -150_00)]
    assert rated.total == 250_00
    assert kinds(rate_one(terms, {"u": 100})) == [(USAGE, 100_00)]


def test_per_term_minimum_is_trued_up_in_the_last_period() -> None:
    terms = make_terms([unit_usage(DOLLAR)], end_date="2026-03-31",
                       commitments=[{"id": "annual", "kind": "minimum", "amount": "1000", "per": "term"}])
    year = rate_year(terms, {1: {"u": "200"}, 2: {"u": "300"}, 3: {"u": "100"}})
    assert [r.total for r in year] == [200_00, 300_00, 100_00 + 400_00]
    assert kinds(year[2])[-1] == (MINIMUM_TRUE_UP, 400_00)
    assert year[2].state.term_spend["annual"] == 600_00


def test_minimum_on_some_components_only() -> None:
    terms = make_terms(
        [{"type": "flat_fee", "id": "fee", "amount": "500"}, unit_usage(DOLLAR)],
        commitments=[{"id": "usage-min", "kind": "minimum", "amount": "100", "applies_to": ["u"]}],
    )
    assert kinds(rate_one(terms, {"u": 30}))[-1] == (MINIMUM_TRUE_UP, 70_00)


def test_minimum_counts_spend_net_of_discounts() -> None:
    terms = make_terms([unit_usage(DOLLAR)], commitments=[{"id": "min", "kind": "minimum", "amount": "100"}],
                       discounts=[{"id": "half", "percent": "50", "applies_to": "u"}])
    assert kinds(rate_one(terms, {"u": 120})) == [(USAGE, 120_00), (DISCOUNT, -60_00), (MINIMUM_TRUE_UP, 40_00)]


# -------------------------------------------------------------------------- discounts


def test_percent_discount_on_a_component_for_two_periods() -> None:
    terms = make_terms([unit_usage(DOLLAR)], discounts=[
        {"id": "intro", "percent": "12.5", "applies_to": "u", "periods": 2}])
    year = rate_year(terms, {m: {"u": "99.99"} for m in (1, 2, 3)})
    assert [kinds(r) for r in year[:3]] == [
        [(USAGE, 99_99), (DISCOUNT, -12_50)],  # 12.49875 rounds half up to 12.50
        [(USAGE, 99_99), (DISCOUNT, -12_50)],
        [(USAGE, 99_99)],
    ]


def test_amount_discount_on_the_invoice_never_exceeds_the_charges() -> None:
    terms = make_terms([unit_usage(DOLLAR)], discounts=[{"id": "off", "amount": "25.00", "ends": "2026-04-01"}])
    assert kinds(rate_one(terms, {"u": 10})) == [(USAGE, 10_00), (DISCOUNT, -10_00)]
    assert kinds(rate_one(terms, {"u": 40})) == [(USAGE, 40_00), (DISCOUNT, -25_00)]
    assert kinds(rate_one(terms, {"u": 40}, period="2026-04")) == [(USAGE, 40_00)]


# ---------------------------------------------------------------------------- credits


def grant_terms(*grants: dict, components: list | None = None):  # type: ignore[no-untyped-def]
    return make_terms(components or [unit_usage(DOLLAR)], credits=list(grants))


def test_credits_draw_by_priority_then_expiry_then_age() -> None:
    terms = grant_terms(
        {"id": "late-low", "amount": "100", "priority": 1, "effective": "2026-01-01"},
        {"id": "no-expiry", "amount": "100", "effective": "2025-06-01"},
        {"id": "expires-soon", "amount": "30", "expires": "2026-06-01"},
        {"id": "old", "amount": "40", "effective": "2025-01-01", "expires": "2026-09-01"},
        {"id": "new", "amount": "40", "effective": "2025-02-01", "expires": "2026-09-01"},
    )
    rated = rate_one(terms, {"u": 150}, period="2026-01")
    draws = [(line.component, line.amount) for line in rated.lines if line.kind == CREDIT]
    assert draws == [("expires-soon", -30_00), ("old", -40_00), ("new", -40_00), ("no-expiry", -40_00)]
    assert rated.total == 0


def test_expiry_is_a_movement_and_balances_never_go_negative() -> None:
    terms = grant_terms({"id": "promo", "amount": "50", "category": "promotional", "expires": "2026-02-15"})
    jan, feb, mar = rate_year(terms, {1: {"u": "20"}, 2: {"u": "10"}, 3: {"u": "10"}})[:3]
    assert [(m.kind, m.amount_minor) for m in jan.movements] == [("grant", 50_00), ("draw_down", -20_00)]
    assert [(m.kind, m.amount_minor) for m in feb.movements] == [("draw_down", -10_00), ("expiry", -20_00)]
    assert feb.movements[-1].occurred_at == datetime(2026, 2, 15, tzinfo=UTC)
    assert mar.movements == () and mar.total == 10_00
    assert mar.state.credits["promo"].balance == 0
    assert len({m.entry_key for r in (jan, feb, mar) for m in r.movements}) == 4


def test_a_grant_is_not_used_before_it_is_effective_and_top_ups_arrive_on_their_date() -> None:
    terms = grant_terms({"id": "g", "amount": "10", "effective": "2026-02-01",
                         "top_ups": [{"effective": "2026-03-10", "amount": "100"}]})
    jan, feb, mar = rate_year(terms, {1: {"u": "50"}, 2: {"u": "50"}, 3: {"u": "50"}})[:3]
    assert jan.total == 50_00 and jan.movements == ()
    assert feb.total == 40_00
    assert [(m.kind, m.amount_minor) for m in mar.movements] == [("top_up", 100_00), ("draw_down", -50_00)]
    assert mar.state.credits["g"].balance == 50_00


def test_money_grant_limited_to_components() -> None:
    terms = grant_terms({"id": "api-only", "amount": "100", "applies_to": ["u"]},
                        components=[{"type": "flat_fee", "id": "fee", "amount": "70"}, unit_usage(DOLLAR)])
    rated = rate_one(terms, {"u": 20})
    assert kinds(rated) == [("flat_fee", 70_00), (USAGE, 20_00), (CREDIT, -20_00)]


def test_unit_grant_covers_usage_before_pricing() -> None:
    terms = grant_terms({"id": "free-calls", "units": "500", "meter": "m"},
                        components=[unit_usage(PER_CENT, allotment={"quantity": 1000})])
    jan, feb = rate_year(terms, {1: {"u": "1300"}, 2: {"u": "1300"}})[:2]
    assert (jan.lines[0].included, jan.lines[0].credited, jan.lines[0].quantity) == (1000, 300, 0)
    assert (feb.lines[0].credited, feb.lines[0].quantity, feb.total) == (200, 100, 1_00)
    assert [m.units for m in feb.movements] == [Decimal(-200)]


def test_billing_system_grants_join_the_same_order() -> None:
    terms = grant_terms({"id": "contract-credit", "amount": "10", "priority": 5})
    outside = Grant(id="stripe:cg_1", money=True, amount=5_00, currency="USD",
                    effective_at=datetime(2026, 1, 1, tzinfo=UTC), priority=0)
    plan = compile_terms(terms, extra_grants=[outside])
    period = plan.periods()[0]
    [query] = usage_queries(plan, period)
    rated = rate_period(plan, period, {query: [UsageAggregate(Decimal(12))]})
    assert [(ln.component, ln.amount) for ln in rated.lines if ln.kind == CREDIT] == [
        ("stripe:cg_1", -5_00), ("contract-credit", -7_00)]
    clash = Grant(id="contract-credit", money=True, amount=1, effective_at=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ConfigError, match="used more than once"):
        compile_terms(terms, extra_grants=[clash])


# ------------------------------------------------------------------- matrix, percentage


MATRIX = {
    "type": "usage", "id": "compute", "meter": "hours", "dimensions": ["region", "size"],
    "matrix": [
        {"values": {"region": "eu", "size": "s"}, "price": {"model": "per_unit", "unit_price": "1"}},
        {"values": {"region": "eu", "size": "l"},
         "price": {"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "4", "flat_fee": "5"},
                                                   {"unit_price": "3"}]}},
    ],
}


def matrix_rating(component: dict, answers: list[UsageAggregate]):  # type: ignore[no-untyped-def]
    plan = compile_terms(make_terms([component]))
    period = plan.periods()[2]
    [query] = usage_queries(plan, period)
    assert query.group_by == ("region", "size")
    return rate_period(plan, period, {query: answers})


def test_matrix_prices_each_combination_with_its_own_model() -> None:
    rated = matrix_rating(MATRIX, [
        UsageAggregate(Decimal(12), (("region", "eu"), ("size", "l"))),
        UsageAggregate(Decimal("2.5"), (("region", "eu"), ("size", "s"))),
    ])
    assert [(dict(ln.dimension), ln.amount) for ln in rated.lines] == [
        ({"region": "eu", "size": "s"}, 2_50),
        ({"region": "eu", "size": "l"}, 51_00),  # 10 x 4 + 5, then 2 x 3
    ]
    assert rated.lines[1].key == "usage:compute:2026-03-01:region=eu,size=l"


def test_matrix_combination_without_a_price_is_flagged_not_dropped() -> None:
    rated = matrix_rating(MATRIX, [UsageAggregate(Decimal(7), (("region", "us"), ("size", "s")))])
    unpriced = rated.lines[-1]
    assert (dict(unpriced.dimension), unpriced.usage, unpriced.amount) == ({"region": "us", "size": "s"}, 7, 0)
    assert "unpriced" in dict(unpriced.detail)
    with_default = matrix_rating({**MATRIX, "default_price": {"model": "per_unit", "unit_price": "2"}},
                                 [UsageAggregate(Decimal(7), (("region", "us"), ("size", "s")))])
    assert with_default.lines[-1].amount == 14_00


CARD = {"model": "percentage", "percent": "2.9", "fixed_fee": "0.30", "minimum_fee": "0.50", "maximum_fee": "20"}


def percentage_rating(price: dict, answer: UsageAggregate):  # type: ignore[no-untyped-def]
    plan = compile_terms(make_terms([unit_usage(price)]))
    period = plan.periods()[0]
    [query] = usage_queries(plan, period)
    return rate_period(plan, period, {query: [answer]})


def test_percentage_with_per_transaction_minimum_and_maximum() -> None:
    # $5 -> 0.445 raised to 0.50; $100 -> 3.20; $1,000 -> 29.30 capped at 20.00
    amounts = tuple(Decimal(a) for a in ("5", "100", "1000"))
    rated = percentage_rating(CARD, UsageAggregate(sum(amounts), event_count=3, transactions=amounts))
    [line] = rated.lines
    assert (line.exact_amount, line.amount, line.quantity) == (Decimal("23.70"), 23_70, Decimal(1105))
    assert dict(line.detail)["transactions"] == "3"


def test_basis_points_from_aggregates_when_no_per_transaction_limits() -> None:
    price = {"model": "percentage", "basis_points": "150", "fixed_fee": "0.10"}
    rated = percentage_rating(price, UsageAggregate(Decimal("2000"), event_count=4))
    assert rated.lines[0].amount == 30_40  # 2,000 x 1.5% + 4 x 0.10


def test_percentage_limits_need_the_transactions() -> None:
    with pytest.raises(RatingInputError, match="needs each transaction's amount"):
        percentage_rating(CARD, UsageAggregate(Decimal(100), event_count=1))


def test_negative_usage_is_priced_as_zero_but_kept_as_evidence() -> None:
    [line] = rate_one(make_terms([unit_usage(DOLLAR)]), {"u": "-5"}).lines
    assert (line.usage, line.quantity, line.amount) == (Decimal(-5), 0, 0)


def test_rounding_mode_is_per_contract() -> None:
    price = {"model": "per_unit", "unit_price": "0.005"}
    half_up = rate_one(make_terms([unit_usage(price)]), {"u": 1}).total
    half_even = rate_one(make_terms([unit_usage(price)], rounding="half_even"), {"u": 1}).total
    down = rate_one(make_terms([unit_usage(price)], rounding="down"), {"u": 3}).total
    assert (half_up, half_even, down) == (1, 0, 1)  # 0.5 cent up / to even; 1.5 cents down


def test_same_inputs_same_rating() -> None:
    terms = grant_terms({"id": "g", "amount": "10"})
    assert rate_one(terms, {"u": 7}) == rate_one(terms, {"u": 7})


def test_period_dates_are_whole_utc_days() -> None:
    plan = compile_terms(make_terms([unit_usage(DOLLAR)]))
    [query] = usage_queries(plan, plan.periods()[0])
    assert (query.start, query.end) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    assert plan.periods()[0].end == date(2026, 2, 1)
