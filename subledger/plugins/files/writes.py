"""Writing back to a files folder: ``create_invoice`` writes an invoice file.

The folder stands in for a billing system, so a sync can close the loop offline: apply
writes ``invoices/subledger/<key>.json`` in the documented invoice format, and the next
pull reads it like any other invoice file. The file name is derived from the action's
idempotency key, and the file is written atomically (temporary file, then rename), so a
replay finds the first write instead of adding a second invoice.

The invoice carries what it fixes: the payload's ``contract_external_id`` becomes the
invoice's ``contract``, and each line keeps its ``component``, ``kind``, ``meter``,
``quantity`` (a correction's quantity is the *difference* it bills: it may be 0 or
negative), ``unit_price`` and service period. Before anything is written the document is
read back through the files invoice reader, so a file subledger writes never becomes a
reject on the next pull: an action the format cannot hold is refused with the reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from subledger.core.connector import WriteAction, WriteResult
from subledger.core.db_types import decimal_text, utcnow
from subledger.core.errors import ConfigError
from subledger.core.money import to_major
from subledger.plugins.files.documents import loads_exact
from subledger.plugins.files.fields import RowError
from subledger.plugins.files.invoices import Invoices
from subledger.plugins.files.mapping import Source

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
    key = action.idempotency_key
    doc_lines = []
    for n, line in enumerate(lines):
        where = f"create_invoice {key} lines[{n}]"
        amount = _minor(line.get("amount_minor"), f"{where}.amount_minor")
        doc_lines.append({k: v for k, v in {
            "id": str(line.get("line_key") or n + 1),
            "kind": line.get("kind") or "other",
            "description": line.get("description") or "",
            "component": line.get("component"),
            "meter": line.get("meter"),
            "quantity": _number(line.get("quantity"), f"{where}.quantity"),
            "unit_price": _number(line.get("unit_price"), f"{where}.unit_price"),
            "amount": decimal_text(to_major(amount, currency)),
            "service_start": _day(line.get("service_start")),
            "service_end": _day(line.get("service_end")),
            "proration": line.get("proration"),
        }.items() if v is not None})
    total = sum(_minor(line.get("amount_minor"), "amount_minor") for line in lines)
    doc = {k: v for k, v in {
        "id": f"sl_{key.removeprefix('sl_')[:24]}",
        "number": f"SL-{key.removeprefix('sl_')[:8].upper()}",
        "customer": customer,
        "contract": p.get("contract_external_id") or None,
        "currency": currency,
        "status": p.get("status") or "open",
        "issued_at": utcnow().date().isoformat(),
        "period_start": _day(p.get("period_start")),
        "period_end": _day(p.get("period_end")),
        "total": decimal_text(to_major(total, currency)),
        "metadata": {"subledger_action_id": key, **{
            str(k): str(v) for k, v in (p.get("metadata") or {}).items()}},
        "lines": doc_lines,
    }.items() if v is not None}
    _check_reads_back(doc, action)
    return doc


def _minor(value: Any, where: str) -> int:
    """An amount in integer minor units (an int, or its digits as text; never a float)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ConfigError(f"{where} is {value!r}, not an amount in integer minor units",
                      fix="plan the action from a finding (subledger plan) rather than by hand")


def _number(value: Any, where: str) -> str | None:
    """A quantity or unit price as exact decimal text (never through a float)."""
    if value is None:
        return None
    if isinstance(value, (float, bool)) or not isinstance(value, (Decimal, int, str)):
        raise ConfigError(f"{where} is {value!r}, not an exact number",
                          fix="give quantities and prices as Decimal or decimal text, never as floats")
    return decimal_text(value) if isinstance(value, Decimal) else str(value)


def _day(value: Any) -> Any:
    """A date as ``YYYY-MM-DD`` (a datetime is cut to its date); text is passed on as it is."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _check_reads_back(doc: dict[str, Any], action: WriteAction) -> None:
    """Refuse to write an invoice the files invoice reader would reject on the next pull."""
    location = (WRITE_DIR / f"{action.idempotency_key}.json").as_posix()
    try:
        Invoices().map_document(loads_exact(json.dumps(doc)), Source("files", location, utcnow()))
    except RowError as exc:
        raise ConfigError(
            f"create_invoice {action.idempotency_key}: the invoice file would be rejected when read back "
            f"({exc.field or 'invoice'}: {exc.reason})",
            fix=f"correct the action's payload: {exc.fix}",
        ) from None


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
