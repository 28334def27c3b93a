"""Credit note files to :class:`~subledger.core.model.CreditNote`, and their refunds to payments.

A credit note reduces what a customer owes: ``amount`` is its total (positive, major units,
``tax`` included), optionally applied to one ``invoice``. The part of it paid back to the
customer in cash is ``refund`` (default 0, at most the amount); the rest stays as credit.

JSON/JSONL/YAML: one object per credit note with an optional ``lines`` list of
``{"id", "kind", "description", "component", "amount"}``. CSV: one row per line, the
credit note's own columns repeated (or left empty) on each of its rows and the line's
columns prefixed ``line_``; a row with no ``line_`` values is a credit note without
lines. Lines add up to the amount; lines of kind ``tax`` add up to ``tax``. Without lines,
the credit note gets one line of kind ``other`` (key ``1``, described by ``reason``) for
the amount less tax, and one of kind ``tax`` (key ``tax``) for the tax, if any.

A refund is cash going back to the customer, so it is also a payment: the ``payments``
stream reads the credit note files too (:class:`CreditNoteRefunds`) and yields, for each
credit note with a refund, a :class:`~subledger.core.model.Payment` of ``-refund`` with
the external id ``<credit note id>:refund``, method ``refund``, reference
``credit_note:<credit note id>``, received at the credit note's ``issued_at``, applied
(negatively) to the credit note's invoice when it names one. The refund of a void credit
note is yielded with status ``failed`` (no cash moved) and applied to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from subledger.core.connector import RecordGroup, Rejected
from subledger.core.db_types import decimal_text
from subledger.core.model import CreditNote, Payment, PaymentApplication, evidence_ref, payload_hash, record_id
from subledger.core.money import to_major
from subledger.plugins.files import fields
from subledger.plugins.files.documents import Row
from subledger.plugins.files.fields import RowError
from subledger.plugins.files.invoices import LINE_KINDS
from subledger.plugins.files.mapping import Mapped, Namer, RecordKind, Source

STATUSES = ("issued", "void")
HEADER_KEYS = (
    "id", "customer", "currency", "invoice", "number", "amount", "tax", "refund", "issued_at", "reason", "status",
)
LINE_KEYS = ("id", "kind", "description", "component", "amount")
LINE_PREFIX = "line_"
REFUND_SUFFIX = ":refund"
REFERENCE_PREFIX = "credit_note:"
# The refund payment's external id ("<id>:refund") and reference ("credit_note:<id>") fit in 255.
ID_LENGTH = 255 - max(len(REFUND_SUFFIX), len(REFERENCE_PREFIX))


def refund_external_id(credit_note_id: str) -> str:
    """The external id of the payment that carries a credit note's refund."""
    return credit_note_id + REFUND_SUFFIX


class CreditNotes(RecordKind):
    stream = "credit_notes"
    record_type = "credit_note"
    columns = HEADER_KEYS + tuple(LINE_PREFIX + key for key in LINE_KEYS)
    required_columns = ("id", "customer", "currency", "amount", "issued_at")
    example = (' such as {"id": "cn_1", "customer": "acme", "currency": "USD", "amount": "100.00", '
               '"issued_at": "2026-04-02"}')

    def map_document(self, data: dict[str, Any], src: Source) -> Any:
        fields.check_keys(data, (*HEADER_KEYS, "lines"))
        header = _Header(data)
        lines = fields.document_lines(
            data, LINE_KEYS, lambda item, namer, key: _Line(item, header.currency, namer, default_key=key))
        return self.build(header, lines, data, src)

    def from_csv(self, rows: Iterable[Row], src: Source) -> Iterator[Mapped | Rejected]:
        return self.from_grouped_csv(
            rows, src, what="credit note", header_keys=HEADER_KEYS, parse_header=_Header,
            child_data=lambda row: {k[len(LINE_PREFIX):]: v for k, v in row.items() if k.startswith(LINE_PREFIX) and v},
            parse_child=lambda data, header, n: _Line(data, header.currency, _csv_name, default_key=str(n + 1)),
            build=lambda header, lines, rows: self.build(header, lines, rows, src),
        )

    def build(self, header: _Header, lines: list[_Line], payload: Any, src: Source) -> Any:
        """The canonical record of a validated credit note (here: the credit note itself)."""
        return _credit_note(header, lines, payload, src)


