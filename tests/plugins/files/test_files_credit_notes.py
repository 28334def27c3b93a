"""Credit note files: applied to an invoice or refunded; a refund also reaches the payments stream."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.connector import RecordGroup
from subledger.core.model import CreditGrant, CreditNote, Payment, PaymentApplication, Reject, record_id
from subledger.sync.pull import pull_stream

CREDIT_NOTES_CSV = """
    id,customer,currency,invoice,number,amount,tax,refund,issued_at,reason,status,line_id,line_kind,line_description,line_component,line_amount
    cn_1,acme,USD,in_acme_2026_03,CN-1001,110.00,10.00,40.00,2026-04-10,API overage waived,,api,usage,API calls over the included 100000,api_overage,100.00
    cn_1,,,,,,,,,,,tax,tax,Sales tax,,10.00
    cn_2,globex,EUR,,CN-1002,25.50,,,2026-04-12T08:00:00+02:00,goodwill,issued,,,,,
"""  # noqa: E501

CREDIT_NOTES_JSON = """
    [
      {"id": "cn_1", "customer": "acme", "currency": "USD", "invoice": "in_acme_2026_03", "number": "CN-1001",
       "amount": "110.00", "tax": "10.00", "refund": "40.00", "issued_at": "2026-04-10",
       "reason": "API overage waived",
       "lines": [
         {"id": "api", "kind": "usage", "description": "API calls over the included 100000",
          "component": "api_overage", "amount": 100.00},
         {"id": "tax", "kind": "tax", "description": "Sales tax", "amount": "10.00"}
       ]},
      {"id": "cn_2", "customer": "globex", "currency": "EUR", "number": "CN-1002", "amount": 25.50,
       "issued_at": "2026-04-12T08:00:00+02:00", "reason": "goodwill", "status": "issued"}
    ]
