"""The files folder can stand in for a billing system: create_invoice writes one invoice file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subledger.core.connector import RecordGroup, WriteAction
from subledger.core.errors import ConfigError
from subledger.core.model import Invoice, InvoiceLine
from subledger.plugins.files.connector import FilesConfig, FilesConnector

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
