"""Invoices with their lines and payments with their applications, as record groups."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from subledger.core.connector import RecordGroup
from subledger.core.model import Invoice, InvoiceLine, Payment, PaymentApplication, record_id

INVOICES_CSV = """
    id,number,customer,contract,currency,status,issued_at,due_at,tax,line_id,line_kind,line_description,line_component,line_meter,line_quantity,line_unit_price,line_amount,line_service_start,line_service_end
    in_1,INV-0001,acme,acme-2026,USD,paid,2026-04-01,2026-05-01T00:00:00Z,8.25,platform,recurring,Platform fee,platform,,1,500,500.00,2026-03-01,2026-03-31
    in_1,,,,,,,,,api,usage,API calls over 100k,api_calls,api_calls,12000,0.0010,12.00,2026-03-01,2026-03-31
    in_2,INV-0002,beta,,JPY,open,2026-04-01T09:00:00+09:00,,,,,,,,,,,,
"""  # noqa: E501


def test_invoice_csv_one_row_per_line(folder, read):
    folder.write("invoices.csv", INVOICES_CSV)
    result = read("invoices")
    assert result.rejects == []
    first, second = result.records
    assert isinstance(first, RecordGroup)
    invoice = first.record
    assert isinstance(invoice, Invoice)
    assert invoice.id == record_id("inv", "files", "in_1")
    assert (invoice.external_id, invoice.number, invoice.customer_external_id, invoice.contract_external_id) == (
        "in_1", "INV-0001", "acme", "acme-2026",
    )
    # 500.00 + 12.00 = 512.00; + 8.25 tax = 520.25; paid, so nothing is due.
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (51200, 825, 52025)
    assert (invoice.amount_paid_minor, invoice.amount_due_minor) == (52025, 0)
    assert invoice.issued_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert invoice.due_at == datetime(2026, 5, 1, tzinfo=UTC)
    # The invoice's period is its lines' service period.
    assert (invoice.period_start, invoice.period_end) == (date(2026, 3, 1), date(2026, 3, 31))
    platform, api = first.children
    assert isinstance(api, InvoiceLine)
    assert (api.invoice_id, api.line_key, api.kind, api.component, api.meter) == (
        invoice.id, "api", "usage", "api_calls", "api_calls",
    )
    assert (api.quantity, api.unit_price, api.amount_minor, api.currency) == (
        Decimal("12000"), Decimal("0.0010"), 1200, "USD",
    )
    assert (api.service_start, api.service_end) == (date(2026, 3, 1), date(2026, 3, 31))
    assert api.evidence == [{"system": "files", "object": "invoice", "id": "in_1", "line": "api",
                             "file": "invoices.csv"}]
    assert platform.amount_minor == 50000
    # An invoice row without line columns is an invoice without lines (JPY has no minor unit).
    assert second.children == []
    assert (second.record.currency, second.record.total_minor, second.record.status) == ("JPY", 0, "open")
    assert second.record.issued_at == datetime(2026, 4, 1, 0, 0, tzinfo=UTC)


def test_invoice_json_with_lines(folder, read):
    folder.write("invoices/2026-03.json", """
        [{"id": "in_9", "customer": "acme", "currency": "EUR", "total": "30.50", "amount_paid": 10,
          "period_start": "2026-03-01", "period_end": "2026-03-31", "metadata": {"po": "PO-7"},
          "lines": [
            {"amount": 20, "description": "Seats", "quantity": 2, "unit_price": 10},
            {"amount": 10.50, "kind": "usage", "proration": true}
          ]}]
    """)
    [group] = read("invoices").records
    invoice = group.record
    assert (invoice.subtotal_minor, invoice.total_minor, invoice.amount_paid_minor, invoice.amount_due_minor) == (
        3050, 3050, 1000, 2050,
    )
    assert invoice.attributes == {"po": "PO-7"}
    # Lines without an id are keyed by their position.
    assert [(c.line_key, c.amount_minor, c.proration) for c in group.children] == [
        ("1", 2000, False), ("2", 1050, True),
    ]


def test_bad_invoices_are_rejected_whole_with_the_row_and_field_at_fault(folder, read):
    folder.write("invoices.csv", """
        id,customer,currency,status,subtotal,total,line_id,line_amount,line_service_start,line_service_end
        ok,acme,USD,open,,,l1,10.00,,
        a,acme,USD,open,,,l1,10.001,,
        b,acme,USD,sent,,,l1,1.00,,
        c,acme,USD,open,,,l1,1.00,2026-03-31,2026-03-01
        d,acme,USD,open,5.00,,l1,1.00,,
        e,acme,USD,open,,2.00,l1,1.00,,
        f,acme,USD,open,,,l1,1.00,,
        f,acme,EUR,,,,l2,1.00,,
        g,acme,USD,open,,,l1,1.00,,
        g,,,,,,l1,2.00,,
        h,acme,USD,open,,,l1,,,
    """)
    result = read("invoices")
    assert [g.record.external_id for g in result.records] == ["ok"]
    expected = {
        3: ("line_amount", "line_amount '10.001' has more than 2 decimal places for USD", "round line_amount"),
        4: ("status", "status 'sent' is not one of draft, open, paid, void, uncollectible", "write one of"),
        5: ("line_service_end", "line_service_end 2026-03-01 is before line_service_start 2026-03-31", "inclusive"),
        6: ("subtotal", "subtotal 5.00 is not the sum of the lines 1.00", "correct the subtotal"),
        7: ("total", "total 2.00 is not subtotal + tax 1.00", "correct the total"),
        9: ("currency", "currency 'EUR' differs from 'USD' on line 8", "the same on each of its rows"),
        10: ("line_id", "line id 'l1' appears twice in the invoice", "its own id"),
        12: ("line_amount", "line_amount is missing", "give every line its amount"),
    }
    assert sorted(r.line for r in result.rejects) == sorted(expected)
    for line, (field, reason, fix) in expected.items():
        reject = result.reject_at(line)
        assert reject.field == field
        assert reject.reason.startswith(reason), reject.reason
        assert reject.reason.endswith("was not loaded")
        assert fix in reject.fix


def test_an_invoice_json_line_error_names_its_path(folder, read):
    folder.write("invoices.json", """
        [
          {"id": "x", "customer": "acme", "currency": "USD",
           "lines": [{"amount": "1.00"}, {"amount": "abc"}]}
        ]
    """)
    [reject] = read("invoices").rejects
    assert (reject.line, reject.field, reject.reason) == (2, "lines[1].amount", "lines[1].amount 'abc' is not a number")


PAYMENTS_CSV = """
    id,customer,currency,amount,received_at,method,reference,invoice,applied_amount,applied_at
    py_1,acme,USD,600.00,2026-04-03T10:00:00Z,ach,ACH-991,in_1,520.25,
    py_1,,,,,,,in_7,50.00,2026-04-05T00:00:00Z
    py_2,beta,USD,100.00,2026-04-04,wire,,,,