"""


def _line(credit_note, key, kind, description, component, amount, location):
    return {"line_key": key, "kind": kind, "description": description, "component": component,
            "amount_minor": amount,
            "evidence": [{"system": "files", "object": "credit_note", "id": credit_note, "line": key,
                          "file": location}]}


@pytest.mark.parametrize(("name", "text"), [("credit_notes.csv", CREDIT_NOTES_CSV),
                                            ("credit_notes/2026-04.json", CREDIT_NOTES_JSON)])
def test_credit_notes_map_exactly_from_csv_and_json(folder, read, name, text):
    folder.write(name, text)
    result = read("credit_notes")
    assert result.rejects == []
    cn1, cn2 = result.records
    assert isinstance(cn1, CreditNote)
    assert (cn1.id, cn1.system, cn1.external_id) == (record_id("cn", "files", "cn_1"), "files", "cn_1")
    assert (cn1.customer_external_id, cn1.invoice_external_id, cn1.number, cn1.status, cn1.reason) == (
        "acme", "in_acme_2026_03", "CN-1001", "issued", "API overage waived",
    )
    # The total is positive and includes the tax, which is a line of kind tax (as revenue
    # recognition reads it: the tax reverses the liability, not revenue).
    assert (cn1.currency, cn1.total_minor, cn1.issued_at) == ("USD", 11000, datetime(2026, 4, 10, tzinfo=UTC))
    assert cn1.lines == [
        _line("cn_1", "api", "usage", "API calls over the included 100000", "api_overage", 10000, name),
        _line("cn_1", "tax", "tax", "Sales tax", None, 1000, name),
    ]
    # Without lines, the credit note is one line of its amount, described by its reason.
    assert (cn2.customer_external_id, cn2.invoice_external_id, cn2.currency, cn2.total_minor) == (
        "globex", None, "EUR", 2550,
    )
    assert cn2.issued_at == datetime(2026, 4, 12, 6, 0, tzinfo=UTC)
    assert cn2.lines == [_line("cn_2", "1", "other", "goodwill", None, 2550, name)]
    assert cn1.payload_hash and cn2.payload_hash


def test_tax_without_lines_becomes_a_tax_line(folder, read):
    folder.write("credit_notes.yaml", """
        - id: cn_9
          customer: acme
          currency: USD
          amount: 40.15
          tax: 3.65
          issued_at: 2026-04-01
    """)
    [cn] = read("credit_notes").records
    assert [(ln["line_key"], ln["kind"], ln["description"], ln["amount_minor"]) for ln in cn.lines] == [
        ("1", "other", "credit note", 3650), ("tax", "tax", "tax", 365),
    ]


# --- Refunds --------------------------------------------------------------------------------


def test_a_refund_is_also_a_payment_in_the_payments_stream(folder, read):
    folder.write("credit_notes.csv", CREDIT_NOTES_CSV)
    folder.write("payments.csv", "id,customer,currency,amount,received_at\npy_1,acme,USD,1000.00,2026-04-02\n")
    # The credit notes stream yields credit notes only ...
    assert all(isinstance(r, CreditNote) for r in read("credit_notes").records)
    # ... and the payments stream yields the cash side of cn_1's refund, next to the payment files.
    result = read("payments")
    assert result.rejects == []
    assert [g.record.external_id for g in result.records] == ["py_1", "cn_1:refund"]
    refund = result.records[1]
    assert isinstance(refund, RecordGroup)
    payment = refund.record
    assert isinstance(payment, Payment)
    assert payment.id == record_id("pay", "files", "cn_1:refund")
    assert (payment.customer_external_id, payment.currency, payment.amount_minor, payment.status) == (
        "acme", "USD", -4000, "succeeded",
    )
    assert (payment.method, payment.reference) == ("refund", "credit_note:cn_1")
    assert payment.received_at == datetime(2026, 4, 10, tzinfo=UTC)
    assert payment.payload_hash
    # Cash going back for the invoice the credit note is applied to: a negative application.
    [application] = refund.children
    assert isinstance(application, PaymentApplication)
    assert (application.payment_id, application.invoice_external_id, application.amount_minor,
            application.applied_at) == (payment.id, "in_acme_2026_03", -4000, datetime(2026, 4, 10, tzinfo=UTC))
    # Both streams remember the credit note file: nothing is read twice.
    assert "credit_notes.csv" in result.state["files"]
    assert read("payments", result.state).records == []


def test_refunds_without_an_invoice_or_of_a_void_credit_note(folder, read):
    folder.write("credit_notes.jsonl",
                 '{"id": "cn_a", "customer": "acme", "currency": "USD", "amount": "30.00", "refund": "30.00", '
                 '"issued_at": "2026-04-01"}\n'
                 '{"id": "cn_b", "customer": "acme", "currency": "USD", "invoice": "in_1", "amount": "20.00", '
                 '"refund": "20.00", "issued_at": "2026-04-02", "status": "void"}\n'
                 '{"id": "cn_c", "customer": "acme", "currency": "USD", "invoice": "in_1", "amount": "20.00", '
                 '"refund": "0", "issued_at": "2026-04-03"}\n')
    result = read("payments")
    assert [(g.record.external_id, g.record.amount_minor, g.record.status, len(g.children))
            for g in result.records] == [
        ("cn_a:refund", -3000, "succeeded", 0),  # unapplied: no invoice named
        ("cn_b:refund", -2000, "failed", 0),  # a void credit note refunded nothing
    ]  # cn_c refunds nothing, so it is not a payment


def test_the_payments_stream_leaves_credit_note_problems_to_the_credit_notes_stream(folder, read):
    folder.write("credit_notes.csv", """
        id,customer,currency,amount,refund,issued_at
        cn_ok,acme,USD,10.00,10.00,2026-04-01
        cn_bad,acme,USD,10.00,12.00,2026-04-01
    """)
    folder.write("credit_notes/broken.json", "[{")
    payments = read("payments")
    assert [g.record.external_id for g in payments.records] == ["cn_ok:refund"]
    assert payments.rejects == []
    notes = read("credit_notes")
    assert [cn.external_id for cn in notes.records] == ["cn_ok"]
    assert sorted((r.location, r.line) for r in notes.rejects) == [("credit_notes.csv", 3),
                                                                    ("credit_notes/broken.json", 1)]


def test_a_refund_whose_id_clashes_with_a_payment_is_reported_by_the_payments_stream(folder, read):
    folder.write("payments.csv", "id,customer,currency,amount,received_at\ncn_1:refund,acme,USD,5.00,2026-04-02\n")
    folder.write("credit_notes.csv",
                 "id,customer,currency,amount,refund,issued_at\ncn_1,acme,USD,9.00,9.00,2026-04-01\n")
    result = read("payments")
    assert [g.record.amount_minor for g in result.records] == [500]
    [reject] = result.rejects
    assert (reject.stream, reject.location, reject.line, reject.field) == ("payments", "credit_notes.csv", 2, "id")
    assert "already read from payments.csv line 2" in reject.reason


def test_a_credit_note_appended_later_brings_only_its_refund(folder, read):
    folder.write("credit_notes.jsonl", '{"id": "cn_1", "customer": "acme", "currency": "USD", "amount": 5, '
                 '"refund": 5, "issued_at": "2026-04-01"}\n')
    first = read("payments")
    folder.append("credit_notes.jsonl", '{"id": "cn_2", "customer": "acme", "currency": "USD", "amount": 7, '
                  '"refund": 2, "issued_at": "2026-04-05"}\n')
    second = read("payments", first.state)
    assert [(g.record.external_id, g.record.amount_minor) for g in second.records] == [("cn_2:refund", -200)]


# --- Rejects ---------------------------------------------------------------------------------

BAD_NOTES = """
    id,customer,currency,invoice,amount,tax,refund,issued_at,status,line_id,line_kind,line_amount
    ok,acme,USD,in_1,10.00,,,2026-04-01,,,,
    a,acme,USD,in_1,10.00,,12.00,2026-04-01,,,,
    b,acme,USD,in_1,10.00,,,2026-04-01,,l1,usage,6.00
    b,,,,,,,,,l2,usage,3.00
    c,acme,USD,in_1,10.005,,,2026-04-01,,,,
    d,acme,USD,in_1,10.00,11.00,,2026-04-01,,,,
    e,acme,USD,in_1,10.00,1.00,,2026-04-01,,l1,usage,10.00
    f,acme,USD,in_1,,,,2026-04-01,,,,
    g,acme,USD,in_1,10.00,,,,,,,
    h,acme,USD,in_1,-10.00,,,2026-04-01,,,,
    i,acme,USD,in_1,10.00,,-1.00,2026-04-01,,,,
    j,acme,USD,in_1,10.00,,,2026-04-01,draft,,,
    k,acme,USD,in_1,10.00,,,2026-04-01,,l1,usage,5.00
    k,,,,,,,,,l1,usage,5.00
    m,acme,USD,in_1,10.00,,,2026-04-01,,l1,refund,10.00
    n,,USD,in_1,10.00,,,2026-04-01,,,,
