"""Store fixtures for revenue recognition tests: a contract, invoices, payments."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Session, select

from subledger.core import model as M


def utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def add_invoice(s: Session, ext: str, issued: datetime, lines: list[dict], *, contract: str | None = "C1",
                customer: str = "cus_1", status: str = "open", tax: int = 0) -> M.Invoice:
    inv = M.Invoice(id=f"inv_{ext}", system="stripe", external_id=ext, customer_external_id=customer,
                    contract_external_id=contract, currency="USD", issued_at=issued, status=status,
                    tax_minor=tax, total_minor=sum(ln["amount_minor"] for ln in lines) + tax)
    s.add(inv)
    s.flush()
    for i, ln in enumerate(lines, start=1):
        s.add(M.InvoiceLine(invoice_id=inv.id, line_key=str(i), currency="USD", **ln))
    s.flush()
    return inv


def seed_annual(s: Session) -> None:
    s.add(M.Contract(id="ctr_1", system="crm", external_id="C1", customer_external_id="cus_1", currency="USD",
                     start_date=date(2019, 1, 1)))
    add_invoice(s, "in_365", utc(2019, 1, 1), [
        {"kind": "recurring", "component": "platform", "amount_minor": 36500,
         "service_start": date(2019, 1, 1), "service_end": date(2019, 12, 31)},
        {"kind": "tax", "amount_minor": 3650},
    ])
    s.add(M.Payment(id="pay_1", system="stripe", external_id="py_1", customer_external_id="cus_1",
                    currency="USD", amount_minor=40150, received_at=utc(2019, 1, 5)))
    s.flush()
    s.add(M.PaymentApplication(payment_id="pay_1", invoice_external_id="in_365", amount_minor=40150,
                               currency="USD"))
    s.commit()


def balances(s: Session, period: str | None = None) -> dict[str, int]:
    out: dict[str, int] = {}
    stmt = select(M.JournalEntry, M.JournalLine).where(M.JournalLine.entry_id == M.JournalEntry.id)
    for e, ln in s.exec(stmt).all():
        if period is None or e.period <= period:
            out[ln.role] = out.get(ln.role, 0) + ln.debit_minor - ln.credit_minor
    return {k: v for k, v in out.items() if v}


