"""The files folder can stand in for a billing system: create_invoice writes one invoice file."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from subledger.core.connector import RecordGroup, Rejected, WriteAction
from subledger.core.errors import ConfigError
from subledger.core.model import Invoice, InvoiceLine
from subledger.plugins.files.connector import FilesConfig, FilesConnector
from subledger.plugins.files.writes import invoice_document, invoice_path

ACTION = WriteAction(
    "create_invoice",
    "sl_0123456789abcdef0123",
    {
        "customer_external_id": "acme",
        "currency": "USD",
        "status": "open",
        "period_start": "2026-03-01",
        "period_end": "2026-03-31",
        "lines": [
            {
                "kind": "usage",
                "meter": "api_calls",
                "component": "api",
                "quantity": "43690",
                "amount_minor": 8738,
                "service_start": "2026-03-01",
                "service_end": "2026-03-31",
            }
        ],
        "metadata": {"subledger_finding": "fnd_1"},
    },
)


def test_create_invoice_writes_one_file_that_the_next_read_loads(tmp_path: Path) -> None:
    connector = FilesConnector(FilesConfig(path=tmp_path), connection="files")
    assert connector.find(ACTION) is None
    first = connector.write(ACTION)
    again = connector.write(ACTION)  # a replay after a crash
    assert (first.created, again.created, again.external_id) == (True, False, first.external_id)
    assert connector.find(ACTION).external_id == first.external_id
    files = list((tmp_path / "invoices" / "subledger").iterdir())
    assert [f.name for f in files] == ["sl_0123456789abcdef0123.json"]  # no temporary file left behind
    doc = json.loads(files[0].read_text())
    assert (doc["total"], doc["lines"][0]["amount"], doc["metadata"]["subledger_action_id"]) == (
        "87.38",
        "87.38",
        "sl_0123456789abcdef0123",
    )
    groups = [g for g in connector.read("invoices", None) if isinstance(g, RecordGroup)]
    (group,) = groups
    assert isinstance(group.record, Invoice) and group.record.total_minor == 8738
    (line,) = group.children
    assert isinstance(line, InvoiceLine) and (line.kind, line.meter, line.amount_minor) == ("usage", "api_calls", 8738)


def test_an_action_without_lines_is_refused_with_the_fix(tmp_path: Path) -> None:
    connector = FilesConnector(FilesConfig(path=tmp_path), connection="files")
    bad = WriteAction("create_invoice", "sl_x", {"customer_external_id": "acme", "currency": "USD"})
    with pytest.raises(ConfigError, match="needs customer_external_id, currency and lines"):
        connector.write(bad)
    with pytest.raises(ConfigError, match="cannot 'update_customer_fields'"):
        connector.write(WriteAction("update_customer_fields", "sl_y", {}))


# --- Write-backs carry what they fix, and read back without a reject ----------------------------

CORRECTION = WriteAction(
    "create_invoice",
    "sl_correction_0001",
    {
        "customer_external_id": "acme",
        "contract_external_id": "acme-2026",
        "currency": "USD",
        "status": "open",
        "period_start": "2026-03-01",
        "period_end": "2026-03-31",
        "lines": [
            {   # a stale rate: the quantity was billed already, only the price difference is due
                "line_key": "1", "kind": "usage", "component": "api_overage", "meter": "api_calls",
                "quantity": "0", "amount_minor": 7902, "description": "api_overage 2026-03 (correction)",
                "service_start": "2026-03-01", "service_end": "2026-03-31",
            },
            {   # too many units billed: a negative quantity difference and a credit
                "line_key": "2", "kind": "usage", "component": "storage", "meter": "storage_gb",
                "quantity": Decimal("-12.5"), "amount_minor": -2500,
                "service_start": date(2026, 3, 1), "service_end": date(2026, 3, 31),
            },
            {"line_key": "3", "kind": "true_up", "component": "q_min", "amount_minor": 70000},
        ],
    },
)


def test_a_correction_invoice_carries_its_contract_component_and_quantity_difference(tmp_path: Path) -> None:
    connector = FilesConnector(FilesConfig(path=tmp_path), connection="files")
    connector.write(CORRECTION)
    doc = json.loads(invoice_path(tmp_path, CORRECTION).read_text())
    assert doc["contract"] == "acme-2026"
    assert [(ln["kind"], ln.get("component"), ln.get("meter"), ln.get("quantity"), ln["amount"])
            for ln in doc["lines"]] == [
        ("usage", "api_overage", "api_calls", "0", "79.02"),
        ("usage", "storage", "storage_gb", "-12.5", "-25.00"),
        ("true_up", "q_min", None, None, "700.00"),
    ]
    assert doc["lines"][1]["service_start"] == "2026-03-01"
    # Read back by the files connector: no reject, and the invoice names its contract.
    items = list(connector.read("invoices", None))
    assert [i for i in items if isinstance(i, Rejected)] == []
    [group] = [i for i in items if isinstance(i, RecordGroup)]
    invoice = group.record
    assert (invoice.contract_external_id, invoice.total_minor, invoice.customer_external_id) == (
        "acme-2026", 75402, "acme",
    )
    assert [(ln.kind, ln.component, ln.meter, ln.quantity, ln.amount_minor, ln.service_start)
            for ln in group.children] == [
        ("usage", "api_overage", "api_calls", Decimal(0), 7902, date(2026, 3, 1)),
        ("usage", "storage", "storage_gb", Decimal("-12.5"), -2500, date(2026, 3, 1)),
        ("true_up", "q_min", None, None, 70000, None),
    ]


def test_an_invoice_without_a_contract_has_no_contract_field(tmp_path: Path) -> None:
    doc = invoice_document(ACTION)
    assert "contract" not in doc
    assert doc["lines"][0]["quantity"] == "43690"


@pytest.mark.parametrize(("line", "message"), [
    ({"kind": "refund", "amount_minor": 100}, "lines[0].kind: lines[0].kind 'refund' is not one of"),
    ({"amount_minor": 100, "service_start": "2026-03-31", "service_end": "2026-03-01"},
     "lines[0].service_end: lines[0].service_end 2026-03-01 is before"),
    ({"amount_minor": 100, "quantity": "many"}, "lines[0].quantity: lines[0].quantity 'many' is not a number"),
])
def test_an_action_the_invoice_reader_would_reject_is_refused_and_nothing_is_written(
    tmp_path: Path, line: dict, message: str,
) -> None:
    connector = FilesConnector(FilesConfig(path=tmp_path), connection="files")
    action = WriteAction("create_invoice", "sl_bad_1", {"customer_external_id": "acme", "currency": "USD",
                                                        "lines": [line]})
    with pytest.raises(ConfigError, match="would be rejected when read back") as refused:
        connector.write(action)
    assert message in str(refused.value)
    assert refused.value.fix and refused.value.fix.startswith("correct the action's payload")
    assert not (tmp_path / "invoices").exists()


def test_quantities_and_amounts_never_pass_through_a_float(tmp_path: Path) -> None:
    connector = FilesConnector(FilesConfig(path=tmp_path), connection="files")
    for line in ({"amount_minor": 100, "quantity": 0.1}, {"amount_minor": 1.5}):
        action = WriteAction("create_invoice", "sl_float", {"customer_external_id": "acme", "currency": "USD",
                                                            "lines": [line]})
        with pytest.raises(ConfigError, match=r"float|integer minor units"):
            connector.write(action)
