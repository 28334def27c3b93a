"""Properties the engine keeps for any input (hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from rating_support import make_terms, tiers

from subledger.core.money import to_minor
from subledger.core.rating import (
    Grant,
    UsageAggregate,
    compile_terms,
    rate_period,
    rate_periods,
    usage_queries,
)
from subledger.core.rating.credits import CreditBook, opening_balances
from subledger.core.rating.lines import CHARGE_KINDS
from subledger.core.rating.periods import BillingPeriod
from subledger.core.rating.tiers import graduated, package, per_unit, volume

prices = st.decimals(min_value=0, max_value=1000, places=4)
quantities = st.decimals(min_value=0, max_value=10**7, places=3)


@st.composite
def tier_tuples(draw: st.DrawFn) -> tuple:
    bounds = sorted(draw(st.sets(st.decimals(min_value=Decimal("0.001"), max_value=10**6, places=3),
                                 max_size=5)))
    return tuple((b, draw(prices), draw(prices)) for b in [*bounds, None])


@settings(max_examples=300)
@given(tier_tuples(), quantities)
def test_graduated_amount_is_the_sum_of_its_tier_amounts(rows: tuple, quantity: Decimal) -> None:
    amount, charges = graduated(quantity, rows)
    assert amount == sum(c.amount for c in charges)
    assert sum(c.quantity for c in charges) == quantity
    assert all(c.amount == c.quantity * c.unit_price + c.flat_fee for c in charges)
    # every tier below the one the quantity reaches is full
    below = Decimal(0)
    for charge in charges[:-1]:
        up_to = rows[charge.tier][0]
        assert charge.quantity == up_to - below
        below = up_to


@settings(max_examples=300)
@given(tier_tuples(), quantities, quantities, prices, st.decimals(min_value=1, max_value=1000, places=2),
       st.booleans())
def test_amount_never_decreases_as_quantity_rises(
    rows: tuple, a: Decimal, b: Decimal, price: Decimal, size: Decimal, round_up: bool
) -> None:
    low, high = sorted((a, b))
    assert graduated(low, rows)[0] <= graduated(high, rows)[0]
    assert per_unit(low, price) <= per_unit(high, price)
    assert package(low, size, price, round_up)[0] <= package(high, size, price, round_up)[0]


def test_volume_pricing_is_the_documented_exception_to_monotony() -> None:
    # All units move to the cheaper tier once the total crosses a bound (Stripe's semantics).
    rows = ((Decimal(10), Decimal("0.50"), Decimal(0)), (None, Decimal("0.40"), Decimal(0)))
    assert volume(Decimal(10), rows)[0] == Decimal("5.00")
    assert volume(Decimal(11), rows)[0] == Decimal("4.40")


@settings(max_examples=200, deadline=None)
@given(
    start=st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31)),
    anchor=st.one_of(st.none(), st.integers(1, 31)),
    interval=st.sampled_from([("month", 1), ("month", 2), ("quarter", 1), ("year", 1), ("month", 6)]),
    amount=st.decimals(min_value=0, max_value=10**6, places=4),
    quantity=st.integers(1, 50),
)
def test_proration_of_a_full_period_equals_the_full_fee(
    start: date, anchor: int | None, interval: tuple, amount: Decimal, quantity: int
) -> None:
    terms = make_terms(
        [{"type": "flat_fee", "id": "fee", "amount": str(amount), "quantity": quantity}],
        start_date=start.isoformat(), end_date=(start + timedelta(days=800)).isoformat(),
        billing={"interval": interval[0], "interval_count": interval[1], "anchor_day": anchor},
    )
    plan = compile_terms(terms)
    full = [p for p in plan.periods() if not p.is_partial]
    assert full, "an 800-day term holds at least one full period of a year or less"
    for period in full[:3]:
        [line] = rate_period(plan, period, {}).lines
        assert line.exact_amount == amount * quantity and line.proration is None
        assert line.amount == to_minor(amount * quantity, "USD")
    for period in plan.periods():
        [line] = rate_period(plan, period, {}).lines
        assert line.amount <= to_minor(amount * quantity, "USD")


@st.composite
def grant_lists(draw: st.DrawFn) -> list[Grant]:
    count = draw(st.integers(1, 6))
    grants = []
    for i in range(count):
        effective = datetime(2026, 1, 1, tzinfo=UTC) - timedelta(days=draw(st.integers(0, 400)))
        expires = draw(st.one_of(st.none(), st.integers(0, 120)))
        grants.append(Grant(
            id=f"g{i}", money=True, amount=draw(st.integers(0, 50_000)), currency="USD",
            effective_at=effective,
            expires_at=None if expires is None else datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=expires),
            priority=draw(st.integers(0, 2)),
        ))
    return grants


@settings(max_examples=300)
@given(grant_lists(), st.lists(st.integers(0, 80_000), min_size=1, max_size=4))
def test_credits_never_go_negative_and_follow_the_draw_down_order(grants: list[Grant], dues: list[int]) -> None:
    ordered = tuple(sorted(grants, key=Grant.order_key))
    state = opening_balances(ordered)
    start = date(2026, 1, 1)
    for due in dues:
        end = start + timedelta(days=31)
        period = BillingPeriod(0, start, end, start, end)
        book = CreditBook(ordered, state, period, "c")
        usable = [g for g in ordered if g.usable_in(period.start_at, period.end_at)]
        before = {g.id: book.balance(g.id) for g in ordered}
        draws = dict((g.id, amount) for g, amount in book.draw_money(due, {}))
        assert sum(draws.values()) <= due
        for g in ordered:
            assert 0 <= book.balance(g.id) <= before[g.id]
        # a grant is drawn only when every usable grant before it in the order is empty
        for i, g in enumerate(usable):
            if draws.get(g.id):
                assert all(book.balance(h.id) == 0 for h in usable[:i])
        # the charges are paid in full unless the usable credit ran out
        assert sum(draws.values()) == min(due, sum(before[g.id] for g in usable))
        state = book.close()
        assert all(b.balance >= 0 for b in state.values())
        for g in ordered:
            if g.expires_at is not None and g.expires_at <= period.end_at:
                assert state[g.id].balance == 0
        start = end


COMPONENTS = [
    {"type": "flat_fee", "id": "fee", "amount": "49.995"},
    {"type": "usage", "id": "grad", "meter": "a",
     "price": {"model": "graduated", "tiers": tiers((100, "0.125", "1.5"), (None, "0.0333", "0"))}},
    {"type": "usage", "id": "vol", "meter": "b",
     "price": {"model": "volume", "tiers": tiers((1000, "0.0075", "2"), (None, "0.0051", "3"))}},
    {"type": "usage", "id": "pkg", "meter": "c",
     "price": {"model": "package", "package_size": 7, "package_price": "1.111"}},
]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.decimals(min_value=0, max_value=10**6, places=2), min_size=3, max_size=3),
       st.sampled_from(["half_up", "half_even", "down", "up", "floor", "ceiling"]))
def test_the_currency_exponent_changes_only_rounding(quantities: list[Decimal], rounding: str) -> None:
    ratings = {}
    mode = make_terms(COMPONENTS, rounding=rounding).rounding
    for currency in ("USD", "JPY", "KWD", "CLF"):
        plan = compile_terms(make_terms(COMPONENTS, currency=currency, rounding=rounding))
        period = plan.periods()[1]
        usage = {q: [UsageAggregate(n)] for q, n in zip(usage_queries(plan, period), quantities, strict=True)}
        ratings[currency] = rate_period(plan, period, usage)
    exact = {c: [(ln.key, ln.quantity, ln.exact_amount) for ln in r.lines] for c, r in ratings.items()}
    assert exact["USD"] == exact["JPY"] == exact["KWD"] == exact["CLF"]
    for currency, rated in ratings.items():
        for line in rated.lines:
            assert line.kind in CHARGE_KINDS
            assert line.amount == to_minor(line.exact_amount, currency, mode)
        assert rated.total == sum(line.amount for line in rated.lines)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=12, max_size=12), st.integers(0, 20_000))
def test_a_year_is_deterministic_and_its_totals_are_the_sum_of_lines(monthly: list[int], credit: int) -> None:
    terms = make_terms(COMPONENTS[:2], credits=[{"id": "g", "amount": str(credit)}],
                       commitments=[{"id": "m", "kind": "minimum", "amount": "60"}])
    plan = compile_terms(terms)
    usage = {}
    for period, n in zip(plan.periods(), monthly, strict=True):
        [query] = usage_queries(plan, period)
        usage[query] = [UsageAggregate(Decimal(n))]
    year = rate_periods(plan, usage)
    assert len(year) == 12 and year == rate_periods(plan, usage)
    drawn = -sum(ln.amount for r in year for ln in r.lines if ln.kind == "credit")
    assert drawn <= credit * 100
    assert year[-1].state.credits["g"].balance == credit * 100 - drawn
    for rated in year:
        assert rated.total == sum(line.amount for line in rated.lines) >= 0
