"""Reading a Stripe account into the canonical model: mapping, incremental reads, traffic.

The account (``basic_fixture``): Acme pays $20/month for 3 seats plus API calls metered
on graduated tiers (first 1000 calls at half a cent, then free with a $1 flat fee), billed
since 60 days ago; Globex has a $50 onboarding invoice with a $5 credit note; Acme holds a
$100 prepaid credit grant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import stripe
from stripe_testkit import DAY, TrafficCheck, basic_fixture, catalog_only

from subledger.core.connector import Checkpoint, RecordGroup, Rejected, UsageCoverage, UsageEventIn
from subledger.core.model import Contract, Customer, Invoice, Payment
from subledger.core.sandbox import SandboxServer
from subledger.core.store.coverage import merge_windows
from subledger.core.terms import load_terms
from subledger.plugins.stripe import mapping
from subledger.plugins.stripe.connector import StripeConnector
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox


@pytest.fixture
def now(sandbox: StripeSandbox) -> int:
    moment = int(time.time())
    sandbox.seed(basic_fixture(moment))
    return moment


@pytest.fixture
def v1(server: SandboxServer) -> Any:
    return stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": server.url}, max_network_retries=0,
                               stripe_version="2023-08-16").v1


def records(items: list[Any]) -> list[Any]:
    return [i for i in items if not isinstance(i, Checkpoint | Rejected | UsageCoverage)]


def windows(items: list[Any]) -> list[tuple[date, date, str | None]]:
    """The UsageCoverage a read yielded, as (first day, end day exclusive, meter)."""
    return [(w.start.date(), w.end.date(), w.meter) for w in items if isinstance(w, UsageCoverage)]


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def read(connector: StripeConnector, stream: str, state: dict[str, Any] | None = None
         ) -> tuple[list[Any], dict[str, Any]]:
    items = list(connector.read(stream, state))
    assert isinstance(items[-1], Checkpoint), f"{stream} must end on a checkpoint"
    return items, items[-1].state


def days_ago(n: int) -> date:
    return datetime.now(UTC).date() - timedelta(days=n)


def test_customers_map_with_their_link_and_domain(now: int, connect: Callable[..., StripeConnector]) -> None:
    items, _ = read(connect(), "customers")
    by_id = {c.external_id: c for c in records(items)}
    acme = by_id["cus_acme"]
    assert isinstance(acme, Customer)
    assert (acme.name, acme.email_domain, acme.country, acme.currency, acme.canonical_hint) == (
        "Acme Corp", "acme.example", "US", "USD", "acme")
    assert (acme.system, by_id["cus_globex"].canonical_hint) == ("stripe", None)


def test_subscription_maps_to_exact_contract_terms(now: int, connect: Callable[..., StripeConnector]) -> None:
    items, _ = read(connect(), "contracts")
    [contract] = records(items)
    assert isinstance(contract, Contract)
    started = datetime.fromtimestamp(now - 60 * DAY, UTC)
    assert (contract.external_id, contract.customer_external_id, contract.status, contract.start_date) == (
        "sub_acme", "cus_acme", "active", started.date())
    terms = load_terms(contract.terms)
    seats, calls = terms.components
    assert (seats.type, seats.amount, seats.quantity) == ("flat_fee", Decimal("20.00"), Decimal(3))
    assert (calls.meter, calls.aggregation, calls.price.model) == ("api_calls", "sum", "graduated")
    assert [(t.up_to, t.unit_price, t.flat_fee) for t in calls.price.tiers] == [
        (Decimal(1000), Decimal("0.005"), Decimal(0)), (None, Decimal(0), Decimal("1.00"))]
    assert (terms.billing.interval, terms.billing.anchor_day) == ("month", started.day)
    assert contract.terms["metadata"]["stripe_subscription"] == "sub_acme"


def test_invoices_carry_every_line_with_service_period(now: int, connect: Callable[..., StripeConnector]) -> None:
    items, _ = read(connect(page_size=2), "invoices")
    groups = {g.record.external_id: g for g in records(items) if isinstance(g, RecordGroup)}
    onboarding = groups["in_globex_onboarding"]
    assert isinstance(onboarding.record, Invoice)
    assert (onboarding.record.status, onboarding.record.total_minor, onboarding.record.amount_due_minor) == (
        "open", 5000, 4500)  # $5 credited before payment
    renewal = next(g for g in groups.values() if g.record.attributes.get("billing_reason") == "subscription_cycle")
    seats, usage = renewal.children
    assert (seats.kind, seats.amount_minor, seats.quantity, seats.unit_price) == ("recurring", 6000, 3,
                                                                                 Decimal("20.00"))
    assert (usage.kind, usage.meter, usage.quantity, usage.amount_minor) == ("usage", "api_calls", 1500, 600)
    period_start = datetime.fromtimestamp(now - 60 * DAY, UTC)
    assert usage.service_start == period_start.date()
    assert usage.evidence == [{"system": "stripe", "object": "invoice_line", "id": usage.line_key,
                               "invoice": renewal.record.external_id}]
    assert renewal.record.contract_external_id == "sub_acme" and renewal.record.status == "paid"


def test_payments_apply_to_invoices_and_refunds_are_negative(
    now: int, connect: Callable[..., StripeConnector], v1: Any
) -> None:
    paid = v1.invoices.list(params={"customer": "cus_acme", "status": "paid"}).data[0]
    v1.refunds.create(params={"charge": paid.charge, "amount": 1000})
    items, _ = read(connect(), "payments")
    groups = [g for g in records(items) if isinstance(g, RecordGroup)]
    refund = next(g for g in groups if g.record.method == "refund")
    charge = next(g for g in groups if g.record.external_id == paid.charge)
    assert isinstance(charge.record, Payment)
    assert (charge.record.amount_minor, charge.children[0].invoice_external_id) == (paid.amount_paid, paid.id)
    assert (refund.record.amount_minor, refund.record.customer_external_id) == (-1000, "cus_acme")
    assert (refund.children[0].invoice_external_id, refund.children[0].amount_minor) == (paid.id, -1000)


def test_credit_notes_grants_and_meters(now: int, connect: Callable[..., StripeConnector]) -> None:
    connector = connect()
    [note] = records(read(connector, "credit_notes")[0])
    assert (note.invoice_external_id, note.total_minor, note.reason) == ("in_globex_onboarding", 500, "order_change")
    [group] = records(read(connector, "credit_grants")[0])
    grant = group.record
    assert (grant.amount_minor, grant.currency, grant.category, grant.cost_basis, grant.priority) == (
        10000, "USD", "paid", Decimal(1), 50)
    [meter] = records(read(connector, "meters")[0])
    assert (meter.key, meter.name, meter.aggregation) == ("api_calls", "API calls", "sum")


def test_usage_reads_closed_days_and_corrects_late_events(
    now: int, connect: Callable[..., StripeConnector], v1: Any
) -> None:
    connector = connect(usage_start=days_ago(60))
    items, state = read(connector, "usage")
    usage = {u.event_id: u for u in records(items)}
    assert {(u.occurred_at.date(), u.quantity) for u in usage.values()} == {
        (datetime.fromtimestamp(now - 40 * DAY, UTC).date(), Decimal(1500)),
        (datetime.fromtimestamp(now - 3 * DAY, UTC).date(), Decimal(300)),
    }
    assert all(isinstance(u, UsageEventIn) and u.meter == "api_calls" for u in usage.values())
    yesterday = int(datetime.combine(days_ago(1), datetime.min.time(), UTC).timestamp())
    v1.billing.meter_events.create(params={"event_name": "api_calls", "timestamp": yesterday + 60,
                                           "payload": {"stripe_customer_id": "cus_acme", "value": "100"}})
    items, state = read(connector, "usage", state)
    [first] = records(items)
    assert (first.event_id, first.quantity) == (f"mtr_api:cus_acme:{days_ago(1)}", Decimal(100))
    v1.billing.meter_events.create(params={"event_name": "api_calls", "timestamp": yesterday + 120,
                                           "payload": {"stripe_customer_id": "cus_acme", "value": "25"}})
    items, state = read(connector, "usage", state)
    [correction] = records(items)
    assert (correction.event_id, correction.quantity) == (f"mtr_api:cus_acme:{days_ago(1)}+125", Decimal(25))
    assert correction.properties["correction_of"] == first.event_id
    assert records(read(connector, "usage", state)[0]) == []


def test_usage_reports_each_meter_window_before_its_checkpoint_and_the_windows_join(
    now: int, connect: Callable[..., StripeConnector], v1: Any
) -> None:
    """First read: days [today-60, today) of api_calls for every customer, vouched for right
    before the checkpoint that records them. Later reads re-check the 2-day lookback, so
    their windows [today-2, today) overlap and the union stays one window."""
    v1.billing.meters.create(params={"display_name": "Storage", "event_name": "storage_gb",
                                     "default_aggregation": {"formula": "last"}})  # no usage at all
    connector = connect(usage_start=days_ago(60))
    items, state = read(connector, "usage")
    api, storage = sorted(windows(items), key=lambda w: w[2] or "")
    assert api == (days_ago(60), days_ago(0), "api_calls") and storage == (days_ago(60), days_ago(0), "storage_gb")
    for n, item in enumerate(items):
        if isinstance(item, UsageCoverage):  # aware UTC midnights, committed with the meter's checkpoint
            assert item.start.tzinfo is UTC and item.start.hour == 0 and isinstance(items[n + 1], Checkpoint)
    assert sum(u.quantity for u in records(items)) == Decimal(1800)  # 1,500 forty days ago + 300 three days ago

    items, state = read(connector, "usage", state)
    assert sorted(windows(items), key=lambda w: w[2] or "") == [(days_ago(2), days_ago(0), "api_calls"),
                                                                 (days_ago(2), days_ago(0), "storage_gb")]
    assert merge_windows([(midnight(days_ago(60)), midnight(days_ago(0))),
                          (midnight(days_ago(2)), midnight(days_ago(0)))]) == [
        (midnight(days_ago(60)), midnight(days_ago(0)))]

    nothing_left = connect(usage_start=days_ago(60), usage_lookback_days=0)
    assert windows(read(nothing_left, "usage", state)[0]) == []  # today is not closed: no day to read, no window


def test_usage_starts_where_the_contract_history_starts(
    sandbox: StripeSandbox, connect: Callable[..., StripeConnector], v1: Any, traffic: TrafficCheck
) -> None:
    """No usage_start: the first read starts at the earliest start_date of any subscription,
    a cancelled one included. Globex's subscription started 100 days ago and was cancelled;
    Acme's started 60 days ago. So usage is read from 100 days back, and the 1,500 calls of
    40 days ago (outside the old 35-day default) are read."""
    moment = int(time.time())
    fixture = basic_fixture(moment)
    fixture["subscriptions"].append({"id": "sub_globex_old", "customer": "cus_globex", "created": moment - 100 * DAY,
                                     "items": [{"price": "price_seat", "quantity": 1}]})
    sandbox.seed(fixture)
    v1.subscriptions.cancel("sub_globex_old")
    sandbox.exchanges.clear()

    items, _ = read(connect(), "usage")

    first_day = datetime.fromtimestamp(moment - 100 * DAY, UTC).date()
    assert windows(items) == [(first_day, days_ago(0), "api_calls")]
    assert sorted(u.quantity for u in records(items)) == [Decimal(300), Decimal(1500)]
    listed = [e.request for e in sandbox.exchanges if e.request.path == "/v1/subscriptions"]
    assert listed and all(r.query.get("status") == "all" for r in listed)
    traffic.assert_valid(sandbox)


def test_usage_without_subscriptions_starts_35_days_back_and_usage_start_overrides(
    sandbox: StripeSandbox, connect: Callable[..., StripeConnector]
) -> None:
    moment = int(time.time())
    fixture = basic_fixture(moment)
    sandbox.seed({**catalog_only(fixture), "meter_events": fixture["meter_events"]})  # no subscription at all

    items, _ = read(connect(), "usage")
    assert windows(items) == [(days_ago(35), days_ago(0), "api_calls")]
    assert [u.quantity for u in records(items)] == [Decimal(300)]  # the event 40 days ago is before the window

    items, _ = read(connect(usage_start=days_ago(45)), "usage")
    assert windows(items) == [(days_ago(45), days_ago(0), "api_calls")]
    assert sorted(u.quantity for u in records(items)) == [Decimal(300), Decimal(1500)]


def test_incremental_reads_catch_updates_not_just_creations(
    now: int, connect: Callable[..., StripeConnector], v1: Any
) -> None:
    connector = connect()
    _, customers = read(connector, "customers")
    _, invoices = read(connector, "invoices")
    assert records(read(connector, "customers", customers)[0]) == []
    v1.customers.update("cus_globex", params={"name": "Globex International"})
    v1.invoices.pay("in_globex_onboarding", params={"paid_out_of_band": True})
    items, customers = read(connector, "customers", customers)
    assert [(c.external_id, c.name) for c in records(items)] == [("cus_globex", "Globex International")]
    items, invoices = read(connector, "invoices", invoices)
    assert [(g.record.external_id, g.record.status) for g in records(items)] == [("in_globex_onboarding", "paid")]
    assert records(read(connector, "customers", customers)[0]) == []


def test_an_item_added_to_a_draft_rereads_its_invoice(now: int, connect: Callable[..., StripeConnector],
                                                       v1: Any) -> None:
    connector = connect()
    draft = v1.invoices.create(params={"customer": "cus_globex"})
    _, state = read(connector, "invoices")
    v1.invoice_items.create(params={"customer": "cus_globex", "invoice": draft.id, "amount": 250, "currency": "usd"})
    items, _ = read(connector, "invoices", state)
    [group] = records(items)
    assert (group.record.external_id, group.record.total_minor, len(group.children)) == (draft.id, 250, 1)


def test_deletions_arrive_as_deleted_records(now: int, connect: Callable[..., StripeConnector], v1: Any) -> None:
    connector = connect()
    _, state = read(connector, "customers")
    v1.customers.delete("cus_globex")
    items, _ = read(connector, "customers", state)
    [gone] = records(items)
    assert (gone.external_id, gone.attributes["deleted"]) == ("cus_globex", True)


def test_the_lookback_window_catches_an_event_that_surfaced_late(
    now: int, connect: Callable[..., StripeConnector], sandbox: StripeSandbox
) -> None:
    for lookback, expected in ((600, ["Late Corp"]), (0, [])):
        connector = connect(lookback_seconds=lookback)
        _, state = read(connector, "customers")
        with sandbox.store.lock:
            globex = sandbox.store.get("customers", "cus_globex")
            assert globex is not None
            globex["name"] = "Late Corp"
            # Created 30 s before the cursor, but only listable now (Stripe's events are eventually consistent).
            sandbox.emit("customer.updated", "customers", globex, {"name": "Globex"}, created=state["since"] - 30)
        items, _ = read(connector, "customers", state)
        assert [c.name for c in records(items)] == expected


def test_a_cursor_older_than_event_retention_starts_over(now: int, connect: Callable[..., StripeConnector]) -> None:
    connector = connect(events_retention_days=29)
    _, state = read(connector, "customers")
    stale = {**state, "read_at": (datetime.now(UTC) - timedelta(days=30)).isoformat()}
    items, fresh = read(connector, "customers", stale)
    assert sorted(c.external_id for c in records(items)) == ["cus_acme", "cus_globex"]
    assert fresh["read_at"] > state["read_at"]


def test_a_full_read_resumes_from_its_page_checkpoint(now: int, connect: Callable[..., StripeConnector],
                                                      v1: Any) -> None:
    for n in range(3):
        v1.customers.create(params={"name": f"extra {n}"})
    connector = connect(page_size=2)
    items, _ = read(connector, "customers")
    everyone = [c.external_id for c in records(items)]
    first_page = items.index(next(i for i in items if isinstance(i, Checkpoint)))
    assert items[first_page].state["backfill"]["after"] == everyone[1]
    resumed = records(read(connector, "customers", items[first_page].state)[0])
    assert [c.external_id for c in resumed] == everyone[2:]


def test_state_stays_small(now: int, connect: Callable[..., StripeConnector], v1: Any) -> None:
    connector = connect()
    _, state = read(connector, "invoices")
    for n in range(30):
        v1.invoice_items.create(params={"customer": "cus_globex", "amount": n + 1, "currency": "usd"})
    _, state = read(connector, "invoices", state)
    assert set(state) == {"since", "seen", "read_at"}
    assert len(state["seen"]) <= 31  # only the lookback window's events


def test_every_request_the_connector_sends_and_every_answer_follow_stripe_contract(
    now: int, connect: Callable[..., StripeConnector], sandbox: StripeSandbox, traffic: TrafficCheck
) -> None:
    connector = connect(page_size=2, usage_start=days_ago(60))
    sandbox.exchanges.clear()
    states = {}
    for spec in connector.streams():
        _, states[spec.name] = read(connector, spec.name)
    for spec in connector.streams():
        read(connector, spec.name, states[spec.name])
    assert traffic.assert_valid(sandbox) > 40


def test_unmappable_objects_are_rejected_with_the_fix(now: int, connect: Callable[..., StripeConnector],
                                                     sandbox: StripeSandbox) -> None:
    with sandbox.store.lock:
        sandbox.store.get("meters", "mtr_api")["default_aggregation"]["formula"] = "median"  # type: ignore[index]
    items, _ = read(connect(), "meters")
    [rejected] = [i for i in items if isinstance(i, Rejected)]
    assert "median" in rejected.reason and rejected.location == "stripe:billing.meter/mtr_api"
    assert rejected.fix


def test_newer_api_shapes_map_too(stripe_examples_2026: dict[str, Any]) -> None:
    """An account-level version change must not break the mapping: Stripe's 2026 example objects."""
    invoice = stripe_examples_2026["invoice"]
    record, lines = mapping.invoice(invoice, invoice["lines"]["data"], "stripe")
    assert record.contract_external_id == "subscription"  # from parent.subscription_details
    assert (lines[0].proration, lines[0].amount_minor) == (True, 1000)  # from parent.*.proration
    grant = mapping.credit_grant(stripe_examples_2026["billing.credit_grant"] | {"amount": {
        "type": "monetary", "monetary": {"currency": "eur", "value": 2500}}}, "stripe")
    assert (grant.customer_external_id, grant.amount_minor, grant.currency) == ("obj_123", 2500, "EUR")
    meter = mapping.meter(stripe_examples_2026["billing.meter"], "stripe")
    assert (meter.key, meter.aggregation) == ("test-meter-event-name", "sum")


def test_stripe_hundredths_of_isk_become_whole_kronur() -> None:
    assert mapping.minor(123400, "isk") == 1234
    with pytest.raises(mapping.UnmappableError, match="not a whole ISO minor unit"):
        mapping.minor(123456, "ISK")
    assert mapping.minor(500, "jpy") == 500 and mapping.minor(1500, "kwd") == 1500


def test_a_resumed_full_read_whose_page_cursor_was_deleted_lists_again(
    now: int, connect: Callable[..., StripeConnector], v1: Any
) -> None:
    v1.customers.create(params={"name": "third"})
    connector = connect(page_size=1)
    items, _ = read(connector, "customers")
    checkpoint = next(i for i in items if isinstance(i, Checkpoint))
    v1.customers.delete(checkpoint.state["backfill"]["after"])
    resumed = records(read(connector, "customers", checkpoint.state)[0])
    assert len(resumed) == 2  # the two customers left, listed from the top
