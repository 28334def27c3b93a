"""Deal + line items -> contract terms: exact, and every unreadable term named with its record and property."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subledger.core.terms import load_terms, terms_to_document
from subledger.plugins.hubspot.deal_terms import deal_terms, parse_tiers
from subledger.plugins.hubspot.mapping import HubSpotMapping

MAPPING = HubSpotMapping()


def deal(**props: Any) -> dict[str, Any]:
    base = {"deal_currency_code": "USD", "subledger_term_start": "2026-01-01",
            "subledger_billing_interval": "monthly"}
    return {"id": "9001", "properties": {**base, **props}}


def item(oid: str, **props: Any) -> dict[str, Any]:
    return {"id": oid, "properties": props}


def test_fees_usage_minimum_and_credits() -> None:
    """$12,000 a year licence on a monthly contract; API calls with 10,000 included then $0.02;
    a $1,500 minimum per period; $5,000 prepaid; a one-time onboarding fee stays out of the terms."""
    terms, problems = deal_terms(
        deal(subledger_minimum_commitment="1500", subledger_prepaid_credits="5000.00",
             subledger_term_end="1798675200000"),  # HubSpot date pickers send midnight UTC in ms: 2026-12-31
        [item("1", name="Licence", price="12000", quantity="1", recurringbillingfrequency="annually"),
         item("2", name="API", subledger_meter="api_calls", subledger_included_units="10,000",
              subledger_overage_rate="0.02"),
         item("3", name="Onboarding", price="2500", quantity="1")],
        {}, MAPPING)
    assert problems == []
    doc = terms_to_document(terms)
    assert doc["end_date"] == "2026-12-31"
    licence, api = terms.components
    assert (licence.amount, licence.cadence.interval) == (Decimal("12000"), "year")
    assert (api.allotment.quantity, api.price.unit_price) == (Decimal(10000), Decimal("0.02"))
    assert (terms.commitments[0].amount, terms.commitments[0].per) == (Decimal(1500), "period")
    assert terms.credits[0].amount == Decimal("5000.00")
    assert doc["metadata"] == {"hubspot_deal_id": "9001", "hubspot_one_time_line_items": "3"}


def test_volume_tiers_with_flat_fees_and_a_term_minimum() -> None:
    mapping = HubSpotMapping.model_validate({"deal": {"minimum_per": "term"}})
    terms, _ = deal_terms(
        deal(subledger_minimum_commitment="10000", subledger_term_end="2026-12-31"),
        [item("1", subledger_meter="gb", subledger_tiers="100:0+5.00; 1000:0.10;+:0.05",
              subledger_tier_model="volume")],
        {}, mapping)
    [gb] = terms.components
    assert gb.price.model == "volume"
    assert [(t.up_to, t.unit_price, t.flat_fee) for t in gb.price.tiers] == [
        (Decimal(100), Decimal(0), Decimal("5.00")), (Decimal(1000), Decimal("0.10"), Decimal(0)),
        (None, Decimal("0.05"), Decimal(0))]
    assert terms.commitments[0].per == "term"


def test_a_package_size_prices_the_line_per_package_of_that_many_units_rounded_up() -> None:
    # 25.00 per package of 10,000 calls (as Salesforce's Package_Size__c): 123,000 calls are 13 packages.
    terms, problems = deal_terms(
        deal(), [item("2", subledger_meter="api_calls", subledger_overage_rate="25.00",
                      subledger_package_size="10,000")], {}, MAPPING)
    assert problems == []
    [api] = terms.components
    assert (api.price.model, api.price.package_size, api.price.package_price, api.price.rounding) == (
        "package", Decimal(10000), Decimal("25.00"), "up")


def test_a_package_size_may_come_from_the_product() -> None:
    product = {"id": "701", "properties": {"subledger_meter": "api_calls", "subledger_package_size": "1000"}}
    terms, problems = deal_terms(deal(), [item("2", hs_product_id="701", subledger_overage_rate="4")],
                                 {"701": product}, MAPPING)
    assert problems == []
    assert (terms.components[0].price.model, terms.components[0].price.package_size) == ("package", 1000)


def test_a_package_size_that_is_not_a_whole_number_is_refused_naming_the_property() -> None:
    terms, [problem] = deal_terms(
        deal(), [item("2", subledger_meter="api", subledger_overage_rate="25", subledger_package_size="2.5")],
        {}, MAPPING)
    assert terms is None
    assert (problem.object_id, problem.property) == ("2", "subledger_package_size") and "10000" in problem.fix


def test_prepaid_credits_expire_on_their_own_date_at_its_start() -> None:
    fee = [item("1", price="100", quantity="1", recurringbillingfrequency="monthly")]
    terms, problems = deal_terms(
        deal(subledger_prepaid_credits="1200", subledger_prepaid_credits_expire="2026-07-01",
             subledger_term_end="2026-12-31"), fee, {}, MAPPING)
    assert problems == []
    [credit] = terms.credits
    assert (credit.amount, credit.effective, credit.expires) == (Decimal(1200), date(2026, 1, 1), date(2026, 7, 1))


def test_prepaid_credits_expire_by_default_the_day_after_the_term_ends_and_never_without_an_end() -> None:
    fee = [item("1", price="100", quantity="1", recurringbillingfrequency="monthly")]
    ended, _ = deal_terms(deal(subledger_prepaid_credits="1200", subledger_term_end="2026-12-31"), fee, {}, MAPPING)
    assert ended.credits[0].expires == date(2027, 1, 1)
    open_ended, _ = deal_terms(deal(subledger_prepaid_credits="1200"), fee, {}, MAPPING)
    assert (open_ended.credits[0].effective, open_ended.credits[0].expires) == (None, None)


def test_a_credit_expiry_not_after_the_start_is_rejected_on_its_property() -> None:
    fee = [item("1", price="100", quantity="1", recurringbillingfrequency="monthly")]
    terms, [problem] = deal_terms(
        deal(subledger_prepaid_credits="1200", subledger_prepaid_credits_expire="2025-12-31"), fee, {}, MAPPING)
    assert terms is None and problem.property == "subledger_prepaid_credits_expire"


@pytest.mark.parametrize(("props", "items", "where", "prop"), [
    ({"deal_currency_code": None}, [], "deal 9001", "deal_currency_code"),
    ({"subledger_term_start": "next spring"}, [], "deal 9001", "subledger_term_start"),
    ({"subledger_billing_interval": "fortnightly"}, [], "deal 9001", "subledger_billing_interval"),
    ({"subledger_minimum_commitment": "1.000,00"}, [], "deal 9001", "subledger_minimum_commitment"),
    ({"subledger_prepaid_credits": "100", "subledger_prepaid_credits_expire": "soon"}, [], "deal 9001",
     "subledger_prepaid_credits_expire"),
    ({}, [item("7", subledger_meter="api", subledger_overage_rate="two cents")], "line_item 7",
     "subledger_overage_rate"),
    ({}, [item("7", subledger_meter="api")], "line_item 7", "subledger_overage_rate"),
    ({}, [item("7", subledger_meter="api", subledger_tiers="1000:0.02; inf")], "line_item 7", "subledger_tiers"),
    ({}, [item("7", subledger_meter="api", subledger_tiers="1000:0.02", subledger_tier_model="stairs")],
     "line_item 7", "subledger_tier_model"),
    ({}, [item("7", price="10", recurringbillingfrequency="weekly")], "line_item 7", "recurringbillingfrequency"),
    ({}, [item("7", recurringbillingfrequency="monthly")], "line_item 7", "price"),
])
def test_an_unreadable_term_names_the_record_and_the_property(
    props: dict[str, Any], items: list[dict[str, Any]], where: str, prop: str
) -> None:
    fee = [item("1", price="100", quantity="1", recurringbillingfrequency="monthly")]
    terms, problems = deal_terms(deal(**props), fee + items, {}, MAPPING)
    assert terms is None
    assert [(f"{p.object_type} {p.object_id}", p.property) for p in problems] == [(where, prop)]
    assert problems[0].fix


def test_terms_readable_alone_but_invalid_together_are_rejected_on_the_likely_property() -> None:
    terms, [problem] = deal_terms(
        deal(subledger_term_end="2025-12-31"),
        [item("1", subledger_meter="api", subledger_tiers="1000:0.02; 500:0.01; inf:0.005")], {}, MAPPING)
    assert terms is None and problem.object_id == "9001"
    assert problem.property in ("subledger_tiers", "subledger_term_end") and "Fix" not in problem.reason


def test_a_deal_with_only_one_time_items_has_no_terms() -> None:
    _, [problem] = deal_terms(deal(), [item("3", price="2500", quantity="1")], {}, MAPPING)
    assert problem.property == "line_items"


bounds = st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=5, unique=True).map(sorted)
prices = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False)


@given(bounds, st.data())
def test_tier_text_round_trips_exactly(ups: list[int], data: st.DataObject) -> None:
    unit = [data.draw(prices) for _ in range(len(ups) + 1)]
    text = "; ".join(f"{u:,}:{p}" for u, p in zip(ups, unit, strict=False)) + f"; inf:{unit[-1]}"
    tiers = parse_tiers(text)
    assert [t["up_to"] for t in tiers] == [str(u) for u in ups] + [None]
    assert [Decimal(t["unit_price"]) for t in tiers] == unit
    doc = {"currency": "USD", "start_date": "2026-01-01", "components": [
        {"type": "usage", "id": "u", "meter": "m", "price": {"model": "graduated", "tiers": tiers}}]}
    assert [t.unit_price for t in load_terms(doc).components[0].price.tiers] == unit
