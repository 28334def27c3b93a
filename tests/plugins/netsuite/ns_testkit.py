"""Shared set-up for the NetSuite tests: a seeded sandbox and connectors pointed at it."""

from __future__ import annotations

from typing import Any

from subledger.plugins.netsuite.sandbox import (
    DEFAULT_ACCOUNT,
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_TOKEN_ID,
    DEFAULT_TOKEN_SECRET,
    standard_fixture,
)

JAN_15 = 1768435200  # 2026-01-15T00:00:00Z


def seeded_fixture() -> dict[str, Any]:
    """Acme (linked to canonical id ``cus_acme``) and Globex, an invoice each, a payment, a credit memo."""
    doc = standard_fixture()
    doc["clock"] = JAN_15
    doc["customers"] = [
        {"id": "1001", "externalId": "cus_acme", "companyName": "Acme Corp", "email": "ap@acme.example",
         "subsidiary": {"id": "1"}, "currency": {"id": "1"}},
        {"id": "1002", "companyName": "Globex", "email": "billing@globex.example", "subsidiary": {"id": "1"}},
    ]
    doc["invoices"] = [
        {"id": "2001", "tranId": "INV-1", "entity": {"id": "1001"}, "currency": {"id": "1"}, "tranDate": "2026-01-05",
         "item": {"items": [
             {"item": {"id": "501"}, "description": "Platform fee", "quantity": 1, "amount": "500.00",
              "revRecStartDate": "2026-01-01", "revRecEndDate": "2026-01-31"},
             {"item": {"id": "501"}, "description": "API calls", "quantity": 1500, "amount": "1.50",
              "revRecStartDate": "2026-01-01", "revRecEndDate": "2026-01-31"}]}},
        {"id": "2002", "tranId": "INV-2", "entity": {"id": "1002"}, "currency": {"id": "1"}, "tranDate": "2026-01-06",
         "item": {"items": [{"item": {"id": "501"}, "description": "Seats", "quantity": 3, "amount": "90.00"}]}},
    ]
    doc["customer_payments"] = [
        {"id": "3001", "customer": {"id": "1001"}, "currency": {"id": "1"}, "payment": "300.00",
         "tranDate": "2026-01-10", "apply": {"items": [{"doc": {"id": "2001"}, "apply": True, "amount": "300.00"}]}},
    ]
    doc["credit_memos"] = [
        {"id": "4001", "entity": {"id": "1002"}, "currency": {"id": "1"}, "tranDate": "2026-01-07",
         "createdFrom": {"id": "2002"},
         "item": {"items": [{"item": {"id": "501"}, "description": "Seat refund", "amount": "30.00"}]}},
    ]
    return doc


def tba_config(url: str, **overrides: Any) -> dict[str, Any]:
    """A raw TBA config for the sandbox at ``url``."""
    return {"account_id": DEFAULT_ACCOUNT, "base_url": url, "consumer_key": DEFAULT_CONSUMER_KEY,
            "consumer_secret": DEFAULT_CONSUMER_SECRET, "token_id": DEFAULT_TOKEN_ID,
            "token_secret": DEFAULT_TOKEN_SECRET, "invoice_item_id": "501", "page_size": 2, "lookback_seconds": 600,
            **overrides}
