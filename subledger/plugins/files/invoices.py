"""Invoice files to :class:`~subledger.core.model.Invoice` with its :class:`~subledger.core.model.InvoiceLine` s.

Each invoice is yielded as a :class:`~subledger.core.connector.RecordGroup`: the invoice
and the complete set of its lines, which the store replaces together.

JSON/JSONL/YAML: one object per invoice with a ``lines`` list. CSV: one row per invoice
line, the invoice's own columns repeated (or left empty) on each of its rows and the
line's columns prefixed ``line_``; a row with no ``line_`` values is an invoice without
lines. Money is in major units of the invoice currency (``"12.34"``).

Totals: ``subtotal`` is the sum of the line amounts, ``total`` is subtotal + ``tax``.
Either may be written; if written, it must agree. ``amount_paid`` defaults to the total
for a paid invoice and to 0 otherwise; ``amount_due`` is total - amount_paid.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from subledger.core.connector import RecordGroup, Rejected
from subledger.core.db_types import decimal_text
from subledger.core.model import Invoice, InvoiceLine, evidence_ref, payload_hash, record_id
from subledger.core.money import to_major
from subledger.plugins.files import fields
from subledger.plugins.files.documents import Row
from subledger.plugins.files.fields import RowError
from subledger.plugins.files.mapping import Mapped, Namer, RecordKind, Source

STATUSES = ("draft", "open", "paid", "void", "uncollectible")
LINE_KINDS = ("recurring", "usage", "true_up", "credit", "discount", "tax", "other")
HEADER_KEYS = (
    "id", "customer", "currency", "contract", "number", "status", "issued_at", "due_at",
    "period_start", "period_end", "subtotal", "tax", "total", "amount_paid",
)
LINE_KEYS = (
    "id", "kind", "description", "component", "meter", "quantity", "unit_price", "amount",
    "service_start", "service_end", "proration",
)
LINE_PREFIX = "line_"


class Invoices(RecordKind):
    stream = "invoices"
    record_type = "invoice"
    columns = HEADER_KEYS + tuple(LINE_PREFIX + key for key in LINE_KEYS)
    required_columns = ("id", "customer", "currency")
    metadata_columns = True
    example = ' such as {"id": "in_1", "customer": "acme", "currency": "USD", "lines": [...]}'

    def map_document(self, data: dict[str, Any], src: Source) -> RecordGroup:
        fields.check_keys(data, (*HEADER_KEYS, "lines"), metadata=True)
        header = _Header(data)
        lines = fields.document_lines(
            data, LINE_KEYS, lambda item, namer, key: _Line(item, header.currency, namer, default_key=key))
        return _build(header, lines, data, src)

    def from_csv(self, rows: Iterable[Row], src: Source) -> Iterator[Mapped | Rejected]:
        return self.from_grouped_csv(
            rows, src, what="invoice", header_keys=HEADER_KEYS, parse_header=_Header,
            child_data=lambda row: {k[len(LINE_PREFIX):]: v for k, v in row.items() if k.startswith(LINE_PREFIX) and v},
            parse_child=lambda data, header, n: _Line(data, header.currency, _csv_name, default_key=str(n + 1)),
            build=lambda header, lines, rows: _build(header, lines, rows, src),
        )


def _csv_name(key: str) -> str:
    return LINE_PREFIX + key


class _Header:
    """An invoice's own fields, validated."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.external_id = fields.required_text(data, "id")
        self.customer = fields.required_text(data, "customer")
        currency = fields.currency(data)
        assert currency is not None
        self.currency = currency
        self.contract = fields.text(data, "contract", required=False)
        self.number = fields.text(data, "number", required=False, max_length=128)
        self.status = fields.choice(data, "status", STATUSES, default="open")
        self.issued_at = fields.timestamp(data, "issued_at")
        self.due_at = fields.timestamp(data, "due_at")
        self.period_start = fields.date_value(data, "period_start")
        self.period_end = fields.date_value(data, "period_end")
        _check_period(self.period_start, self.period_end, "period_start", "period_end")
        self.subtotal = fields.optional_money(data, "subtotal", currency)
        self.tax = fields.optional_money(data, "tax", currency) or 0
        self.total = fields.optional_money(data, "total", currency)
        self.amount_paid = fields.optional_money(data, "amount_paid", currency)
        self.attributes = fields.metadata(data)