class CreditNoteRefunds(CreditNotes):
    """The refunds of the credit note files, as payments (read by the ``payments`` stream).

    The credit notes are validated exactly as the ``credit_notes`` stream validates them,
    but problems are left to that stream to report: this kind yields only the refund
    payments of good credit notes.
    """

    stream = "payments"
    record_type = "payment"

    def build(self, header: _Header, lines: list[_Line], payload: Any, src: Source) -> Any:
        _credit_note(header, lines, payload, src)  # the same checks: no refund from a rejected credit note
        return _refund(header, payload, src)

    def mapped(self, line: int, record: Any, last_line: int) -> Mapped:
        if record is None:  # a credit note without a refund
            return Mapped(line, None, "", "", last_line)
        return super().mapped(line, record, last_line)

    def from_documents(self, rows: Iterable[Row], src: Source) -> Iterator[Mapped | Rejected]:
        return _refunds_only(super().from_documents(rows, src))

    def from_csv(self, rows: Iterable[Row], src: Source) -> Iterator[Mapped | Rejected]:
        return _refunds_only(super().from_csv(rows, src))


def _refunds_only(items: Iterable[Mapped | Rejected]) -> Iterator[Mapped | Rejected]:
    for item in items:
        if isinstance(item, Mapped) and item.record is not None:
            yield item


def _csv_name(key: str) -> str:
    return LINE_PREFIX + key


