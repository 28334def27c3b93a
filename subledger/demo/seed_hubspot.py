"""Part of the company's contracts in HubSpot: the HubSpot sandbox's seed document and connection.

:func:`hubspot_fixture` is a pure function from customers to the HubSpot sandbox's
documented fixture format (``docs/connectors/hubspot.md``, "The sandbox"): a company per
customer (its canonical id in the property the mapping reads as the customer link), a
closed-won deal per customer holding the contract header (start, monthly billing, USD,
minimum commitment, prepaid credits and their expiry) and its line items (the ``api_calls``
usage line, and the platform fee where sold). Each customer gets exactly the terms
:func:`subledger.demo.seed.salesforce_fixture` gives it in Salesforce. Property names come
from the connector's default mapping, so :func:`hubspot_config` needs no mapping.
"""

from __future__ import annotations

from typing import Any

from subledger.demo.company import CREDIT_EXPIRES, CURRENCY, METER, YEAR_START, Company, Customer, Plan
from subledger.plugins.hubspot.mapping import HubSpotMapping
from subledger.plugins.hubspot.sandbox import DEFAULT_TOKEN

MAPPING = HubSpotMapping()  # the connector's defaults: hubspot_config() does not override them
API_PRODUCT = "7001"
PLATFORM_PRODUCT = "7002"
CLOSE_DATE = "2025-10-20"  # as the Salesforce opportunities


def company_id(c: Customer) -> str:
    """The customer's HubSpot company id."""
    return str(1_000_000 + c.n)


def deal_id(c: Customer) -> str:
    """The customer's closed-won HubSpot deal id."""
    return str(2_000_000 + c.n)


def _line_item_id(c: Customer, k: int) -> str:
    return str(3_000_000 + c.n * 10 + k)


def hubspot_tiers(plan: Plan) -> str:
    """The plan's tiers in the mapping's text format: ``50000:0; inf:0.004``."""
    return "; ".join(f"{'inf' if t.up_to is None else t.up_to}:{t.unit_price}" for t in plan.tiers)


def _usage_properties(plan: Plan) -> dict[str, Any]:
    """The pricing of the ``api_calls`` line: an overage rate (per call or per package) or tiers."""
    li = MAPPING.line_item
    props: dict[str, Any] = {"name": "API calls", li.product_id: API_PRODUCT, li.meter: METER, li.quantity: "1"}
    if plan.unit_price is not None:  # per_unit, minimum, prepaid
        props[li.overage_rate] = str(plan.unit_price)
    elif plan.package_price is not None:  # package: the rate is one package's price, rounded up
        assert plan.package_size is not None and li.package_size is not None
        props[li.overage_rate] = str(plan.package_price)
        props[li.package_size] = str(plan.package_size)
    else:  # graduated, volume, hybrid (whose first tier is the free included calls)
        props[li.tiers] = hubspot_tiers(plan)
        props[li.tier_model] = "volume" if plan.model == "volume" else "graduated"
    return props


def hubspot_fixture(company: Company, customers: list[Customer]) -> dict[str, Any]:
    """The HubSpot sandbox's seed document for ``customers`` (``HubSpotSandbox(fixture=...)``).

    Companies, the two catalog products, one closed-won deal per customer associated with its
    company, and the deal's line items associated with the deal. ``company`` is the company
    the customers belong to (as the other seeds take it; the customers carry their terms).
    """
    cm, dm, li, pm = MAPPING.company, MAPPING.deal, MAPPING.line_item, MAPPING.product
    assert cm.canonical_id and dm.minimum_commitment and dm.prepaid_credits and dm.prepaid_credits_expire
    assert pm.meter
    doc: dict[str, Any] = {
        "companies": [],
        "products": [
            {"id": API_PRODUCT, "properties": {"name": "API calls", pm.meter: METER}},
            {"id": PLATFORM_PRODUCT, "properties": {"name": "Platform"}},
        ],
        "deals": [],
        "line_items": [],
    }
    for c in customers:
        plan = c.plan
        doc["companies"].append({"id": company_id(c), "properties": {
            "name": c.name, "domain": c.domain, cm.canonical_id: c.canonical_id}})
        deal: dict[str, Any] = {
            "dealname": f"{c.name} 2026", "dealstage": dm.closed_won_stages[0], "closedate": CLOSE_DATE,
            dm.currency: CURRENCY, dm.start_date: YEAR_START.isoformat(), dm.billing_interval: "monthly"}
        if plan.minimum is not None:
            deal[dm.minimum_commitment] = f"{plan.minimum:.2f}"  # per monthly period (the default minimum_per)
        if plan.prepaid_credit is not None:
            deal[dm.prepaid_credits] = f"{plan.prepaid_credit:.2f}"
            deal[dm.prepaid_credits_expire] = CREDIT_EXPIRES.isoformat()
        doc["deals"].append({"id": deal_id(c), "associations": {"companies": [company_id(c)]}, "properties": deal})
        doc["line_items"].append({"id": _line_item_id(c, 1), "associations": {"deals": [deal_id(c)]},
                                  "properties": _usage_properties(plan)})
        if plan.platform_fee is not None:
            doc["line_items"].append({"id": _line_item_id(c, 2), "associations": {"deals": [deal_id(c)]},
                                      "properties": {
                                          "name": "Platform", li.product_id: PLATFORM_PRODUCT,
                                          li.price: f"{plan.platform_fee:.2f}", li.quantity: "1",
                                          li.billing_frequency: "monthly"}})
    return doc


def hubspot_config(url: str) -> dict[str, Any]:
    """The ``hubspot`` connection's config (``load_config(HubSpotConfig, ...)``) on a sandbox at ``url``.

    The sandbox's default private-app token; the default mapping reads every property
    :func:`hubspot_fixture` writes, so none is given.
    """
    return {"access_token": DEFAULT_TOKEN, "base_url": url}


__all__ = ["company_id", "deal_id", "hubspot_config", "hubspot_fixture", "hubspot_tiers"]
