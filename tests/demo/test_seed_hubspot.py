"""The demo's HubSpot seed: each pricing model, read back through the real HubSpot connector from its
sandbox, gives the same contract terms as the Salesforce seed gives the same customer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from subledger.core.model import Contract
from subledger.core.model import Customer as CanonicalCustomer
from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import load_config
from subledger.core.terms import ContractTerms, load_terms
from subledger.demo.company import (
    AS_OF,
    CREDIT_EXPIRES,
    PRICING_MODELS,
    YEAR_START,
    Company,
    Customer,
    generate,
)
from subledger.demo.seed import salesforce_fixture
from subledger.demo.seed_hubspot import company_id, deal_id, hubspot_config, hubspot_fixture
from subledger.plugins.hubspot.config import HubSpotConfig
from subledger.plugins.hubspot.connector import HubSpotConnector
from subledger.plugins.hubspot.sandbox import DEFAULT_TOKEN, HubSpotSandbox
from subledger.plugins.salesforce.mapping import build_mapping
from subledger.plugins.salesforce.terms import Records, opportunity_contract


@pytest.fixture(scope="module")
def company() -> Company:
    company = generate(28)
    counts = {m: sum(c.plan.model == m for c in company.customers) for m in PRICING_MODELS}
    assert min(counts.values()) >= 4, counts
    return company


@pytest.fixture(scope="module")
def chosen(company: Company) -> list[Customer]:
    """One customer of each pricing model."""
    return [next(c for c in company.customers if c.plan.model == m) for m in PRICING_MODELS]


@pytest.fixture(scope="module")
def read_back(company: Company, chosen: list[Customer]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(contracts, customers) by HubSpot id, read through the connector from the seeded sandbox."""
    sandbox = HubSpotSandbox(fixture=hubspot_fixture(company, chosen))
    with SandboxServer(sandbox, host="127.0.0.1") as server:
        config = load_config(HubSpotConfig, hubspot_config(server.url))
        connector = HubSpotConnector(config, connection="hubspot")
        contracts = list(connector.read("contracts", None))
        customers = list(connector.read("customers", None))
    yield ({r.external_id: r for r in contracts if isinstance(r, Contract)},
           {r.external_id: r for r in customers if isinstance(r, CanonicalCustomer)})


def salesforce_terms(company: Company, c: Customer) -> ContractTerms:
    """The terms the Salesforce connector's mapping derives from salesforce_fixture's records of ``c``."""
    doc = salesforce_fixture(company)
    [opp] = [o for o in doc["Opportunity"] if o["Id"] == c.opportunity_id]
    records = Records(
        opportunity=opp,
        lines=[li for li in doc["OpportunityLineItem"] if li["OpportunityId"] == c.opportunity_id],
        contract=next(k for k in doc["Contract"] if k["Id"] == opp["ContractId"]),
        products={p["Id"]: p for p in doc["Product2"]},
        entries={e["Id"]: e for e in doc["PricebookEntry"]},
    )
    contract = opportunity_contract(records, build_mapping(None), system="salesforce", today=AS_OF.date())
    return load_terms(contract.terms)


def comparable(terms: ContractTerms) -> dict[str, Any]:
    """Everything the contract charges, without the systems' own ids, names and metadata (amounts as
    Decimals, so 300 and 300.00 are the same price)."""
    doc = terms.model_dump()
    doc.pop("metadata", None)
    components = []
    for component in doc.pop("components"):
        component.pop("id")
        component.pop("name", None)
        components.append(component)
    doc["components"] = sorted(components, key=lambda comp: comp["type"])  # at most one of each type
    for credit in doc.get("credits") or []:
        credit["effective"] = credit.get("effective") or doc["start_date"]  # the default, said or not
    return doc


def test_the_config_loads_with_the_sandbox_token() -> None:
    config = load_config(HubSpotConfig, hubspot_config("http://127.0.0.1:12112"))
    assert config.access_token.get_secret_value() == DEFAULT_TOKEN
    assert config.base_url == "http://127.0.0.1:12112"
    assert config.mapping is None and config.mapping_file is None


def test_every_customer_is_read_with_its_canonical_link(
    chosen: list[Customer], read_back: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    contracts, customers = read_back
    assert sorted(customers) == sorted(company_id(c) for c in chosen)
    for c in chosen:
        customer = customers[company_id(c)]
        assert (customer.canonical_hint, customer.name, customer.email_domain) == (c.canonical_id, c.name, c.domain)
        assert contracts[deal_id(c)].customer_external_id == company_id(c)
        assert contracts[deal_id(c)].status == "active"


@pytest.mark.parametrize("model", PRICING_MODELS)
def test_hubspot_terms_equal_the_salesforce_terms(
    model: str, company: Company, chosen: list[Customer], read_back: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    contracts, _ = read_back
    c = next(c for c in chosen if c.plan.model == model)
    hubspot = load_terms(contracts[deal_id(c)].terms)
    salesforce = salesforce_terms(company, c)
    assert comparable(hubspot) == comparable(salesforce)

    # And both say what the plan says.
    plan = hubspot
    assert (plan.currency, plan.start_date, plan.end_date) == ("USD", YEAR_START, None)
    assert (plan.billing.interval, plan.billing.interval_count) == ("month", 1)
    usage = [comp for comp in plan.components if comp.type == "usage"]
    fees = [comp for comp in plan.components if comp.type == "flat_fee"]
    [api] = usage
    assert api.meter == "api_calls" and api.allotment is None
    price = api.price
    if model in ("per_unit", "minimum", "prepaid"):
        assert (price.model, price.unit_price) == ("per_unit", c.plan.unit_price)
    elif model == "package":
        assert (price.model, price.package_size, price.package_price, price.rounding) == (
            "package", Decimal(c.plan.package_size or 0), c.plan.package_price, "up")
    else:
        assert price.model == ("volume" if model == "volume" else "graduated")
        assert [(t.up_to, t.unit_price) for t in price.tiers] == [
            (None if t.up_to is None else Decimal(t.up_to), t.unit_price) for t in c.plan.tiers]
    if model == "hybrid":
        assert price.tiers[0].unit_price == 0
        [fee] = fees
        assert (fee.amount, fee.quantity, fee.cadence) == (c.plan.platform_fee, 1, None)
    else:
        assert fees == []
    if model == "minimum":
        [minimum] = plan.commitments
        assert (minimum.kind, minimum.amount, minimum.per) == ("minimum", c.plan.minimum, "period")
    else:
        assert not plan.commitments
    if model == "prepaid":
        [credit] = plan.credits
        assert c.plan.prepaid_credit is not None and c.plan.prepaid_credit > 0
        assert (credit.amount, credit.category, credit.effective, credit.expires) == (
            c.plan.prepaid_credit, "paid", YEAR_START, CREDIT_EXPIRES)
        assert date(2026, 5, 1) == CREDIT_EXPIRES
    else:
        assert not plan.credits