"""


def test_each_bad_credit_note_is_rejected_on_its_own_with_file_line_field_and_fix(folder, read):
    folder.write("credit_notes.csv", BAD_NOTES)
    result = read("credit_notes")
    assert [cn.external_id for cn in result.records] == ["ok"]
    expected = {
        3: ("refund", "refund 12.00 is more than the amount 10.00", "refunds at most its total"),
        4: ("amount", "the lines add up to 9.00, not the amount 10.00", "correct the line amounts or the amount"),
        6: ("amount", "amount '10.005' has more than 2 decimal places for USD", "round amount to 2"),
        7: ("tax", "tax 11.00 is more than the amount 10.00", "total including tax"),
        8: ("tax", "tax 1.00 is not the sum of the lines of kind tax 0.00", "lines of kind tax"),
        9: ("amount", "amount is missing", "write the credit note total"),
        10: ("issued_at", "issued_at is missing", "write issued_at"),
        11: ("amount", "amount -10.00 is not positive", "positive amount"),
        12: ("refund", "refund -1.00 is negative", "0 or more"),
        13: ("status", "status 'draft' is not one of issued, void", "write one of"),
        14: ("line_id", "line id 'l1' appears twice in the credit note", "its own id"),
        16: ("line_kind", "line_kind 'refund' is not one of", "write one of"),
        17: ("customer", "customer is missing", "fill in customer"),
    }
    assert sorted(r.line for r in result.rejects) == sorted(expected)
    for line, (field, reason, fix) in expected.items():
        reject = result.reject_at(line)
        assert (reject.stream, reject.location, reject.field) == ("credit_notes", "credit_notes.csv", field), line
        assert reject.reason.startswith(reason), (line, reject.reason)
        assert reject.reason.endswith("was not loaded"), line
        assert fix in reject.fix, (line, reject.fix)
    # None of the bad ones reaches the payments stream either (a's refund is too large).
    assert read("payments").records == []


def test_a_json_credit_note_line_error_names_its_path(folder, read):
    folder.write("credit_notes.json", """
        [
          {"id": "x", "customer": "acme", "currency": "USD", "amount": "1.00", "issued_at": "2026-04-01",
           "lines": [{"amount": "1.00", "meter": "api_calls"}]}
        ]
    """)
    [reject] = read("credit_notes").rejects
    assert (reject.line, reject.field) == (2, "lines[0].meter")
    assert "use only id, kind, description, component, amount" in reject.fix


# --- Into the store ----------------------------------------------------------------------------


def test_pulled_into_the_store_credit_notes_grants_and_refunds_load_once(folder, engine: Engine):
    folder.write("credit_notes.csv", CREDIT_NOTES_CSV)
    folder.write("credit_grants.csv", """
        id,customer,contract,currency,amount,price,effective_at,expires_at,breakage,expected_breakage_rate
        cg_1,soylent,soylent-2026,USD,1200.00,1000.00,2026-01-01,2027-01-01,proportional,0.1
    """)
    connector = folder.connector()
    for _ in range(2):
        reports = {s: pull_stream(engine, connector, s) for s in ("credit_notes", "credit_grants", "payments")}
        assert all(r.rejected == 0 for r in reports.values())
    with Session(engine) as session:
        notes = session.exec(select(CreditNote).order_by(CreditNote.external_id)).all()
        assert [(cn.external_id, cn.total_minor, len(cn.lines)) for cn in notes] == [("cn_1", 11000, 2),
                                                                                    ("cn_2", 2550, 1)]
        [grant] = session.exec(select(CreditGrant)).all()
        assert (grant.price_minor, grant.amount_minor, grant.breakage) == (100000, 120000, "proportional")
        [payment] = session.exec(select(Payment)).all()
        assert (payment.external_id, payment.amount_minor, payment.reference) == (
            "cn_1:refund", -4000, "credit_note:cn_1",
        )
        [application] = session.exec(select(PaymentApplication)).all()
        assert (application.invoice_external_id, application.amount_minor) == ("in_acme_2026_03", -4000)
        assert session.exec(select(Reject)).all() == []


# --- The documented examples load as documented ---------------------------------------------------

FORMATS = Path(__file__).resolve().parents[3] / "docs" / "formats.md"


def _examples(section: str) -> dict[str, str]:
    """The csv and json code blocks of one section of docs/formats.md."""
    text = FORMATS.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return {lang: body for lang, body in re.findall(r"```(csv|json)\n(.*?)```", text, re.S)}


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_the_documented_examples_load_without_a_reject(folder, read, fmt):
    notes, grants = _examples("Credit notes"), _examples("Credit grants")
    folder.write(f"credit_notes.{fmt}", notes[fmt])
    folder.write(f"credit_grants.{fmt}", grants[fmt])
    credit_notes, credit_grants, payments = read("credit_notes"), read("credit_grants"), read("payments")
    assert credit_notes.rejects == credit_grants.rejects == payments.rejects == []
    assert {cn.external_id: cn.total_minor for cn in credit_notes.records}["cn_1"] == 11000
    assert [(g.record.external_id, g.record.amount_minor, [a.invoice_external_id for a in g.children])
            for g in payments.records] == [("cn_1:refund", -4000, ["in_acme_2026_03"])]
    assert {g.external_id: g.price_minor for g in credit_grants.records}["cg_soylent"] == 100000
