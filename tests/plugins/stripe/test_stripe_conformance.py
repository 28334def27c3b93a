"""The Stripe connector passes the conformance kit against the Stripe sandbox."""

from __future__ import annotations

import importlib.metadata
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import stripe
from stripe_testkit import basic_fixture

import subledger.plugins.stripe as stripe_plugin
from subledger.core.connector import Connector, WriteAction
from subledger.core.sandbox import SandboxServer
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox
from subledger.testing import ConnectorHarness, Fault, conformance_suite
from subledger.testing.faults import inject_into_sandbox

KIND_STREAMS = {"create_invoice": "invoices", "update_customer_metadata": "customers", "push_meter_events": "usage"}


def _installed() -> bool:
    return any(ep.name == "stripe" for ep in importlib.metadata.entry_points(group="subledger"))


class StripeHarness(ConnectorHarness):
    connector_name = "stripe"

    def setup(self, tmp_path: Path) -> None:
        self.now = int(time.time())
        self.sandbox = StripeSandbox(
            fixture=basic_fixture(self.now), random_seed=11,
            restricted_keys={"rk_test_no_customers": {"invoices": "read"}},
        )
        self.server = SandboxServer(self.sandbox).start()
        self.v1 = stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": self.server.url},
                                      max_network_retries=0, stripe_version="2023-08-16").v1
        self.yesterday = int(datetime.combine(datetime.now(UTC).date() - timedelta(days=1), datetime.min.time(),
                                              UTC).timestamp())

    def teardown(self) -> None:
        self.server.stop()

    def plugins(self) -> list[object]:
        # Registered through the entry point once pyproject declares it; until then, in-process.
        return [] if _installed() else [stripe_plugin]

    def good_config(self) -> dict[str, Any]:
        return {"api_key": DEFAULT_API_KEY, "api_base": self.server.url, "page_size": 2,
                "usage_start": (datetime.now(UTC).date() - timedelta(days=60)).isoformat()}

    def bad_configs(self) -> dict[str, dict[str, Any]]:
        return {
            "a wrong API key": {**self.good_config(), "api_key": "sk_test_not_this_account_0000"},
            "a restricted key that may not read customers": {**self.good_config(), "api_key": "rk_test_no_customers"},
        }

    def add_records(self, stream: str) -> None:
        v1 = self.v1
        if stream == "customers":
            v1.customers.create(params={"name": "Initech", "email": "ap@initech.example"})
        elif stream == "meters":
            v1.billing.meters.create(params={"display_name": "Storage", "event_name": "storage_gb",
                                             "default_aggregation": {"formula": "last"}})
        elif stream == "contracts":
            v1.subscriptions.create(params={"customer": "cus_globex", "items": [{"price": "price_seat"}]})
        elif stream == "invoices":
            inv = v1.invoices.create(params={"customer": "cus_globex"})
            v1.invoice_items.create(params={"customer": "cus_globex", "invoice": inv.id, "amount": 700,
                                            "currency": "usd"})
        elif stream == "credit_notes":
            invoice = v1.invoices.list(params={"customer": "cus_globex", "status": "open"}).data[0]
            v1.credit_notes.create(params={"invoice": invoice.id, "amount": 100})
        elif stream == "payments":
            v1.payment_intents.create(params={"amount": 999, "currency": "usd", "customer": "cus_globex",
                                              "payment_method": "pm_card_visa", "confirm": True})
        elif stream == "credit_grants":
            v1.billing.credit_grants.create(params={
                "customer": "cus_globex", "category": "promotional",
                "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 500}},
                "applicability_config": {"scope": {"price_type": "metered"}}})
        elif stream == "usage":
            v1.billing.meter_events.create(params={"event_name": "api_calls", "timestamp": self.yesterday + 3600,
                                                   "payload": {"stripe_customer_id": "cus_globex", "value": "42"}})
        else:  # pragma: no cover - every stream is listed above
            raise AssertionError(stream)

    def write_actions(self) -> list[WriteAction]:
        return [
            WriteAction("create_invoice", "conformance-create-invoice-1", {
                "customer_external_id": "cus_globex", "currency": "USD",
                "lines": [{"description": "API overage", "amount_minor": 4200, "quantity": "8400",
                           "service_start": "2026-01-01", "service_end": "2026-01-31", "kind": "usage"}]}),
            WriteAction("update_customer_metadata", "conformance-link-globex", {"metadata": {"subledger_id": "globex"}},
                        target_external_id="cus_globex", base_version={"metadata": {"subledger_id": None}}),
            WriteAction("push_meter_events", "conformance-usage-1", {"events": [{
                "identifier": "conformance-usage-1", "meter": "api_calls", "customer_external_id": "cus_globex",
                "quantity": "17", "occurred_at": datetime.fromtimestamp(self.yesterday + 7200, UTC).isoformat()}]}),
        ]

    def stale_update(self) -> WriteAction | None:
        return WriteAction("update_customer_metadata", "conformance-stale-link",
                           {"metadata": {"subledger_id": "acme-2"}}, target_external_id="cus_acme",
                           base_version={"metadata": {"subledger_id": "someone-else"}})

    def stream_for_kind(self, kind: str, connector: Connector) -> str:
        return KIND_STREAMS[kind]

    def inject_fault(self, fault: Fault) -> None:
        inject_into_sandbox(self.sandbox, fault)


TestStripeConformance = conformance_suite(StripeHarness)