class _Header:
    """A credit note's own fields, validated."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.external_id = fields.required_text(data, "id", max_length=ID_LENGTH)
        self.customer = fields.required_text(data, "customer")
        currency = fields.currency(data)
        assert currency is not None
        self.currency = currency
        self.invoice = fields.text(data, "invoice", required=False)
        self.number = fields.text(data, "number", required=False, max_length=128)
        if fields.is_absent(data.get("amount")):
            raise RowError("amount", "amount is missing",
                           "write the credit note total (tax included) in major units, e.g. 100.00")
        self.amount = fields.money(data["amount"], currency, "amount")
        if self.amount <= 0:
            raise RowError("amount", f"amount {_major(self.amount, currency)} is not positive",
                           "write the credit note total as a positive amount: a credit note credits by nature")
        self.tax = fields.optional_money(data, "tax", currency)
        if self.tax is not None and self.tax < 0:
            raise RowError("tax", f"tax {_major(self.tax, currency)} is negative",
                           "write the tax credited as a positive amount (part of amount)")
        if self.tax is not None and self.tax > self.amount:
            raise RowError("tax", f"tax {_major(self.tax, currency)} is more than the amount "
                           f"{_major(self.amount, currency)}",
                           "amount is the total including tax: correct tax or amount")
        self.refund = fields.optional_money(data, "refund", currency) or 0
        if self.refund < 0:
            raise RowError("refund", f"refund {_major(self.refund, currency)} is negative",
                           "write the part of the amount paid back to the customer, 0 or more")
        if self.refund > self.amount:
            raise RowError("refund", f"refund {_major(self.refund, currency)} is more than the amount "
                           f"{_major(self.amount, currency)}", "a credit note refunds at most its total: lower "
                           "refund (the rest stays as credit) or correct amount")
        issued = fields.timestamp(data, "issued_at", required=True)
        assert issued is not None
        self.issued_at: datetime = issued
        self.reason = fields.text(data, "reason", required=False)
        self.status = fields.choice(data, "status", STATUSES, default="issued")


class _Line:
    """One credit note line, validated. ``namer`` gives field names as the file writes them."""

    def __init__(self, data: dict[str, Any], currency: str, namer: Namer, *, default_key: str) -> None:
        self.key = fields.text(data, "id", required=False, name=namer("id")) or default_key
        self.kind = fields.choice(data, "kind", LINE_KINDS, default="other", name=namer("kind"))
        self.description = fields.text(data, "description", required=False, max_length=1024,
                                       name=namer("description")) or ""
        self.component = fields.text(data, "component", required=False, max_length=128, name=namer("component"))
        if fields.is_absent(data.get("amount")):
            raise RowError(namer("amount"), f"{namer('amount')} is missing",
                           "give every line its amount in major units, e.g. 12.50")
        self.amount = fields.money(data["amount"], currency, namer("amount"))
        self.namer = namer


def _line(key: str, kind: str, description: str, component: str | None, amount: int,
          header: _Header, src: Source) -> dict[str, Any]:
    return {
        "line_key": key, "kind": kind, "description": description, "component": component, "amount_minor": amount,
        "evidence": [evidence_ref(src.system, "credit_note", header.external_id, line=key, file=src.location)],
    }


def _credit_note(header: _Header, lines: list[_Line], payload: Any, src: Source) -> CreditNote:
    currency = header.currency
    if lines:
        keys: set[str] = set()
        for line in lines:
            if line.key in keys:
                raise RowError(line.namer("id"), f"line id {line.key!r} appears twice in the credit note",
                               "give each line of a credit note its own id")
            keys.add(line.key)
        total = sum(line.amount for line in lines)
        if total != header.amount:
            raise RowError("amount", f"the lines add up to {_major(total, currency)}, not the amount "
                           f"{_major(header.amount, currency)}", "correct the line amounts or the amount (the "
                           "lines add up to the credit note total, tax lines included)")
        tax = sum(line.amount for line in lines if line.kind == "tax")
        if header.tax is not None and header.tax != tax:
            raise RowError("tax", f"tax {_major(header.tax, currency)} is not the sum of the lines of kind tax "
                           f"{_major(tax, currency)}", "write the tax as lines of kind tax that add up to tax "
                           "(or leave tax empty to take it from those lines)")
        stored = [_line(line.key, line.kind, line.description, line.component, line.amount, header, src)
                  for line in lines]
    else:
        tax = header.tax or 0
        stored = [_line("1", "other", header.reason or "credit note", None, header.amount - tax, header, src)]
        if tax:
            stored.append(_line("tax", "tax", "tax", None, tax, header, src))
    return CreditNote(
        id=record_id("cn", src.system, header.external_id),
        system=src.system,
        external_id=header.external_id,
        fetched_at=src.fetched_at,
        payload_hash=payload_hash(payload),
        customer_external_id=header.customer,
        invoice_external_id=header.invoice,
        number=header.number,
        status=header.status,
        reason=header.reason,
        currency=currency,
        total_minor=header.amount,
        issued_at=header.issued_at,
        lines=stored,
    )


def _refund(header: _Header, payload: Any, src: Source) -> RecordGroup | None:
    """The payment that carries the credit note's refund, or None when it refunds nothing."""
    if not header.refund:
        return None
    external_id = refund_external_id(header.external_id)
    payment_id = record_id("pay", src.system, external_id)
    issued = header.status == "issued"
    payment = Payment(
        id=payment_id,
        system=src.system,
        external_id=external_id,
        fetched_at=src.fetched_at,
        payload_hash=payload_hash({"refund_of_credit_note": payload}),
        customer_external_id=header.customer,
        currency=header.currency,
        amount_minor=-header.refund,
        received_at=header.issued_at,
        status="succeeded" if issued else "failed",
        method="refund",
        reference=REFERENCE_PREFIX + header.external_id,
    )
    applications = []
    if issued and header.invoice:
        applications.append(PaymentApplication(
            payment_id=payment_id, invoice_external_id=header.invoice, amount_minor=-header.refund,
            currency=header.currency, applied_at=header.issued_at,
        ))
    return RecordGroup(payment, applications)


def _major(minor: int, currency: str) -> str:
    return decimal_text(to_major(minor, currency))
