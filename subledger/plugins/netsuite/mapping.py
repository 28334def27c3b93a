"""NetSuite records (REST record service shapes) -> canonical records.

Internal ids are the external ids subledger keeps (stable, never reused); NetSuite's own
``externalId`` field is where subledger writes its ids, so it is kept in ``attributes``
and, for customers, read as the canonical link (``customer_link_field``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from subledger.core.connector import RecordGroup
from subledger.core.model import CreditNote, Customer, Invoice, InvoiceLine, Payment, PaymentApplication
from subledger.core.model.base import evidence_ref, payload_hash, record_id
from subledger.core.money import to_minor
from subledger.plugins.netsuite import exact_json
from subledger.plugins.netsuite.config import NetSuiteConfig

INVOICE_STATUS = {"Open": "open", "Paid In Full": "paid", "Voided": "void", "Pending Approval": "draft",
                  "Rejected": "void"}


class MappingError(ValueError):
    """A record that cannot be mapped; the message names the field."""


def _hash(obj: dict[str, Any]) -> str:
    return payload_hash(exact_json.dumps({k: v for k, v in obj.items() if k != "links"}))


def _day(value: Any) -> date | None:
    return date.fromisoformat(str(value)[:10]) if value else None


def _instant(value: Any) -> datetime | None:
    day = _day(value)
    return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None


def _currency(cfg: NetSuiteConfig, obj: dict[str, Any]) -> str:
    ref = obj.get("currency") or {}
    code = cfg.currency_code(ref.get("id"), ref.get("refName"))
    if code is None:
        raise MappingError(f"currency {ref.get('id')!r} ({ref.get('refName')!r}) is not in the config's currencies map")
    return code


def _minor(value: Any, currency: str) -> int:
    return to_minor(Decimal(str(value if value is not None else 0)), currency)


def customer(cfg: NetSuiteConfig, system: str, obj: dict[str, Any]) -> Customer:
    email = obj.get("email") or None
    link = None if cfg.customer_link_field == "none" else obj.get(cfg.customer_link_field)
    currency = None
    if obj.get("currency"):
        currency = cfg.currency_code(obj["currency"].get("id"), obj["currency"].get("refName"))
    return Customer(
        id=record_id("cus", system, obj["id"]), system=system, external_id=str(obj["id"]),
        name=obj.get("companyName") or obj.get("entityId") or "", email=email,
        email_domain=email.rsplit("@", 1)[-1].lower() if email and "@" in email else None,
        currency=currency, canonical_hint=str(link) if link else None, payload_hash=_hash(obj),
        attributes={"entity_id": obj.get("entityId"), "netsuite_external_id": obj.get("externalId"),
                    "subsidiary": (obj.get("subsidiary") or {}).get("id"), "inactive": bool(obj.get("isInactive"))},
    )


def invoice(cfg: NetSuiteConfig, system: str, obj: dict[str, Any]) -> RecordGroup:
    currency = _currency(cfg, obj)
    inv_id = record_id("inv", system, obj["id"])
    lines = []
    for n, line in enumerate((obj.get("item") or {}).get("items") or []):
        key = str(line.get("line", n + 1))
        quantity = line.get("quantity")
        rate = line.get("rate")
        lines.append(InvoiceLine(
            invoice_id=inv_id, line_key=key, kind=line.get("custcol_subledger_kind") or "other",
            description=line.get("description") or "", component=line.get("custcol_subledger_component"),
            quantity=Decimal(str(quantity)) if quantity is not None else None,
            unit_price=Decimal(str(rate)) if rate is not None else None,
            amount_minor=_minor(line.get("amount"), currency), currency=currency,
            service_start=_day(line.get("revRecStartDate")), service_end=_day(line.get("revRecEndDate")),
            evidence=[evidence_ref(system, "invoice_line", f"{obj['id']}/{key}")],
        ))
    starts = [ln.service_start for ln in lines if ln.service_start]
    ends = [ln.service_end for ln in lines if ln.service_end]
    total = _minor(obj.get("total"), currency)
    remaining = _minor(obj.get("amountRemaining"), currency)
    status_name = (obj.get("status") or {}).get("refName") or "Open"
    attributes = {"netsuite_external_id": obj.get("externalId"),
                  "posting_period": (obj.get("postingPeriod") or {}).get("id")}
    if obj.get(cfg.source_system_field) and obj.get(cfg.source_id_field):
        attributes["source_system"] = obj[cfg.source_system_field]
        attributes["source_external_id"] = obj[cfg.source_id_field]
    record = Invoice(
        id=inv_id, system=system, external_id=str(obj["id"]), customer_external_id=str(obj["entity"]["id"]),
        number=obj.get("tranId"), status=INVOICE_STATUS.get(status_name, "open"), currency=currency,
        issued_at=_instant(obj.get("tranDate")), due_at=_instant(obj.get("dueDate")),
        period_start=min(starts) if starts else None, period_end=max(ends) if ends else None,
        subtotal_minor=_minor(obj.get("subtotal"), currency), tax_minor=_minor(obj.get("taxTotal"), currency),
        total_minor=total, amount_due_minor=remaining, amount_paid_minor=total - remaining,
        payload_hash=_hash(obj), attributes=attributes,
    )
    return RecordGroup(record, lines)


def credit_memo(cfg: NetSuiteConfig, system: str, obj: dict[str, Any]) -> CreditNote:
    currency = _currency(cfg, obj)
    return CreditNote(
        id=record_id("cn", system, obj["id"]), system=system, external_id=str(obj["id"]),
        customer_external_id=str(obj["entity"]["id"]),
        invoice_external_id=str(obj["createdFrom"]["id"]) if obj.get("createdFrom") else None,
        number=obj.get("tranId"), status="issued", reason=obj.get("memo"), currency=currency,
        total_minor=_minor(obj.get("total"), currency), issued_at=_instant(obj.get("tranDate")),
        payload_hash=_hash(obj),
        lines=[{"line_key": str(ln.get("line")), "description": ln.get("description") or "",
                "amount_minor": _minor(ln.get("amount"), currency),
                "evidence": [evidence_ref(system, "credit_memo_line", f"{obj['id']}/{ln.get('line')}")]}
               for ln in (obj.get("item") or {}).get("items") or []],
    )


def customer_payment(cfg: NetSuiteConfig, system: str, obj: dict[str, Any]) -> RecordGroup:
    currency = _currency(cfg, obj)
    pay_id = record_id("pay", system, obj["id"])
    received = _instant(obj.get("tranDate"))
    if received is None:
        raise MappingError("customer payment has no tranDate")
    applications = [
        PaymentApplication(payment_id=pay_id, invoice_external_id=str(app["doc"]["id"]),
                           amount_minor=_minor(app.get("amount"), currency), currency=currency,
                           applied_at=received)
        for app in (obj.get("apply") or {}).get("items") or [] if app.get("apply", True)
    ]
    record = Payment(
        id=pay_id, system=system, external_id=str(obj["id"]), customer_external_id=str(obj["customer"]["id"]),
        currency=currency, amount_minor=_minor(obj.get("payment"), currency), received_at=received,
        status="succeeded", method=(obj.get("paymentMethod") or {}).get("refName"),
        reference=obj.get("tranId"), payload_hash=_hash(obj),
    )
    return RecordGroup(record, applications)
