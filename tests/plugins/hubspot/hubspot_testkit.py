"""Shared HubSpot test data: a portal with two customers, their closed-won deals and line items."""

from __future__ import annotations

from typing import Any

# 2026-01-01T00:00:00Z in epoch milliseconds; objects are seeded a minute apart from here.
T0 = 1767225600000
MINUTE = 60_000


def portal() -> dict[str, Any]:
    """Acme (contract: $1,000/month platform fee; 10,000 API calls included, then $0.02 each),
    Globex (storage on graduated tiers from its product, $500 monthly minimum), an open deal,
    and a deal whose tiers are malformed."""
    return {
        "companies": [
            {"id": "101", "modified": T0, "properties": {"name": "Acme Inc.", "domain": "acme.example",
                                                         "subledger_id": "acme"}},
            {"id": "102", "modified": T0 + MINUTE, "properties": {"name": "Globex", "domain": "www.globex.example"}},
            {"id": "103", "modified": T0 + 2 * MINUTE, "properties": {"name": "Initech", "domain": "initech.example"}},
        ],
        "products": [
            {"id": "701", "modified": T0, "properties": {"name": "Storage", "subledger_meter": "storage_gb",
                                                         "subledger_tiers": "100:0; 1,000:0.10; inf:0.05"}},
        ],
        "deals": [
            {"id": "9001", "modified": T0 + 3 * MINUTE, "associations": {"companies": ["101"]}, "properties": {
                "dealname": "Acme 2026", "dealstage": "closedwon", "deal_currency_code": "USD",
                "subledger_term_start": "2026-01-01", "subledger_term_end": "2026-12-31",
                "subledger_billing_interval": "monthly"}},
            {"id": "9002", "modified": T0 + 4 * MINUTE, "associations": {"companies": ["102"]}, "properties": {
                "dealname": "Globex 2026", "dealstage": "closedwon", "deal_currency_code": "EUR",
                "subledger_term_start": "2026-02-01", "subledger_billing_interval": "quarterly",
                "subledger_minimum_commitment": "500.00"}},
            {"id": "9003", "modified": T0 + 5 * MINUTE, "associations": {"companies": ["103"]}, "properties": {
                "dealname": "Initech pilot", "dealstage": "appointmentscheduled", "deal_currency_code": "USD"}},
            {"id": "9004", "modified": T0 + 6 * MINUTE, "associations": {"companies": ["103"]}, "properties": {
                "dealname": "Initech 2026", "dealstage": "closedwon", "deal_currency_code": "USD",
                "subledger_term_start": "2026-01-01", "subledger_billing_interval": "monthly"}},
        ],
        "line_items": [
            {"id": "5001", "modified": T0 + 3 * MINUTE, "associations": {"deals": ["9001"]}, "properties": {
                "name": "Platform", "price": "1000.00", "quantity": "1", "recurringbillingfrequency": "monthly"}},
            {"id": "5002", "modified": T0 + 3 * MINUTE, "associations": {"deals": ["9001"]}, "properties": {
                "name": "API calls", "subledger_meter": "api_calls", "subledger_included_units": "10000",
                "subledger_overage_rate": "0.02"}},
            {"id": "5003", "modified": T0 + 4 * MINUTE, "associations": {"deals": ["9002"]}, "properties": {
                "name": "Storage", "hs_product_id": "701", "quantity": "1"}},
            {"id": "5004", "modified": T0 + 6 * MINUTE, "associations": {"deals": ["9004"]}, "properties": {
                "name": "API calls", "subledger_meter": "api_calls", "subledger_tiers": "1000-0.02; inf:0.01"}},
        ],
    }