class _Line:
    """One invoice line, validated. ``namer`` gives field names as the file writes them."""

    def __init__(self, data: dict[str, Any], currency: str, namer: Namer, *, default_key: str) -> None:
        self.key = fields.text(data, "id", required=False, name=namer("id")) or default_key
        self.kind = fields.choice(data, "kind", LINE_KINDS, default="other", name=namer("kind"))
        self.description = fields.text(data, "description", required=False, max_length=1024,
                                       name=namer("description")) or ""
        self.component = fields.text(data, "component", required=False, max_length=128, name=namer("component"))
        self.meter = fields.text(data, "meter", required=False, max_length=128, name=namer("meter"))
        self.quantity = fields.optional_decimal(data, "quantity", namer("quantity"))
        self.unit_price = fields.optional_decimal(data, "unit_price", namer("unit_price"))
        if fields.is_absent(data.get("amount")):
            raise RowError(namer("amount"), f"{namer('amount')} is missing",
                           "give every line its amount in major units, e.g. 12.50")
        self.amount = fields.money(data["amount"], currency, namer("amount"))
        self.service_start = fields.date_value(data, "service_start", name=namer("service_start"))
        self.service_end = fields.date_value(data, "service_end", name=namer("service_end"))
        _check_period(self.service_start, self.service_end, namer("service_start"), namer("service_end"))
        self.proration = fields.boolean(data, "proration", name=namer("proration"))
        self.namer = namer


def _check_period(start: date | None, end: date | None, start_name: str, end_name: str) -> None:
    if start is not None and end is not None and end < start:
        raise RowError(end_name, f"{end_name} {end} is before {start_name} {start}",
                       f"{end_name} is the last day of the period (inclusive); make it on or after {start_name}")


def _build(header: _Header, lines: list[_Line], payload: Any, src: Source) -> RecordGroup:
    currency = header.currency
    keys: set[str] = set()
    for line in lines:
        if line.key in keys:
            raise RowError(line.namer("id"), f"line id {line.key!r} appears twice in the invoice",
                           "give each line of an invoice its own id")
        keys.add(line.key)
    line_sum = sum(line.amount for line in lines)
    subtotal = header.subtotal
    if subtotal is None:
        subtotal = line_sum if lines or header.total is None else header.total - header.tax
    elif lines and subtotal != line_sum:
        raise RowError("subtotal", f"subtotal {_major(subtotal, currency)} is not the sum of the lines "
                       f"{_major(line_sum, currency)}", "correct the subtotal or the line amounts (or leave "
                       "subtotal empty to use the sum of the lines)")
    total = subtotal + header.tax
    if header.total is not None and header.total != total:
        raise RowError("total", f"total {_major(header.total, currency)} is not subtotal + tax "
                       f"{_major(total, currency)}", "correct the total (or leave it empty to compute it)")
    paid = header.amount_paid
    if paid is None:
        paid = total if header.status == "paid" else 0
    invoice_id = record_id("inv", src.system, header.external_id)
    starts = [line.service_start for line in lines if line.service_start is not None]
    ends = [line.service_end for line in lines if line.service_end is not None]
    invoice = Invoice(
        id=invoice_id,
        system=src.system,
        external_id=header.external_id,
        fetched_at=src.fetched_at,
        payload_hash=payload_hash(payload),
        customer_external_id=header.customer,
        contract_external_id=header.contract,
        number=header.number,
        status=header.status,
        currency=currency,
        issued_at=header.issued_at,
        due_at=header.due_at,
        period_start=header.period_start or (min(starts) if starts else None),
        period_end=header.period_end or (max(ends) if ends else None),
        subtotal_minor=subtotal,
        tax_minor=header.tax,
        total_minor=total,
        amount_paid_minor=paid,
        amount_due_minor=total - paid,
        attributes=header.attributes,
    )
    children = [
        InvoiceLine(
            invoice_id=invoice_id,
            line_key=line.key,
            kind=line.kind,
            description=line.description,
            component=line.component,
            meter=line.meter,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount_minor=line.amount,
            currency=currency,
            service_start=line.service_start,
            service_end=line.service_end,
            proration=line.proration,
            evidence=[evidence_ref(src.system, "invoice", header.external_id, line=line.key, file=src.location)],
        )
        for line in lines
    ]
    return RecordGroup(invoice, children)


def _major(minor: int, currency: str) -> str:
    return decimal_text(to_major(minor, currency))

