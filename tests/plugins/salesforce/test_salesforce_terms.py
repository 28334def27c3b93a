"""Mapping Salesforce records onto contract terms: worked examples, and every unreadable value named."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subledger.core.errors import ConfigError
from subledger.core.terms import load_terms
from subledger.plugins.salesforce.mapping import build_mapping
from subledger.plugins.salesforce.terms import Records, TermProblem, opportunity_contract, parse_tiers

TODAY = date(2026, 3, 20)
STANDARD = build_mapping(None)
CPQ = build_mapping({"preset": "cpq"})


def opp(**fields: Any) -> dict[str, Any]:
    return {"Id": "006A", "AccountId": "001A", "Name": "Acme 2026", "CloseDate": "2026-01-01",
            "CurrencyIsoCode": "USD", **fields}


def line(lid: str = "00kA", **fields: Any) -> dict[str, Any]:
    return {"Id": lid, "OpportunityId": "006A", "Product2Id": "01tAPI", "Quantity": Decimal(1),
            "UnitPrice": Decimal(0), **fields}


PRODUCTS = {"01tAPI": {"Id": "01tAPI", "Name": "API calls", "ProductCode": "API", "Meter__c": "api_calls"},
            "01tSEAT": {"Id": "01tSEAT", "Name": "Seats", "ProductCode": "SEAT"}}


def contract_of(records: Records, mapping: Any = STANDARD) -> Any:
    return opportunity_contract(records, mapping, system="salesforce", today=TODAY)


def test_included_units_overage_rate_minimum_and_prepaid_credits_become_terms() -> None:
    records = Records(
        opportunity=opp(ContractId="800A"),
        lines=[line(Included_Units__c=Decimal(10000), Overage_Rate__c=Decimal("0.02")),
               line("00kB", Product2Id="01tSEAT", Quantity=Decimal(25), UnitPrice=Decimal("20.00"))],
        contract={"Id": "800A", "StartDate": "2026-01-01", "EndDate": "2026-12-31", "StatusCode": "Activated",
                  "Billing_Interval__c": "Quarterly", "Minimum_Commitment__c": Decimal("1500.00"),
                  "Minimum_Commitment_Period__c": "Term", "Prepaid_Credits__c": Decimal("5000")},
        products=PRODUCTS,
    )
    contract = contract_of(records)
    terms = load_terms(contract.terms)
    assert (contract.status, contract.currency, contract.start_date, contract.end_date) == (
        "active", "USD", date(2026, 1, 1), date(2026, 12, 31))
    assert (terms.billing.interval, terms.billing.interval_count) == ("quarter", 1)
    api, seats = terms.components
    assert (api.id, api.meter, api.price.model, api.price.unit_price, api.allotment.quantity) == (
        "api", "api_calls", "per_unit", Decimal("0.02"), Decimal(10000))
    assert (seats.type, seats.amount, seats.quantity) == ("flat_fee", Decimal("20.00"), Decimal(25))
    [minimum] = terms.commitments
    assert (minimum.kind, minimum.amount, minimum.per) == ("minimum", Decimal("1500.00"), "term")
    [credit] = terms.credits
    assert (credit.amount, credit.effective, credit.expires) == (Decimal(5000), date(2026, 1, 1), date(2027, 1, 1))
    assert terms.metadata == {"salesforce_opportunity": "006A", "salesforce_contract": "800A"}


def test_a_package_size_prices_the_line_per_package_of_that_many_units_rounded_up() -> None:
    # 25.00 per package of 10,000 calls: 123,000 calls are 13 packages, 325.00.
    records = Records(opp(), [line(Overage_Rate__c=Decimal("25.00"), Package_Size__c=Decimal(10000))], None,
                      PRODUCTS)
    price = load_terms(contract_of(records).terms).components[0].price
    assert (price.model, price.package_size, price.package_price, price.rounding) == (
        "package", 10000, Decimal("25.00"), "up")


def test_a_package_size_that_is_not_a_whole_number_is_refused_naming_the_field() -> None:
    records = Records(opp(), [line(Overage_Rate__c=Decimal("25"), Package_Size__c=Decimal("2.5"))], None, PRODUCTS)
    with pytest.raises(TermProblem) as info:
        contract_of(records)
    assert "OpportunityLineItem.Package_Size__c" in str(info.value)
    assert "whole number" in str(info.value)


def test_prepaid_credits_expire_on_their_own_date_before_the_term_ends() -> None:
    records = Records(opp(ContractId="800A"), [line(Overage_Rate__c=Decimal("0.01"))],
                      {"Id": "800A", "StartDate": "2026-01-01", "EndDate": "2026-12-31", "StatusCode": "Activated",
                       "Prepaid_Credits__c": Decimal("6000"), "Prepaid_Credits_Expire__c": "2026-07-01"}, PRODUCTS)
    [credit] = load_terms(contract_of(records).terms).credits
    assert (credit.amount, credit.category, credit.effective, credit.expires) == (
        Decimal(6000), "paid", date(2026, 1, 1), date(2026, 7, 1))


def test_tiers_from_the_price_book_entry_are_graduated_unless_the_line_says_volume() -> None:
    tiers = '[{"up_to": 1000, "unit_price": "0.05"}, {"up_to": null, "unit_price": "0.04", "flat_fee": "10"}]'
    entries = {"01uA": {"Id": "01uA", "Pricing_Tiers__c": tiers}}
    graduated = load_terms(contract_of(Records(opp(), [line(PricebookEntryId="01uA")], None, PRODUCTS,
                                               entries)).terms)
    volume = load_terms(contract_of(Records(opp(), [line(PricebookEntryId="01uA", Tier_Mode__c="Volume")], None,
                                            PRODUCTS, entries)).terms)
    price = graduated.components[0].price
    assert price.model == "graduated"
    assert [(t.up_to, t.unit_price, t.flat_fee) for t in price.tiers] == [
        (Decimal(1000), Decimal("0.05"), Decimal(0)), (None, Decimal("0.04"), Decimal(10))]
    assert volume.components[0].price.model == "volume"


def test_a_usage_lines_sales_price_is_a_flat_fee_beside_the_usage_charge() -> None:
    records = Records(opp(), [line(UnitPrice=Decimal("300"), Overage_Rate__c=Decimal("0.01"))], None, PRODUCTS)
    usage, fee = load_terms(contract_of(records).terms).components
    assert (usage.type, fee.type, fee.id, fee.amount) == ("usage", "flat_fee", "api_fee", Decimal(300))


def test_cpq_line_items_carry_charge_type_billing_type_and_frequency() -> None:
    records = Records(opp(), [
        line(SBQQ__ChargeType__c="Usage", SBQQ__BillingFrequency__c="Annual", Overage_Rate__c=Decimal("0.01")),
        line("00kB", Product2Id="01tSEAT", UnitPrice=Decimal(100), SBQQ__ChargeType__c="Recurring",
             SBQQ__BillingType__c="Arrears", SBQQ__BillingFrequency__c="Annual"),
    ], None, PRODUCTS)
    terms = load_terms(contract_of(records, CPQ).terms)
    assert terms.billing.interval == "year"
    assert [(c.type, getattr(c, "timing", None)) for c in terms.components] == [("usage", None),
                                                                                ("flat_fee", "arrears")]


@pytest.mark.parametrize(
    ("records", "field", "message"),
    [
        (Records(opp(), [line(Pricing_Tiers__c="0-1000: 0.02; 1001+: 0.01")], None, PRODUCTS),
         "OpportunityLineItem.Pricing_Tiers__c", "not valid JSON"),
        (Records(opp(), [line(Pricing_Tiers__c='[{"up_to": 10, "price": "1"}]')], None, PRODUCTS),
         "OpportunityLineItem.Pricing_Tiers__c", "needs unit_price"),
        (Records(opp(CurrencyIsoCode=None), [line(Overage_Rate__c=Decimal("0.02"))], None, PRODUCTS),
         "Opportunity.CurrencyIsoCode or Contract.CurrencyIsoCode", "no currency"),
        (Records(opp(), [line()], None, PRODUCTS),
         "OpportunityLineItem.Overage_Rate__c or PricebookEntry.Overage_Rate__c, OpportunityLineItem.Pricing_Tiers__c"
         " or PricebookEntry.Pricing_Tiers__c or Product2.Pricing_Tiers__c", "without an overage rate"),
        (Records(opp(Billing_Interval__c="Fortnightly"), [line(Overage_Rate__c=Decimal("0.02"))], None, PRODUCTS),
         "Opportunity.Billing_Interval__c", "not a billing interval"),
        (Records(opp(Minimum_Commitment__c=Decimal("10.001")), [line(Overage_Rate__c=Decimal("0.02"))], None,
                 PRODUCTS), "Opportunity.Minimum_Commitment__c", "more than 2 decimal places"),
        (Records(opp(), [line(Overage_Rate__c="two cents")], None, PRODUCTS),
         "OpportunityLineItem.Overage_Rate__c", "not a number"),
        (Records(opp(), [], None, PRODUCTS), "OpportunityLineItem", "no line items"),
    ],
    ids=["tiers-not-json", "tier-without-price", "no-currency", "no-rate", "interval", "minimum-cents",
         "rate-text", "no-lines"],
)
def test_a_value_the_mapping_cannot_read_names_the_record_and_the_field(
    records: Records, field: str, message: str
) -> None:
    with pytest.raises(TermProblem) as raised:
        contract_of(records)
    assert raised.value.field == field
    assert message in str(raised.value)
    assert raised.value.record in str(raised.value) and raised.value.fix


def test_a_single_currency_org_names_its_currency_in_the_mapping() -> None:
    mapping = build_mapping({"contracts": {"default_currency": "EUR"}})
    records = Records(opp(CurrencyIsoCode=None), [line(Overage_Rate__c=Decimal("0.02"))], None, PRODUCTS)
    assert contract_of(records, mapping).currency == "EUR"


def test_a_bad_mapping_file_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"terms.tiers: 'Quote.Tiers__c' is not Object.Field"):
        build_mapping({"terms": {"tiers": ["Quote.Tiers__c"]}})
    with pytest.raises(ConfigError, match=r"write_back\.fields"):
        build_mapping({"write_back": {"fields": {"mrr": "MRR__c"}}})


@given(st.lists(st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False), min_size=1, max_size=6,
                unique=True),
       st.lists(st.decimals(min_value=0, max_value=100, places=6, allow_nan=False), min_size=7, max_size=7))
def test_tier_text_round_trips_exactly(bounds: list[Decimal], prices: list[Decimal]) -> None:
    ups = [*sorted(bounds)[:-1], None]
    text = "[" + ", ".join(f'{{"up_to": {"null" if u is None else u}, "unit_price": "{p}"}}'
                           for u, p in zip(ups, prices, strict=False)) + "]"
    parsed = parse_tiers(text, "OpportunityLineItem 00kA", "OpportunityLineItem.Pricing_Tiers__c")
    assert [t["up_to"] for t in parsed] == ups
    assert [t["unit_price"] for t in parsed] == prices[:len(ups)]
