"""Recognition reads billing documents from the billing systems only: ERP copies never count twice."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.model import Invoice, InvoiceLine, record_id
from subledger.core.revrec.sources import SourceScope, load_sources


def add_invoice(s: Session, system: str, ext: str) -> None:
    inv_id = record_id("inv", system, ext)
    s.add(Invoice(id=inv_id, system=system, external_id=ext, customer_external_id="acme", currency="USD",
                  status="paid", issued_at=datetime(2026, 1, 31, tzinfo=UTC), total_minor=12000))
    s.add(InvoiceLine(invoice_id=inv_id, line_key="1", kind="recurring", amount_minor=12000, currency="USD",
                      service_start=date(2026, 1, 1), service_end=date(2026, 1, 31)))


def test_an_erp_copy_of_an_invoice_is_left_out_by_the_scope(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        add_invoice(s, "stripe", "in_1")
        add_invoice(s, "netsuite", "in_1-copy")  # the ERP's copy of the same invoice
    with Session(engine) as s:
        everything = load_sources(s)
        billed = load_sources(s, scope=SourceScope(billing_systems=("stripe",)))
    assert sum(b.amount_minor for o in everything.obligations for b in o.billings) == 24000  # twice
    assert sum(b.amount_minor for o in billed.obligations for b in o.billings) == 12000