"""


def test_payments_csv_with_applications(folder, read):
    folder.write("payments.csv", PAYMENTS_CSV)
    result = read("payments")
    assert result.rejects == []
    first, second = result.records
    payment = first.record
    assert isinstance(payment, Payment)
    assert payment.id == record_id("pay", "files", "py_1")
    assert (payment.amount_minor, payment.currency, payment.method, payment.reference, payment.status) == (
        60000, "USD", "ach", "ACH-991", "succeeded",
    )
    assert payment.received_at == datetime(2026, 4, 3, 10, tzinfo=UTC)
    a, b = first.children
    assert isinstance(a, PaymentApplication)
    assert (a.payment_id, a.invoice_external_id, a.amount_minor, a.currency) == (payment.id, "in_1", 52025, "USD")
    # Without its own date, an application is dated when the payment was received.
    assert a.applied_at == payment.received_at
    assert (b.invoice_external_id, b.amount_minor, b.applied_at) == ("in_7", 5000, datetime(2026, 4, 5, tzinfo=UTC))
    # 600.00 received, 570.25 applied: 29.75 is unapplied. py_2 is wholly unapplied.
    assert second.children == []
    assert second.record.received_at == datetime(2026, 4, 4, tzinfo=UTC)


def test_payments_json_with_applications(folder, read):
    folder.write("payments.jsonl", '{"id": "py_3", "customer": "acme", "currency": "USD", "amount": 75, '
                 '"received_at": "2026-04-03T10:00:00Z", "applications": [{"invoice": "in_1", "amount": 75}]}\n'
                 '{"id": "rf_1", "customer": "acme", "currency": "USD", "amount": "-20.00", '
                 '"received_at": "2026-04-09T10:00:00Z", "status": "refunded"}\n')
    py3, refund = read("payments").records
    assert [(c.invoice_external_id, c.amount_minor) for c in py3.children] == [("in_1", 7500)]
    assert (refund.record.amount_minor, refund.record.status) == (-2000, "refunded")


def test_bad_payments_are_rejected(folder, read):
    folder.write("payments.csv", """
        id,customer,currency,amount,received_at,invoice,applied_amount
        ok,acme,USD,10.00,2026-04-01T00:00:00Z,,
        a,acme,USD,10.00,2026-04-01T00:00:00,,
        b,acme,USD,10.00,2026-04-01T00:00:00Z,in_1,11.00
        c,acme,USD,10.00,2026-04-01T00:00:00Z,in_1,5.00
        c,,,,,in_1,5.00
        d,acme,USD,10.00,2026-04-01T00:00:00Z,in_1,
        e,acme,USD,,2026-04-01T00:00:00Z,,
    """)
    result = read("payments")
    assert [g.record.external_id for g in result.records] == ["ok"]
    expected = {
        3: ("received_at", "has no UTC offset"),
        4: ("amount", "applications total 11.00, more than the payment 10.00"),
        5: ("invoice", "invoice 'in_1' is applied twice"),
        7: ("applied_amount", "applied_amount is missing"),
        8: ("amount", "amount is missing"),
    }
    assert sorted(r.line for r in result.rejects) == sorted(expected)
    for line, (field, reason) in expected.items():
        reject = result.reject_at(line)
        assert (reject.stream, reject.field) == ("payments", field)
        assert reason in reject.reason
        assert reject.fix
