"""A Stripe price maps onto contract terms exactly, and what cannot be mapped is reported.

The property at the end is the point: for any metered Stripe price and quantity, the
amount Stripe bills (``arithmetic.line_amount``, the sandbox's own billing math) equals
the amount subledger's rating engine computes from the mapped contract terms.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subledger.core.connector import UsageEventIn
from subledger.core.rating import aggregate_events, compile_terms, rate_period, usage_queries
from subledger.core.terms import load_terms
from subledger.plugins.stripe.arithmetic import line_amount
from subledger.plugins.stripe.prices import subscription_contract

START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
METER = {"id": "mtr_1", "event_name": "api_calls", "default_aggregation": {"formula": "sum"}}


def price(pid: str = "price_1", *, usage: str = "metered", **fields: Any) -> dict[str, Any]:
    base = {"id": pid, "object": "price", "currency": "usd", "billing_scheme": "per_unit", "product": "prod_1",
            "unit_amount_decimal": None, "tiers_mode": None, "transform_quantity": None, "nickname": None,
            "tax_behavior": "unspecified",
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": usage,
                          "meter": "mtr_1" if usage == "metered" else None, "aggregate_usage": None}}
    if "recurring" in fields:
        base["recurring"] = {**base["recurring"], **fields.pop("recurring")}
    return {**base, **fields}


def subscription(*items: tuple[dict[str, Any], int | None], **fields: Any) -> dict[str, Any]:
    sub = {"id": "sub_1", "customer": "cus_1", "currency": "usd", "status": "active", "start_date": START,
           "billing_cycle_anchor": START, "current_period_start": START, "current_period_end": START + 31 * 86400,
           "cancel_at": None, "ended_at": None, "cancel_at_period_end": False, "trial_end": None, "trial_start": None,
           "discount": None, "collection_method": "charge_automatically"}
    sub.update(fields)
    sub["items"] = {"data": [{"id": f"si_{n}", "price": p, "quantity": q} for n, (p, q) in enumerate(items)]}
    return sub


def mapped(sub: dict[str, Any], extra_prices: list[dict[str, Any]] = ()) -> Any:  # type: ignore[assignment]
    items = sub["items"]["data"]
    prices = {i["price"]["id"]: i["price"] for i in items} | {p["id"]: p for p in extra_prices}
    return subscription_contract(sub, items, system="stripe", prices=prices, products={"prod_1": {"name": "API"}},
                                 meters={"mtr_1": METER})


def component(sub: dict[str, Any]) -> dict[str, Any]:
    result = mapped(sub)
    assert result.contract is not None, result.findings
    return result.contract.terms["components"][0]


# -- worked examples ------------------------------------------------------------------------


def test_licensed_per_unit_price_is_a_flat_fee_per_seat() -> None:
    fee = component(subscription((price(usage="licensed", unit_amount_decimal=Decimal(2500)), 4)))
    assert (fee["type"], fee["amount"], fee["quantity"], fee["timing"]) == ("flat_fee", "25.00", "4", "advance")


def test_licensed_transform_quantity_bills_whole_packs() -> None:
    """12 seats sold in packs of 5, rounded up: 3 packs at $10."""
    fee = component(subscription((price(usage="licensed", unit_amount_decimal=Decimal(1000),
                                        transform_quantity={"divide_by": 5, "round": "up"}), 12)))
    assert (fee["amount"], fee["quantity"]) == ("10.00", "3")


def test_licensed_volume_tiers_become_the_total_at_the_current_quantity() -> None:
    """25 seats on volume tiers (up to 10 at $20, then $15): all 25 at $15 = $375."""
    tiers = [{"up_to": 10, "unit_amount_decimal": Decimal(2000), "flat_amount_decimal": None},
             {"up_to": None, "unit_amount_decimal": Decimal(1500), "flat_amount_decimal": None}]
    fee = component(subscription((price(usage="licensed", billing_scheme="tiered", tiers_mode="volume", tiers=tiers),
                                  25)))
    assert (fee["amount"], fee["quantity"]) == ("375.00", "1")


def test_metered_prices_map_to_usage_price_models() -> None:
    per_unit = component(subscription((price(unit_amount_decimal=Decimal("0.25")), None)))
    assert per_unit["price"] == {"model": "per_unit", "unit_price": "0.0025"}
    package = component(subscription((price(unit_amount_decimal=Decimal(200),
                                            transform_quantity={"divide_by": 1000, "round": "down"}), None)))
    assert package["price"] == {"model": "package", "package_size": "1000", "package_price": "2.00",
                                "rounding": "down"}
    graduated = component(subscription((price(billing_scheme="tiered", tiers_mode="graduated", tiers=[
        {"up_to": 100, "unit_amount_decimal": Decimal(0), "flat_amount_decimal": Decimal(500)},
        {"up_to": None, "unit_amount_decimal": Decimal("1.5"), "flat_amount_decimal": None}]), None)))
    assert graduated["price"]["tiers"] == [{"up_to": "100", "unit_price": "0.00", "flat_fee": "5.00"},
                                           {"unit_price": "0.015", "flat_fee": "0.00"}]
    assert (graduated["meter"], graduated["aggregation"]) == ("api_calls", "sum")


def test_a_count_meter_is_a_sum_of_one_per_event_and_last_is_latest() -> None:
    for formula, aggregation in (("count", "sum"), ("last", "latest")):
        meter = {**METER, "default_aggregation": {"formula": formula}}
        sub = subscription((price(unit_amount_decimal=Decimal(1)), None))
        result = subscription_contract(sub, sub["items"]["data"], system="stripe",
                                       prices={"price_1": sub["items"]["data"][0]["price"]}, products={},
                                       meters={"mtr_1": meter})
        assert result.contract.terms["components"][0]["aggregation"] == aggregation


def test_a_trial_is_a_full_discount_until_it_ends_and_a_coupon_a_discount() -> None:
    sub = subscription((price(usage="licensed", unit_amount_decimal=Decimal(900)), 1),
                       trial_start=START, trial_end=START + 14 * 86400,
                       discount={"start": START, "end": None,
                                 "coupon": {"id": "launch", "percent_off": 10, "duration": "repeating",
                                            "duration_in_months": 3}})
    discounts = mapped(sub).contract.terms["discounts"]
    assert discounts == [
        {"id": "stripe_trial", "percent": "100", "starts": "2026-01-01", "ends": "2026-01-15"},
        {"id": "coupon_launch", "percent": "10", "starts": "2026-01-01", "periods": 3},
    ]


def test_multi_currency_prices_use_the_subscription_currency() -> None:
    eur = price(unit_amount_decimal=Decimal(100),
                currency_options={"eur": {"unit_amount": 90, "unit_amount_decimal": Decimal(90)}})
    fee = component(subscription((eur, None), currency="eur"))
    assert fee["price"] == {"model": "per_unit", "unit_price": "0.90"}


def test_cancellation_sets_the_inclusive_end_date() -> None:
    sub = subscription((price(usage="licensed", unit_amount_decimal=Decimal(100)), 1), cancel_at_period_end=True)
    assert mapped(sub).contract.end_date.isoformat() == "2026-01-31"  # the period ends Feb 1 00:00


# -- what cannot be mapped --------------------------------------------------------------------


@pytest.mark.parametrize(("sub", "field", "words"), [
    (subscription((price(unit_amount_decimal=Decimal(1), recurring={"interval": "week"}), None)),
     "items[0].price.recurring.interval", "weekly billing interval"),
    (subscription((price(unit_amount_decimal=Decimal(1), recurring={"meter": None, "aggregate_usage": "last_ever"}),
                   None)), "items[0].price.recurring.aggregate_usage", "last value ever"),
    (subscription((price(billing_scheme="tiered", tiers_mode="graduated"), None)), "items[0].price.tiers",
     "without its tiers"),
    (subscription((price(unit_amount_decimal=Decimal(1)), None), currency="gbp"), "items[0].price.currency",
     "no GBP currency option"),
    (subscription((price(usage="licensed", unit_amount_decimal=Decimal(1)), 1),
                  discount={"coupon": {"id": "c", "amount_off": 500, "currency": "eur", "duration": "once"}}),
     "discount.coupon.currency", "in eur"),
])
def test_unrepresentable_features_block_the_contract(sub: dict[str, Any], field: str, words: str) -> None:
    result = mapped(sub)
    assert result.contract is None
    assert result.findings[0].field == field and result.findings[0].blocking
    assert words in result.findings[0].reason and result.findings[0].fix


def test_features_that_do_not_change_prices_are_reported_beside_the_contract() -> None:
    item_price = price(usage="licensed", unit_amount_decimal=Decimal(100), tax_behavior="inclusive")
    sub = subscription((item_price, 1), pause_collection={"behavior": "void"}, schedule="sub_sched_1")
    result = mapped(sub)
    assert result.contract is not None
    assert sorted(f.field for f in result.findings) == ["items[0].price.tax_behavior", "pause_collection", "schedule"]
    assert not any(f.blocking for f in result.findings)
    assert result.contract.terms["metadata"]["not_represented"] == "items[0].price.tax_behavior, pause_collection, " \
        "schedule"


# -- the property: Stripe's bill == subledger's rating of the mapped terms ------------------------

cents = st.decimals(min_value=0, max_value=10_000, places=4).map(lambda d: d.normalize())


@st.composite
def metered_prices(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["per_unit", "package", "graduated", "volume"]))
    if kind in ("per_unit", "package"):
        transform = None
        if kind == "package":
            transform = {"divide_by": draw(st.integers(1, 500)), "round": draw(st.sampled_from(["up", "down"]))}
        return price(unit_amount_decimal=draw(cents), transform_quantity=transform)
    bounds = sorted(draw(st.sets(st.integers(1, 5000), min_size=0, max_size=3)))
    tiers = [{"up_to": b, "unit_amount_decimal": draw(cents),
              "flat_amount_decimal": draw(st.one_of(st.none(), st.integers(0, 10_000).map(Decimal)))}
             for b in [*bounds, None]]
    return price(billing_scheme="tiered", tiers_mode=kind, tiers=tiers)


@settings(max_examples=150, deadline=None)
@given(metered_prices(), st.decimals(min_value=0, max_value=20_000, places=2))
def test_stripe_and_the_rating_engine_agree_on_every_metered_price(stripe_price: dict[str, Any],
                                                                   quantity: Decimal) -> None:
    result = mapped(subscription((stripe_price, None)))
    assert result.contract is not None, result.findings
    terms = load_terms(result.contract.terms)
    plan = compile_terms(terms, contract_id="sub_1", system="stripe")
    period = plan.periods(until=date(2026, 1, 15))[0]
    event = UsageEventIn("e1", "cus_1", "api_calls", quantity, datetime(2026, 1, 2, tzinfo=UTC), {}, "h")
    rated = rate_period(plan, period, aggregate_events([event], usage_queries(plan, period)))
    usage_lines = [line for line in rated.lines if line.kind == "usage"]
    assert sum(line.amount for line in usage_lines) == line_amount(stripe_price, quantity)


def test_the_property_holds_for_a_worked_graduated_example() -> None:
    """1500 calls: 1000 at 0.5c = $5, then 500 free plus the $1 flat fee = $6.00."""
    tiers = [{"up_to": 1000, "unit_amount_decimal": Decimal("0.5"), "flat_amount_decimal": None},
             {"up_to": None, "unit_amount_decimal": Decimal(0), "flat_amount_decimal": Decimal(100)}]
    assert line_amount(price(billing_scheme="tiered", tiers_mode="graduated", tiers=tiers), Decimal(1500)) == 600
    assert timedelta(days=1)  # keeps the import list honest for readers copying the example
