"""Helpers shared by the Stripe tests: traffic checks against Stripe's contract, fixtures.

Imported by module name (the test directories are not packages).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from subledger.core.sandbox import Exchange
from subledger.core.sandbox.specs import spec_file
from subledger.core.sandbox.validation import OpenAPIContract, shape_mismatches
from subledger.plugins.stripe.sandbox import StripeSandbox

SPEC = "spec3.2023-08-16.json"
FIXTURES_2026 = "fixtures3.2026-07-29.json"
DAY = 86400

# Response objects the 2023 spec lacks, checked against Stripe's 2026 example objects.
NEWER_OBJECTS = {
    "billing.meter": "billing.meter",
    "billing.meter_event": "billing.meter_event",
    "billing.meter_event_summary": "billing.meter_event_summary",
    "billing.credit_grant": "billing.credit_grant",
    "billing.credit_balance_transaction": "billing.credit_balance_transaction",
    "billing.credit_balance_summary": "billing.credit_balance_summary",
}


@cache
def load_contract() -> OpenAPIContract | str:
    found = spec_file("stripe", SPEC)
    if not found.found:
        return found.reason
    return OpenAPIContract.load(found.path)  # type: ignore[arg-type]


@cache
def load_examples_2026() -> dict[str, Any] | str:
    found = spec_file("stripe", FIXTURES_2026)
    if not found.found:
        return found.reason
    return json.loads(found.path.read_text())["resources"]  # type: ignore[union-attr]


@dataclass
class TrafficCheck:
    """Validates what went over the wire: requests and responses, spec or example shape.

    Without the specs (``unavailable`` holds why), :meth:`assert_valid` skips at the end of
    the test: its behaviour was checked, the contract was not, and the reason is printed.
    """

    spec: OpenAPIContract | None
    examples: dict[str, Any] | None
    unavailable: str = ""

    def problems(self, exchanges: list[Exchange]) -> list[str]:
        assert self.spec is not None and self.examples is not None
        found: list[str] = []
        for ex in exchanges:
            if ex.request.path.startswith("/_sandbox"):
                continue
            if self.spec.operation(ex.request.method, ex.request.path) is not None:
                found += self.spec.exchange_errors(ex)
            elif ex.response is not None and ex.fault is None and ex.response.status < 400:
                found += self._shape(ex)
            elif self.spec.operation(ex.request.method, ex.request.path) is None and not ex.request.path.startswith(
                "/v1/billing/"
            ):
                found.append(f"{ex.request.method} {ex.request.path}: not in the spec")
        return found

    def _shape(self, ex: Exchange) -> list[str]:
        assert ex.response is not None and self.examples is not None
        body = ex.response.body
        objects = body["data"] if body.get("object") == "list" else [body]
        where = f"{ex.request.method} {ex.request.path}"
        issues = []
        for obj in objects:
            name = NEWER_OBJECTS.get(obj.get("object", ""))
            if name is None:
                if obj.get("object") == "billing.meter_event_adjustment":
                    continue
                issues.append(f"{where}: object {obj.get('object')!r} has no reference shape")
                continue
            issues += [f"{where}: {p}" for p in shape_mismatches(obj, self.examples[name])]
        return issues

    def assert_valid(self, sandbox: StripeSandbox) -> int:
        exchanges = [e for e in sandbox.exchanges if not e.request.path.startswith("/_sandbox")]
        if self.unavailable:
            pytest.skip(f"behaviour checked; Stripe contract validation skipped: {self.unavailable}")
        problems = self.problems(exchanges)
        assert not problems, "traffic breaks Stripe's contract:\n  " + "\n  ".join(problems[:30])
        return len(exchanges)


def basic_fixture(now: int | None = None) -> dict[str, Any]:
    """A small account: two customers, seats + metered API calls, an open invoice, a grant."""
    now = now or int(time.time())
    return {
        "customers": [
            {"id": "cus_acme", "name": "Acme Corp", "email": "ap@acme.example", "metadata": {"subledger_id": "acme"},
             "address": {"country": "US"}, "created": now - 90 * DAY},
            {"id": "cus_globex", "name": "Globex", "email": "billing@globex.example", "created": now - 80 * DAY},
        ],
        "products": [{"id": "prod_api", "name": "API calls"}, {"id": "prod_seats", "name": "Seats"}],
        "meters": [{"id": "mtr_api", "display_name": "API calls", "event_name": "api_calls",
                    "default_aggregation": {"formula": "sum"}, "created": now - 100 * DAY}],
        "prices": [
            {"id": "price_seat", "product": "prod_seats", "currency": "usd", "unit_amount": 2000,
             "recurring": {"interval": "month"}},
            {"id": "price_api", "product": "prod_api", "currency": "usd", "billing_scheme": "tiered",
             "tiers_mode": "graduated", "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_api"},
             "tiers": [{"up_to": 1000, "unit_amount_decimal": "0.5"}, {"up_to": "inf", "unit_amount": 0,
                                                                       "flat_amount": 100}]},
        ],
        "meter_events": [
            {"event_name": "api_calls", "payload": {"stripe_customer_id": "cus_acme", "value": "1500"},
             "timestamp": now - 40 * DAY, "identifier": "seed-1"},
            {"event_name": "api_calls", "payload": {"stripe_customer_id": "cus_acme", "value": "300"},
             "timestamp": now - 3 * DAY, "identifier": "seed-2"},
        ],
        "subscriptions": [{"id": "sub_acme", "customer": "cus_acme", "created": now - 60 * DAY,
                           "items": [{"price": "price_seat", "quantity": 3}, {"price": "price_api"}]}],
        "invoices": [{"id": "in_globex_onboarding", "customer": "cus_globex", "collection_method": "send_invoice",
                      "days_until_due": 30,
                      "finalize": True, "created": now - 20 * DAY,
                      "lines": [{"amount": 5000, "currency": "usd", "description": "Onboarding"}]}],
        "credit_notes": [{"invoice": "in_globex_onboarding", "amount": 500, "reason": "order_change",
                          "created": now - 19 * DAY}],
        "credit_grants": [{"customer": "cus_acme", "category": "paid", "name": "Prepaid",
                           "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 10000}},
                           "applicability_config": {"scope": {"price_type": "metered"}}}],
    }


def catalog_only(fixture: dict[str, Any]) -> dict[str, Any]:
    """The customers, products, meters and prices of a fixture, without any activity."""
    return {k: v for k, v in fixture.items() if k in ("customers", "products", "meters", "prices")}
