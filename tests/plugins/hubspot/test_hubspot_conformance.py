"""The HubSpot connector passes the conformance kit against the HubSpot sandbox."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from hubspot_testkit import portal

import subledger.plugins.hubspot as hubspot_plugin
from subledger.core.connector import WriteAction
from subledger.core.sandbox import SandboxServer
from subledger.plugins.hubspot.sandbox import DEFAULT_TOKEN, HubSpotSandbox
from subledger.testing import ConnectorHarness, Fault, conformance_suite
from subledger.testing.faults import inject_into_sandbox

NO_DEALS = "pat-na1-companies-only-2222"


def _installed() -> bool:
    return any(ep.name == "hubspot" for ep in importlib.metadata.entry_points(group="subledger"))


class HubSpotHarness(ConnectorHarness):
    connector_name = "hubspot"

    def setup(self, tmp_path: Path) -> None:
        self.sandbox = HubSpotSandbox(fixture=portal(), tokens={
            DEFAULT_TOKEN: None, NO_DEALS: ["crm.objects.companies.read", "crm.objects.companies.write"]})
        self.server = SandboxServer(self.sandbox).start()

    def teardown(self) -> None:
        self.server.stop()

    def plugins(self) -> list[object]:
        return [] if _installed() else [hubspot_plugin]

    def good_config(self) -> dict[str, Any]:
        return {"access_token": DEFAULT_TOKEN, "base_url": self.server.url, "page_size": 2}

    def bad_configs(self) -> dict[str, dict[str, Any]]:
        return {
            "a token HubSpot does not know": {**self.good_config(), "access_token": "pat-na1-revoked-0000-0000"},
            "nothing listening at base_url": {**self.good_config(), "base_url": "http://127.0.0.1:9"},
            "a private app without the deals scope": {**self.good_config(), "access_token": NO_DEALS},
        }

    def add_records(self, stream: str) -> None:
        sb = self.sandbox
        with sb.store.lock:
            if stream == "customers":
                sb.new_object("companies", {"name": "Umbrella", "domain": "umbrella.example"})
            else:
                company = sb.new_object("companies", {"name": "Hooli"})
                deal = sb.new_object("deals", {"dealname": "Hooli 2026", "dealstage": "closedwon",
                                               "deal_currency_code": "USD", "subledger_term_start": "2026-03-01",
                                               "subledger_billing_interval": "annually"})
                item = sb.new_object("line_items", {"name": "Licence", "price": "12000", "quantity": "1",
                                                    "recurringbillingfrequency": "annually"})
                sb.associate("deals", deal["id"], "companies", company["id"])
                sb.associate("deals", deal["id"], "line_items", item["id"])

    def write_actions(self) -> list[WriteAction]:
        return [WriteAction("update_customer_fields", "conformance-usage-acme",
                            {"usage_to_date": "api_calls: 12500", "overage_to_date": "50.00"},
                            target_external_id="101", base_version={"usage_to_date": None, "overage_to_date": None})]

    def stale_update(self) -> WriteAction | None:
        return WriteAction("update_customer_fields", "conformance-stale-globex", {"usage_to_date": "api_calls: 7"},
                           target_external_id="102", base_version={"usage_to_date": "api_calls: 3"})

    def inject_fault(self, fault: Fault) -> None:
        inject_into_sandbox(self.sandbox, fault)


TestHubSpotConformance = conformance_suite(HubSpotHarness)
