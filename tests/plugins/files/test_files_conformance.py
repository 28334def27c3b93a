"""The files connector passes the conformance kit, on a copy of the shipped example company."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from subledger.core.connector import WriteAction
from subledger.testing import ConnectorHarness, conformance_suite

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

# The example company has no credit grant or credit note files; the kit needs records in
# every stream, so the harness adds some (a refund among them, which the payments stream
# also yields as a payment).
CREDIT_FILES = {
    "credit_grants.csv": (
        "id,customer,contract,currency,amount,units,meter,price,category,priority,effective_at,expires_at,"
        "breakage,expected_breakage_rate\n"
        "cg_soylent_paid,soylent,soylent-2026,USD,1200.00,,,1000.00,paid,0,2026-01-01,2027-01-01T00:00:00Z,"
        "proportional,0.1\n"
        "cg_acme_promo,acme,,,,50000,api_calls,,promotional,1,2026-01-01,2026-04-01,,\n"
    ),
    "credit_notes.jsonl": (
        '{"id": "cn_acme_1", "customer": "acme", "currency": "USD", "invoice": "in_acme_2026_01", '
        '"number": "CN-1", "amount": "81.76", "refund": "81.76", "issued_at": "2026-02-20", '
        '"reason": "API overage waived", "lines": [{"kind": "usage", "component": "api_overage", '
        '"description": "API calls over the included 100,000", "amount": "81.76"}]}\n'
    ),
}

# One new record per stream, appended to a file that already holds records of it.
NEW_RECORDS = {
    "customers": ("customers.csv", "initrode,Initrode,ap@initrode.example,,USD,US,,smb,\n"),
    "meters": ("meters.yaml", "- key: conformance_calls\n  unit: call\n"),
    "contracts": ("contracts/acme-2026.yaml", "---\nid: acme-2027\ncustomer: acme\ncurrency: USD\n"
                  "start_date: 2027-01-01\ncomponents: [{type: flat_fee, id: platform, amount: \"1000.00\"}]\n"),
    "usage_events": ("usage/2026-03.jsonl", '{"event_id": "evt_conformance_1", "customer": "acme", '
                     '"meter": "api_calls", "quantity": 10, "timestamp": "2026-03-31T23:00:00Z"}\n'),
    "invoices": ("invoices.csv", "in_conformance_1,SKY-9001,acme,acme-2026,USD,draft,,,,,,x,usage,Extra calls,"
                 "api_overage,api_calls,5,0.002,0.01,2026-03-31,2026-03-31,false\n"),
    "payments": ("payments.csv", "py_conformance_1,acme,USD,5.00,2026-04-02T09:00:00Z,card,,,\n"),
    "credit_grants": ("credit_grants.csv", "cg_conformance_1,hooli,,USD,10.00,,,,,,2026-04-01,,,\n"),
    "credit_notes": ("credit_notes.jsonl", '{"id": "cn_conformance_1", "customer": "hooli", "currency": "USD", '
                     '"amount": "5.00", "issued_at": "2026-04-03"}\n'),
}


class FilesHarness(ConnectorHarness):
    connector_name = "files"
    retries_not_applicable = "the files connector reads local files; there is no network call to retry"

    def setup(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "examples"
        shutil.copytree(EXAMPLES, self.root, ignore=shutil.ignore_patterns("bad", "*.py", "*.md"))
        for name, text in CREDIT_FILES.items():
            (self.root / name).write_text(text, encoding="utf-8")

    def good_config(self) -> dict[str, Any]:
        # A checkpoint after every file, so the kit's crash-and-resume check has some to use.
        return {"path": str(self.root), "checkpoint_every": 1}

    def bad_configs(self) -> dict[str, dict[str, Any]]:
        (self.tmp / "not-a-folder.csv").write_text("id,name\n")
        return {
            "a folder that does not exist": {"path": str(self.tmp / "missing")},
            "a file instead of a folder": {"path": str(self.tmp / "not-a-folder.csv")},
        }

    def write_actions(self) -> list[WriteAction]:
        return [WriteAction("create_invoice", "sl_conformance_invoice_1", {
            "customer_external_id": "acme", "currency": "USD", "status": "open",
            "lines": [{"kind": "usage", "meter": "api_calls", "amount_minor": 1234,
                       "service_start": "2026-03-01", "service_end": "2026-03-31"}],
        })]

    def add_records(self, stream: str) -> None:
        name, text = NEW_RECORDS[stream]
        with (self.root / name).open("a", encoding="utf-8") as f:
            f.write(text)


Suite = conformance_suite(FilesHarness)


class TestFilesConformance(Suite):  # type: ignore[misc,valid-type]
    """The kit, adopted with one line (``conformance_suite(FilesHarness)``)."""
