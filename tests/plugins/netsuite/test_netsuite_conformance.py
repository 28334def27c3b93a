"""The NetSuite connector passes the conformance kit against the NetSuite sandbox."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from ns_testkit import seeded_fixture, tba_config
from test_netsuite_journal import MAPPING, january
from test_netsuite_journal import action as journal_action

import subledger.plugins.netsuite as netsuite_plugin
from subledger.core.connector import Connector, WriteAction
from subledger.core.sandbox import SandboxClock, SandboxServer
from subledger.plugins.netsuite.sandbox import NetSuiteSandbox
from subledger.testing import ConnectorHarness, Fault, conformance_suite
from subledger.testing.faults import inject_into_sandbox

KIND_STREAMS = {"create_customer": "customers", "create_invoice": "invoices", "create_credit_note": "credit_notes",
                "create_payment": "payments"}


def _installed() -> bool:
    return any(ep.name == "netsuite" for ep in importlib.metadata.entry_points(group="subledger"))


class NetSuiteHarness(ConnectorHarness):
    connector_name = "netsuite"

    def setup(self, tmp_path: Path) -> None:
        clock = SandboxClock()
        clock.freeze(0)
        self.sandbox = NetSuiteSandbox(clock=clock, fixture=seeded_fixture())
        self.server = SandboxServer(self.sandbox).start()
        self.mapping = tmp_path / "netsuite-accounts.yaml"
        self.mapping.write_text(MAPPING)

    def teardown(self) -> None:
        self.server.stop()

    def plugins(self) -> list[object]:
        return [] if _installed() else [netsuite_plugin]

    def good_config(self) -> dict[str, Any]:
        return tba_config(self.server.url, account_mapping=str(self.mapping))

    def bad_configs(self) -> dict[str, dict[str, Any]]:
        good = self.good_config()
        return {
            "a wrong token secret (the signature does not verify)": {**good, "token_secret": "ts" + "0" * 62},
            "another account's realm": {**good, "account_id": "7654321"},
            "an unknown consumer key": {**good, "consumer_key": "ck" + "9" * 62},
        }

    def add_records(self, stream: str) -> None:
        self.sandbox.clock.advance(5)
        save = self.sandbox.save
        if stream == "customers":
            save("customer", {"companyName": "Initech", "subsidiary": {"id": "1"}}, None)
        elif stream == "invoices":
            save("invoice", {"entity": {"id": "1002"}, "tranDate": "2026-01-20",
                             "item": {"items": [{"item": {"id": "501"}, "amount": "12.00"}]}}, None)
        elif stream == "credit_notes":
            save("creditMemo", {"entity": {"id": "1001"}, "tranDate": "2026-01-20",
                                "item": {"items": [{"item": {"id": "501"}, "amount": "5.00"}]}}, None)
        elif stream == "payments":
            save("customerPayment", {"customer": {"id": "1002"}, "payment": "10.00", "tranDate": "2026-01-20"}, None)
        else:  # pragma: no cover - every stream is listed above
            raise AssertionError(stream)

    def write_actions(self) -> list[WriteAction]:
        return [
            WriteAction("create_customer", "conformance-customer-initech",
                        {"external_id": "initech", "name": "Initech", "email": "ap@initech.example",
                         "currency": "USD"}),
            WriteAction("create_invoice", "conformance-invoice-1", {
                "customer": "cus_acme", "currency": "USD", "total_minor": 4200, "issued_at": "2026-01-31",
                "source_system": "stripe", "source_external_id": "in_123", "number": "STRIPE-0042",
                "lines": [{"description": "API overage", "amount_minor": 4200, "quantity": "8400",
                           "service_start": "2026-01-01", "service_end": "2026-01-31"}]}),
            WriteAction("create_credit_note", "conformance-credit-1", {
                "customer_external_id": "1002", "currency": "USD", "invoice_external_id": "2002",
                "issued_at": "2026-01-20", "lines": [{"description": "Goodwill", "amount_minor": 1000}]}),
            journal_action(*january()[0]),
            WriteAction("create_payment", "conformance-payment-1", {
                "customer": "cus_acme", "currency": "USD", "amount_minor": 5000, "received_at": "2026-01-21",
                "reference": "wire 42", "applications": [{"invoice_external_id": "2001", "amount_minor": 5000}]}),
        ]

    def stream_for_kind(self, kind: str, connector: Connector) -> str:
        return KIND_STREAMS[kind]

    def count_written(self, kind: str, connector: Connector) -> int | None:
        # Journal entries have no canonical stream: count them in NetSuite itself.
        return len(connector.journal_entries()) if kind == "create_journal_entry" else None

    def inject_fault(self, fault: Fault) -> None:
        inject_into_sandbox(self.sandbox, fault)


TestNetSuiteConformance = conformance_suite(NetSuiteHarness)
