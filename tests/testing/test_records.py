"""The kit's record checks, on worked examples."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from subledger.core.connector import UsageEventIn
from subledger.core.model import Customer, Invoice, Payment, record_id
from subledger.testing.records import push_to_far_future, record_problems


def test_far_future_moves_dates_times_and_epochs_and_leaves_the_rest() -> None:
    state = {"updated_at": "2024-03-01T10:00:00+00:00", "day": "2024-03-01", "created": 1709287200,
             "created_ms": 1709287200000, "page": 3, "cursor": "abc", "nested": [{"since": "2024-01-01T00:00:00Z"}]}

    moved, changed = push_to_far_future(state)

    assert changed
    assert moved == {"updated_at": "9999-12-31T10:00:00+00:00", "day": "9999-12-31", "created": 253402300799,
                     "created_ms": 253402300799000, "page": 3, "cursor": "abc",
                     "nested": [{"since": "9999-12-31T00:00:00+00:00"}]}
    assert push_to_far_future({"offset": 40, "token": "abc"}) == ({"offset": 40, "token": "abc"}, False)


def test_a_valid_customer_has_no_problems() -> None:
    customer = Customer(id=record_id("cus", "crm", "42"), system="crm", external_id="42", payload_hash="h",
                        name="Acme", currency="USD")
    assert record_problems(customer, record_type="customer", connection="crm") == []


def test_every_kind_of_problem_is_named() -> None:
    invoice = Invoice(id="inv_random", system="billing", external_id="in_1", payload_hash="",
                      customer_external_id="c", currency="usd!", total_minor=12.5,
                      issued_at=datetime(2024, 1, 1))

    problems = record_problems(invoice, record_type="invoice", connection="stripe")

    assert "total_minor is a float (12.5); money is int minor units, rates and quantities Decimal" in problems
    assert "issued_at is a naive datetime (2024-01-01T00:00:00); attach a timezone (UTC)" in problems
    assert "currency 'usd!' is not an ISO 4217 code" in problems
    assert "system is 'billing'; it must be the connection's name 'stripe'" in problems
    assert any(p.startswith("payload_hash is empty") for p in problems)
    assert any(p.startswith("id 'inv_random' is not deterministic") for p in problems)
    assert any(p.startswith("total_minor: Input should be a valid integer") for p in problems)


def test_a_record_of_the_wrong_type_for_its_stream_is_named() -> None:
    payment = Payment(id="p", system="s", external_id="e", customer_external_id="c", currency="USD",
                      amount_minor=1, received_at=datetime(2024, 1, 1, tzinfo=UTC))
    assert record_problems(payment, record_type="invoice", connection="s") == [
        "Payment in a 'invoice' stream; expected Invoice, InvoiceLine"
    ]


def test_usage_events_need_a_decimal_quantity_and_an_aware_time() -> None:
    event = UsageEventIn("e1", "c1", "api_calls", 3, datetime(2024, 1, 1), {"n": Decimal("1")}, "h")

    assert record_problems(event, record_type="usage_event", connection="s") == [
        "quantity must be a Decimal, not int (3)",
        "occurred_at is a naive datetime (2024-01-01T00:00:00); attach a timezone (UTC)",
        "properties is not JSON-safe (Object of type Decimal is not JSON serializable); "
        "write decimals as strings, times as ISO text",
    ]
