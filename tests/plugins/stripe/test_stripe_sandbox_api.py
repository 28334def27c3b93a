"""The Stripe sandbox, driven by the official SDK, its traffic checked against Stripe's contract."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe
from stripe_testkit import DAY, TrafficCheck, basic_fixture, catalog_only

from subledger.core.errors import ConfigError
from subledger.core.sandbox import SandboxClock, SandboxServer
from subledger.plugins.stripe.arithmetic import line_amount
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox
from subledger.plugins.stripe.webhooks import verify_webhook

JAN_1_2026 = 1767225600


def sdk(server: SandboxServer, key: str = DEFAULT_API_KEY) -> Any:
    client = stripe.StripeClient(key, base_addresses={"api": server.url, "meter_events": server.url},
                                 max_network_retries=0, stripe_version="2023-08-16")
    return client.v1


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock(frozen_at=JAN_1_2026)


def test_customers_paginate_newest_first_and_filter_by_created(server: SandboxServer, traffic: TrafficCheck) -> None:
    v1 = sdk(server)
    ids = []
    for n in range(5):
        ids.append(v1.customers.create(params={"name": f"c{n}", "email": f"c{n}@example.com"}).id)
        server.sandbox.clock.advance(10)
    page1 = v1.customers.list(params={"limit": 2})
    page2 = v1.customers.list(params={"limit": 2, "starting_after": page1.data[-1].id})
    page3 = v1.customers.list(params={"limit": 2, "starting_after": page2.data[-1].id})
    assert [c.id for c in page1.data + page2.data + page3.data] == ids[::-1]
    assert (page1.has_more, page2.has_more, page3.has_more) == (True, True, False)
    assert page1.url == "/v1/customers"
    recent = v1.customers.list(params={"created": {"gte": JAN_1_2026 + 20}})
    assert [c.id for c in recent.data] == ids[:1:-1]
    by_email = v1.customers.list(params={"email": "c1@example.com"})
    assert [c.id for c in by_email.data] == [ids[1]]
    assert traffic.assert_valid(server.sandbox) == 10


def test_metadata_merges_and_an_empty_value_unsets_a_key(server: SandboxServer, traffic: TrafficCheck) -> None:
    v1 = sdk(server)
    cus = v1.customers.create(params={"metadata": {"a": "1", "b": "2"}})
    cus = v1.customers.update(cus.id, params={"metadata": {"b": "", "c": "3"}})
    assert cus.metadata.to_dict() == {"a": "1", "c": "3"}
    traffic.assert_valid(server.sandbox)


def test_errors_are_stripe_errors_with_codes_and_params(server: SandboxServer) -> None:
    v1 = sdk(server)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        v1.invoices.create(params={})
    assert (missing.value.http_status, missing.value.code, missing.value.param) == (400, "parameter_missing",
                                                                                   "customer")
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        v1.customers.create(params={"nmae": "typo"})
    assert unknown.value.code == "parameter_unknown" and "nmae" in str(unknown.value)
    with pytest.raises(stripe.InvalidRequestError) as absent:
        v1.customers.retrieve("cus_missing")
    assert (absent.value.http_status, absent.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError, match="between 1 and 100"):
        v1.customers.list(params={"limit": 101})
    with pytest.raises(stripe.AuthenticationError, match="Invalid API Key"):
        sdk(server, "sk_test_wrong_key_0000").customers.list()


def test_idempotency_keys_replay_for_24_hours(server: SandboxServer) -> None:
    v1 = sdk(server)
    first = v1.customers.create(params={"name": "Once"}, options={"idempotency_key": "create-once"})
    again = v1.customers.create(params={"name": "Once"}, options={"idempotency_key": "create-once"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        v1.customers.create(params={"name": "Twice"}, options={"idempotency_key": "create-once"})
    server.sandbox.clock.advance(DAY)
    later = v1.customers.create(params={"name": "Once"}, options={"idempotency_key": "create-once"})
    assert later.id != first.id
    assert len(v1.customers.list().data) == 2


def test_price_tiers_appear_only_when_expanded(server: SandboxServer, traffic: TrafficCheck) -> None:
    v1 = sdk(server)
    product = v1.products.create(params={"name": "API"})
    price = v1.prices.create(params={
        "currency": "usd", "product": product.id, "billing_scheme": "tiered", "tiers_mode": "volume",
        "recurring": {"interval": "month", "usage_type": "metered"},
        "tiers": [{"up_to": 100, "unit_amount": 10},
                  {"up_to": "inf", "unit_amount_decimal": "7.5", "flat_amount": 500}],
    })
    assert "tiers" not in price.to_dict()
    expanded = v1.prices.retrieve(price.id, params={"expand": ["tiers"]})
    assert [t.up_to for t in expanded.tiers] == [100, None]
    listed = v1.prices.list(params={"expand": ["data.tiers", "data.product"]})
    assert listed.data[0].tiers[1].unit_amount_decimal == stripe_decimal("7.5")
    assert listed.data[0].product.name == "API"
    traffic.assert_valid(server.sandbox)


def stripe_decimal(text: str) -> Any:
    from decimal import Decimal

    return Decimal(text)


def test_price_validation_matches_stripe(server: SandboxServer) -> None:
    v1 = sdk(server)
    product = v1.products.create(params={"name": "P"})
    with pytest.raises(stripe.InvalidRequestError, match="last tier"):
        v1.prices.create(params={"currency": "usd", "product": product.id, "billing_scheme": "tiered",
                                 "tiers_mode": "graduated", "tiers": [{"up_to": 10, "unit_amount": 1}]})
    with pytest.raises(stripe.InvalidRequestError, match="cannot be combined with tiers"):
        v1.prices.create(params={"currency": "usd", "product": product.id, "billing_scheme": "tiered",
                                 "tiers_mode": "graduated", "transform_quantity": {"divide_by": 10, "round": "up"},
                                 "tiers": [{"up_to": "inf", "unit_amount": 1}]})
    with pytest.raises(stripe.InvalidRequestError, match="Invalid recurring\\[interval\\]"):
        v1.prices.create(params={"currency": "usd", "product": product.id, "unit_amount": 5,
                                 "recurring": {"interval": "fortnight"}})


def test_subscriptions_bill_each_period_with_metered_usage_from_the_meter(
    server: SandboxServer, traffic: TrafficCheck
) -> None:
    """Seats $20 x 3 in advance; API calls graduated: first 1000 at 0.5c, then free + $1 flat."""
    sb: StripeSandbox = server.sandbox  # type: ignore[assignment]
    sb.seed(catalog_only(basic_fixture(JAN_1_2026)))
    v1 = sdk(server)
    sub = v1.subscriptions.create(params={"customer": "cus_acme", "items": [
        {"price": "price_seat", "quantity": 3}, {"price": "price_api"}]})
    assert (sub.status, sub.current_period_end - sub.current_period_start) == ("active", 31 * DAY)
    v1.billing.meter_events.create(params={"event_name": "api_calls", "identifier": "u1", "timestamp": JAN_1_2026 + 60,
                                           "payload": {"stripe_customer_id": "cus_acme", "value": "1500"}})
    sb.advance(31 * DAY)
    invoices = v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    renewal = invoices[0]
    assert [(ln.description, ln.amount) for ln in renewal.lines.data] == [
        ("3 \u00d7 Seats", 6000), ("1500 \u00d7 API calls", 500 + 100)]
    assert renewal.status == "paid" and renewal.charge and renewal.number.endswith("-0002")
    usage_line = renewal.lines.data[1]
    assert (usage_line.period.start, usage_line.period.end) == (JAN_1_2026, JAN_1_2026 + 31 * DAY)
    traffic.assert_valid(sb)


def test_quantity_change_creates_proration_items(server: SandboxServer, traffic: TrafficCheck) -> None:
    sb: StripeSandbox = server.sandbox  # type: ignore[assignment]
    sb.seed(catalog_only(basic_fixture(JAN_1_2026)))
    v1 = sdk(server)
    sub = v1.subscriptions.create(params={"customer": "cus_acme", "items": [{"price": "price_seat", "quantity": 2}]})
    sb.clock.advance(15.5 * DAY)  # half of a 31-day January: 15.5 of 31 days remain
    item = sub["items"].data[0]
    v1.subscriptions.update(sub.id, params={"items": [{"id": item.id, "quantity": 4}]})
    pending = v1.invoice_items.list(params={"customer": "cus_acme", "pending": True}).data
    assert sorted((ii.amount, ii.proration) for ii in pending) == [(-2000, True), (4000, True)]
    traffic.assert_valid(sb)


def test_invoice_lifecycle_items_finalize_pay_credit_and_refund(server: SandboxServer, traffic: TrafficCheck) -> None:
    v1 = sdk(server)
    cus = v1.customers.create(params={"name": "Initech", "invoice_prefix": "INIT"})
    inv = v1.invoices.create(params={"customer": cus.id, "collection_method": "send_invoice", "days_until_due": 14,
                                     "auto_advance": False, "metadata": {"k": "v"}})
    assert (inv.status, inv.number, inv.total) == ("draft", None, 0)
    v1.invoice_items.create(params={"customer": cus.id, "invoice": inv.id, "amount": 12_345, "currency": "usd",
                                    "description": "Overage", "period": {"start": JAN_1_2026, "end": JAN_1_2026 + DAY}})
    v1.invoice_items.create(params={"customer": cus.id, "invoice": inv.id, "unit_amount_decimal": "0.25",
                                    "quantity": 7, "currency": "usd"})
    inv = v1.invoices.finalize_invoice(inv.id)
    assert (inv.status, inv.number, inv.total, inv.due_date) == ("open", "INIT-0001", 12_347, JAN_1_2026 + 14 * DAY)
    with pytest.raises(stripe.InvalidRequestError, match="draft invoices"):
        v1.invoice_items.create(params={"customer": cus.id, "invoice": inv.id, "amount": 1, "currency": "usd"})
    note = v1.credit_notes.create(params={"invoice": inv.id, "amount": 347, "reason": "order_change"})
    assert (note.type, note.number, v1.invoices.retrieve(inv.id).amount_remaining) == ("pre_payment",
                                                                                       "INIT-0001-CN-01", 12_000)
    paid = v1.invoices.pay(inv.id)
    assert (paid.status, paid.amount_paid) == ("paid", 12_000)
    charge = v1.charges.retrieve(paid.charge)
    assert (charge.invoice, charge.amount, charge.status) == (inv.id, 12_000, "succeeded")
    refund = v1.refunds.create(params={"charge": charge.id, "amount": 2_000})
    assert v1.charges.retrieve(charge.id).amount_refunded == 2_000 and refund.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded"):
        v1.refunds.create(params={"charge": charge.id, "amount": 10_001})
    post = v1.credit_notes.create(params={"invoice": inv.id, "lines": [
        {"type": "invoice_line_item", "invoice_line_item": paid.lines.data[0].id, "amount": 1_000}],
        "refund_amount": 1_000})
    assert (post.type, post.total, post.refund is not None) == ("post_payment", 1_000, True)
    traffic.assert_valid(server.sandbox)


def test_invoices_keep_only_ten_lines_inline(server: SandboxServer, traffic: TrafficCheck) -> None:
    v1 = sdk(server)
    cus = v1.customers.create()
    inv = v1.invoices.create(params={"customer": cus.id, "currency": "eur"})
    for n in range(12):
        v1.invoice_items.create(params={"customer": cus.id, "invoice": inv.id, "amount": n + 1, "currency": "eur"})
    inv = v1.invoices.retrieve(inv.id)
    assert (len(inv.lines.data), inv.lines.has_more, inv.total) == (10, True, 78)
    rest = v1.invoices.line_items.list(inv.id, params={"starting_after": inv.lines.data[-1].id})
    assert [ln.amount for ln in rest.data] == [11, 12]
    traffic.assert_valid(server.sandbox)


def test_meter_events_dedupe_by_identifier_and_summarise_by_day(server: SandboxServer, traffic: TrafficCheck) -> None:
    v1 = sdk(server)
    cus = v1.customers.create()
    meter = v1.billing.meters.create(params={"display_name": "Tokens", "event_name": "tokens",
                                             "default_aggregation": {"formula": "sum"}})
    for ident, offset, value in (("a", -2 * DAY, "10"), ("b", -DAY + 5, "2.5"), ("c", -DAY + 9, "7")):
        v1.billing.meter_events.create(params={"event_name": "tokens", "identifier": ident,
                                               "timestamp": JAN_1_2026 + offset,
                                               "payload": {"stripe_customer_id": cus.id, "value": value}})
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        v1.billing.meter_events.create(params={"event_name": "tokens", "identifier": "a",
                                               "payload": {"stripe_customer_id": cus.id, "value": "1"}})
    with pytest.raises(stripe.InvalidRequestError, match="35 calendar days"):
        v1.billing.meter_events.create(params={"event_name": "tokens", "timestamp": JAN_1_2026 - 36 * DAY,
                                               "payload": {"stripe_customer_id": cus.id, "value": "1"}})
    v1.billing.meter_event_adjustments.create(params={"event_name": "tokens", "type": "cancel",
                                                      "cancel": {"identifier": "c"}})
    daily = v1.billing.meters.event_summaries.list(meter.id, params={
        "customer": cus.id, "start_time": JAN_1_2026 - 3 * DAY, "end_time": JAN_1_2026, "value_grouping_window": "day"})
    assert [(s.start_time, s.aggregated_value) for s in daily.data] == [
        (JAN_1_2026 - DAY, 2.5), (JAN_1_2026 - 2 * DAY, 10)]
    with pytest.raises(stripe.InvalidRequestError, match="day boundaries"):
        v1.billing.meters.event_summaries.list(meter.id, params={
            "customer": cus.id, "start_time": JAN_1_2026 - 60, "end_time": JAN_1_2026, "value_grouping_window": "day"})
    traffic.assert_valid(server.sandbox)


def test_credit_grants_create_expire_and_void(server: SandboxServer, traffic: TrafficCheck) -> None:
    v1 = sdk(server)
    cus = v1.customers.create()
    grant = v1.billing.credit_grants.create(params={
        "customer": cus.id, "category": "promotional", "name": "Welcome", "expires_at": JAN_1_2026 + 30 * DAY,
        "amount": {"type": "monetary", "monetary": {"currency": "usd", "value": 5000}},
        "applicability_config": {"scope": {"price_type": "metered"}}})
    assert (grant.amount.monetary.value, grant.priority, grant.effective_at) == (5000, 50, JAN_1_2026)
    expired = v1.billing.credit_grants.expire(grant.id)
    assert expired.expires_at == JAN_1_2026
    voided = v1.billing.credit_grants.void_grant(grant.id)
    assert voided.voided_at == JAN_1_2026
    assert [g.id for g in v1.billing.credit_grants.list(params={"customer": cus.id}).data] == [grant.id]
    traffic.assert_valid(server.sandbox)


def test_events_list_filters_by_type_and_time(server: SandboxServer, traffic: TrafficCheck) -> None:
    v1 = sdk(server)
    cus = v1.customers.create()
    server.sandbox.clock.advance(100)
    v1.customers.update(cus.id, params={"name": "Renamed"})
    updated = v1.events.list(params={"type": "customer.updated"}).data
    assert [e.data.previous_attributes.to_dict() for e in updated] == [{"name": None}]
    assert updated[0].data.object.name == "Renamed"
    later = v1.events.list(params={"created": {"gte": JAN_1_2026 + 50}, "types": ["customer.created",
                                                                                 "customer.updated"]}).data
    assert [e.type for e in later] == ["customer.updated"]
    assert [e.type for e in v1.events.list(params={"type": "customer.*"}).data] == ["customer.updated",
                                                                                  "customer.created"]
    traffic.assert_valid(server.sandbox)


def test_webhooks_are_delivered_signed_and_verify(server: SandboxServer) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((body, dict(self.headers.items())))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        v1 = sdk(server)
        endpoint = v1.webhook_endpoints.create(params={"url": f"http://127.0.0.1:{httpd.server_address[1]}/hook",
                                                       "enabled_events": ["customer.created"]})
        v1.customers.create(params={"name": "Hooked"})
        v1.products.create(params={"name": "not subscribed"})
        server.sandbox.wait_for_deliveries()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert len(received) == 1
    body, headers = received[0]
    event = verify_webhook(body, headers, [endpoint.secret], now=server.sandbox.clock.time())
    assert (event["type"], event["data"]["object"]["name"]) == ("customer.created", "Hooked")


def test_restricted_keys_are_refused_what_they_lack(clock: SandboxClock) -> None:
    sb = StripeSandbox(clock=clock, restricted_keys={"rk_test_readonly": {"customers": "read"}})
    with SandboxServer(sb) as server:
        v1 = sdk(server, "rk_test_readonly")
        assert v1.customers.list().data == []
        with pytest.raises(stripe.PermissionError, match="customers: write"):
            v1.customers.create()
        with pytest.raises(stripe.PermissionError, match="invoices: read"):
            v1.invoices.list()


def test_injected_rate_limit_reaches_the_sdk_with_its_headers(server: SandboxServer) -> None:
    server.sandbox.faults.inject("rate_limit", retry_after=3, headers={"Stripe-Should-Retry": "true"})
    with pytest.raises(stripe.RateLimitError) as raised:
        sdk(server).customers.list()
    assert raised.value.headers["Retry-After"] == "3"
    assert raised.value.headers["Stripe-Should-Retry"] == "true"


def test_seed_builds_a_billed_history_and_reports_bad_entries(server: SandboxServer, traffic: TrafficCheck) -> None:
    sb: StripeSandbox = server.sandbox  # type: ignore[assignment]
    counts = sb.seed(basic_fixture(JAN_1_2026))
    assert counts["customers"] == 2 and counts["subscriptions"] == 1
    v1 = sdk(server)
    acme = v1.invoices.list(params={"customer": "cus_acme"}).data
    # Created 60 days ago: the creation invoice and one renewal (31-day January, then December 31 days earlier).
    assert [i.billing_reason for i in acme] == ["subscription_cycle", "subscription_create"]
    usage = acme[0].lines.data[1]
    assert (usage.quantity, usage.amount) == (1500, line_amount(sb.store.get("prices", "price_api"),
                                                                stripe_decimal("1500")))
    with pytest.raises(ConfigError, match=r"customers\[0\] was refused: Customer already exists"):
        sb.seed({"customers": [{"id": "cus_acme"}]})
    with pytest.raises(ConfigError, match="unknown kinds: plans"):
        sb.seed({"plans": []})
    traffic.assert_valid(sb)


def test_control_seed_and_clock_over_http(server: SandboxServer) -> None:
    import urllib.request

    def post(path: str, body: Any) -> Any:
        req = urllib.request.Request(f"{server.url}/_sandbox{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    assert post("/seed", {"customers": [{"name": "Via HTTP"}]}) == {"created": {"customers": 1}}
    hook = post("/webhook_endpoints", {"url": "http://127.0.0.1:9/x", "enabled_events": ["*"], "secret": "whsec_t"})
    assert hook["secret"] == "whsec_t"
    assert post("/clock", {"advance": 3600})["time"] == JAN_1_2026 + 3600
    assert time.time() > 0
