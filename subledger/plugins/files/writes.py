"""Writing back to a files folder: ``create_invoice`` writes an invoice file.

The folder stands in for a billing system, so a sync can close the loop offline: apply
writes ``invoices/subledger/<key>.json`` in the documented invoice format, and the next
pull reads it like any other invoice file. The file name is derived from the action's
idempotency key, and the file is written atomically (temporary file, then rename), so a
replay finds the first write instead of adding a second invoice.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from subledger.core.connector import WriteAction, WriteResult
from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError
from subledger.core.money import to_major

WRITE_DIR = Path("invoices") / "subledger"
CREATE_INVOICE = "create_invoice"


def invoice_path(root: Path, action: WriteAction) -> Path:
    """Where the invoice of ``action`` lives in the folder."""
    return root / WRITE_DIR / f"{action.idempotency_key}.json"


def invoice_document(action: WriteAction) -> dict[str, Any]:
    """The invoice file an action writes, in the format the files connector reads."""
    p = action.payload
    currency = str(p.get("currency") or "")
    customer = p.get("customer_external_id")
    lines = p.get("lines") or []
    if not customer or not currency or not lines:
        raise ConfigError(
            f"create_invoice {action.idempotency_key} needs customer_external_id, currency and lines",
            fix="plan the action from a finding (subledger plan) rather than by hand",
        )
    doc_lines = []
    for n, line in enumerate(lines):
        doc_lines.append({k: v for k, v in {
            "id": str(line.get("line_key") or n + 1),
            "kind": line.get("kind") or "other",
            "description": line.get("description") or "",
            "component": line.get("component"),
            "meter": line.get("meter"),
            "quantity": line.get("quantity"),
            "amount": decimal_text(to_major(int(line["amount_minor"]), currency)),
            "service_start": line.get("service_start"),
            "service_end": line.get("service_end"),
        }.items() if v is not None})
    total = sum(int(line["amount_minor"]) for line in lines)
    return {k: v for k, v in {
        "id": f"sl_{action.idempotency_key.removeprefix('sl_')[:24]}",
        "number": f"SL-{action.idempotency_key.removeprefix('sl_')[:8].upper()}",
        "customer": customer,
        "currency": currency,
        "status": p.get("status") or "open",
        "issued_at": date.today().isoformat(),
        "period_start": p.get("period_start"),
        "period_end": p.get("period_end"),
        "total": decimal_text(to_major(total, currency)),
        "metadata": {"subledger_action_id": action.idempotency_key, **{
            str(k): str(v) for k, v in (p.get("metadata") or {}).items()}},
        "lines": doc_lines,
    }.items() if v is not None}


def write_invoice(root: Path, action: WriteAction) -> WriteResult:
    """Write the invoice file once; a replay returns the file already written."""
    found = find_invoice(root, action)
    if found is not None:
        return found
    doc = invoice_document(action)
    path = invoice_path(root, action)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic: the invoice is there whole, or not at all
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return WriteResult(doc["id"], created=True, record=json.loads(path.read_text()))


def find_invoice(root: Path, action: WriteAction) -> WriteResult | None:
    """The invoice an earlier attempt at ``action`` wrote, re-read from the folder."""
    path = invoice_path(root, action)
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    return WriteResult(doc["id"], created=False, record=doc)
