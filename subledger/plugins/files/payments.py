"""Payment files to :class:`~subledger.core.model.Payment` with its :class:`~subledger.core.model.PaymentApplication` s.

Each payment is yielded as a :class:`~subledger.core.connector.RecordGroup`: the payment
and the complete set of its applications to invoices.

JSON/JSONL/YAML: one object per payment with an ``applications`` list of
``{"invoice", "amount", "applied_at"}``. CSV: one row per application, the payment's own
columns repeated (or left empty) on each of its rows, the application in ``invoice``,
``applied_amount`` and ``applied_at``; a row with no ``invoice`` is a payment with
nothing applied (an unapplied payment). Money is in major units (``"12.34"``); a refund
is a negative amount. Applications never exceed the payment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from subledger.core.connector import RecordGroup, Rejected
from subledger.core.db_types import decimal_text
from subledger.core.model import Payment, PaymentApplication, payload_hash, record_id
from subledger.core.money import to_major
from subledger.plugins.files import fields
from subledger.plugins.files.documents import Row
from subledger.plugins.files.fields import RowError
from subledger.plugins.files.mapping import Mapped, Namer, RecordKind, Source

STATUSES = ("succeeded", "pending", "failed", "refunded")
HEADER_KEYS = ("id", "customer", "currency", "amount", "received_at", "status", "method", "reference")
APPLICATION_KEYS = ("invoice", "amount", "applied_at")
CSV_APPLICATION = {"invoice": "invoice", "applied_amount": "amount", "applied_at": "applied_at"}


class Payments(RecordKind):
    stream = "payments"
    record_type = "payment"
    columns = HEADER_KEYS + tuple(CSV_APPLICATION)
    required_columns = ("id", "customer", "currency", "amount", "received_at")
    example = ' such as {"id": "py_1", "customer": "acme", "currency": "USD", "amount": "100.00", ...}'

    def map_document(self, data: dict[str, Any], src: Source) -> RecordGroup:
        fields.check_keys(data, (*HEADER_KEYS, "applications"))
        header = _Header(data)
        items = data.get("applications")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise RowError("applications", "applications must be a list",
                           'write applications as a list, e.g. [{"invoice": "in_1", "amount": "100.00"}]')
        applications: list[_Application] = []
        for i, item in enumerate(items):
            def namer(key: str, i: int = i) -> str:
                return f"applications[{i}].{key}"

            if not isinstance(item, dict):
                raise RowError(f"applications[{i}]", "the application is not an object",
                               'write each application as {"invoice": ..., "amount": ...}')
            fields.check_keys(item, APPLICATION_KEYS, namer=namer)
            applications.append(_Application(item, header.currency, namer))
        return _build(header, applications, data, src)

    def from_csv(self, rows: Iterable[Row], src: Source) -> Iterator[Mapped | Rejected]:
        return self.from_grouped_csv(
            rows, src, what="payment", header_keys=HEADER_KEYS, parse_header=_Header,
            child_data=lambda row: {key: row[col] for col, key in CSV_APPLICATION.items() if row.get(col)},
            parse_child=lambda data, header, _n: _Application(data, header.currency, _csv_name),
            build=lambda header, applications, rows: _build(header, applications, rows, src),
        )


_CSV_NAMES = {value: key for key, value in CSV_APPLICATION.items()}


def _csv_name(key: str) -> str:
    return _CSV_NAMES[key]


class _Header:
    def __init__(self, data: dict[str, Any]) -> None:
        self.external_id = fields.required_text(data, "id")
        self.customer = fields.required_text(data, "customer")
        currency = fields.currency(data)
        assert currency is not None
        self.currency = currency
        if fields.is_absent(data.get("amount")):
            raise RowError("amount", "amount is missing", "write the amount received in major units, e.g. 100.00")
        self.amount = fields.money(data["amount"], currency, "amount")
        received = fields.timestamp(data, "received_at", required=True)
        assert received is not None
        self.received_at: datetime = received
        self.status = fields.choice(data, "status", STATUSES, default="succeeded")
        self.method = fields.text(data, "method", required=False, max_length=64)
        self.reference = fields.text(data, "reference", required=False)


class _Application:
    def __init__(self, data: dict[str, Any], currency: str, namer: Namer) -> None:
        self.invoice = fields.required_text(data, "invoice", name=namer("invoice"))
        if fields.is_absent(data.get("amount")):
            raise RowError(namer("amount"), f"{namer('amount')} is missing",
                           "write how much of the payment goes to this invoice, e.g. 100.00")
        self.amount = fields.money(data["amount"], currency, namer("amount"))
        if self.amount == 0:
            raise RowError(namer("amount"), f"{namer('amount')} is zero",
                           "remove the application, or write the amount applied")
        self.applied_at = fields.timestamp(data, "applied_at", name=namer("applied_at"))
        self.namer = namer


def _build(header: _Header, applications: list[_Application], payload: Any, src: Source) -> RecordGroup:
    currency = header.currency
    seen: set[str] = set()
    for app in applications:
        if app.invoice in seen:
            raise RowError(app.namer("invoice"), f"invoice {app.invoice!r} is applied twice",
                           "write one application per invoice (add the amounts together)")
        seen.add(app.invoice)
        if (app.amount > 0) != (header.amount > 0):
            raise RowError(app.namer("amount"), "the application and the payment have opposite signs",
                           "apply a payment with positive amounts, and a refund with negative ones")
    applied = sum(app.amount for app in applications)
    if abs(applied) > abs(header.amount):
        raise RowError("amount", f"applications total {_major(applied, currency)}, more than the payment "
                       f"{_major(header.amount, currency)}", "correct the applied amounts or the payment amount")
    payment_id = record_id("pay", src.system, header.external_id)
    payment = Payment(
        id=payment_id,
        system=src.system,
        external_id=header.external_id,
        fetched_at=src.fetched_at,
        payload_hash=payload_hash(payload),
        customer_external_id=header.customer,
        currency=currency,
        amount_minor=header.amount,
        received_at=header.received_at,
        status=header.status,
        method=header.method,
        reference=header.reference,
    )
    children = [
        PaymentApplication(
            payment_id=payment_id,
            invoice_external_id=app.invoice,
            amount_minor=app.amount,
            currency=currency,
            applied_at=app.applied_at or header.received_at,
        )
        for app in applications
    ]
    return RecordGroup(payment, children)


def _major(minor: int, currency: str) -> str:
    return decimal_text(to_major(minor, currency))
