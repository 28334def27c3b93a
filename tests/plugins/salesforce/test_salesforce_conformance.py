"""The Salesforce connector passes the conformance kit against the Salesforce sandbox."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from sf_testkit import ACME, API_PRODUCT, GLOBEX, org_fixture

import subledger.plugins.salesforce as salesforce_plugin
from subledger.core.connector import Connector, WriteAction
from subledger.core.sandbox import SandboxServer
from subledger.plugins.salesforce.sandbox import (
    DEFAULT_PASSWORD,
    DEFAULT_TOKEN,
    DEFAULT_USERNAME,
    SalesforceSandbox,
)
from subledger.testing import ConnectorHarness, Fault, conformance_suite
from subledger.testing.faults import inject_into_sandbox


def _installed() -> bool:
    return any(ep.name == "salesforce" for ep in importlib.metadata.entry_points(group="subledger"))


class SalesforceHarness(ConnectorHarness):
    connector_name = "salesforce"
    public_fields = frozenset({"consumer_key", "private_key_file"})

    def setup(self, tmp_path: Path) -> None:
        self.sandbox = SalesforceSandbox(fixture=org_fixture(), random_seed=11, max_batch_size=2)
        self.server = SandboxServer(self.sandbox).start()

    def teardown(self) -> None:
        self.server.stop()

    def plugins(self) -> list[object]:
        # Registered through the entry point once pyproject declares it; until then, in-process.
        return [] if _installed() else [salesforce_plugin]

    def good_config(self) -> dict[str, Any]:
        return {"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD, "security_token": DEFAULT_TOKEN,
                "base_url": self.server.url, "batch_size": 200}

    def bad_configs(self) -> dict[str, dict[str, Any]]:
        return {
            "a wrong password": {**self.good_config(), "password": "not-the-password"},
            "a wrong security token": {**self.good_config(), "security_token": "not-the-token"},
        }

    def add_records(self, stream: str) -> None:
        if stream == "customers":
            self.sandbox.insert("Account", {"Name": "Initrode", "Website": "initrode.example"})
        elif stream == "contracts":
            opp = self.sandbox.insert("Opportunity", {"AccountId": GLOBEX, "Name": "Globex expansion",
                                                      "StageName": "Closed Won", "CloseDate": "2026-06-01",
                                                      "CurrencyIsoCode": "USD"})
            self.sandbox.insert("OpportunityLineItem", {"OpportunityId": opp["Id"], "Product2Id": API_PRODUCT,
                                                        "Quantity": 1, "UnitPrice": 0, "Overage_Rate__c": "0.01"})
        else:  # pragma: no cover - every stream is listed above
            raise AssertionError(stream)

    def write_actions(self) -> list[WriteAction]:
        return [WriteAction("update_customer_fields", "conformance-acme-usage",
                            {"usage_to_date": "api_calls: 12500", "overage_to_date": "50.00"},
                            target_external_id=ACME, base_version={"usage_to_date": None, "overage_to_date": None})]

    def stale_update(self) -> WriteAction | None:
        self.sandbox.modify("Account", GLOBEX, {"Usage_To_Date__c": "typed by a person"})
        return WriteAction("update_customer_fields", "conformance-globex-stale", {"usage_to_date": "api_calls: 1"},
                           target_external_id=GLOBEX, base_version={"usage_to_date": "api_calls: 0"})

    def stream_for_kind(self, kind: str, connector: Connector) -> str:
        return "customers"

    def inject_fault(self, fault: Fault) -> None:
        # Logins are not faulted: the probe's first API call is.
        inject_into_sandbox(self.sandbox, fault, path="/services/data/*")


TestSalesforceConformance = conformance_suite(SalesforceHarness)
