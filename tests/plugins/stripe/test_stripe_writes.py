"""Writing to Stripe exactly once: idempotency keys, find-before-create, dropped connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import stripe
from stripe_testkit import DAY, TrafficCheck, basic_fixture

from subledger.core.connector import RecordGroup, WriteAction, WriteConflict
from subledger.core.errors import ConfigError, SystemFailure, TransientError
from subledger.core.sandbox import SandboxServer
from subledger.plugins.stripe.client import StripeApi
from subledger.plugins.stripe.config import StripeConfig
from subledger.plugins.stripe.connector import StripeConnector
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox
from subledger.testing import FakeClock

OVERAGE = WriteAction("create_invoice", "unbilled-overage:acme:2026-01", {
    "customer_external_id": "cus_acme", "currency": "USD", "description": "January API overage",
    "lines": [
        {"description": "API calls over the included 1,000,000", "amount_minor": 12_500, "quantity": "250000",
         "service_start": "2026-01-01", "service_end": "2026-01-31", "component": "api_calls", "kind": "usage"},
        {"description": "Storage over 100 GB", "amount_minor": 2_000, "service_start": "2026-01-01",
         "service_end": "2026-01-31", "kind": "usage"},
    ],
})


@pytest.fixture(autouse=True)
def seeded(sandbox: StripeSandbox) -> None:
    sandbox.seed(basic_fixture(int(time.time())))


@pytest.fixture
def v1(server: SandboxServer) -> Any:
    return stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": server.url}, max_network_retries=0,
                               stripe_version="2023-08-16").v1


def overage_invoices(v1: Any) -> list[Any]:
    return [i for i in v1.invoices.list(params={"customer": "cus_acme", "limit": 100}).data
            if i.metadata.to_dict().get("subledger_action_id") == OVERAGE.idempotency_key]


def test_create_invoice_makes_a_draft_with_its_lines_and_marks(
    connect: Callable[..., StripeConnector], v1: Any, traffic: TrafficCheck, sandbox: StripeSandbox
) -> None:
    result = connect().write(OVERAGE)
    assert result.created and result.external_id.startswith("in_")
    [invoice] = overage_invoices(v1)
    assert (invoice.id, invoice.status, invoice.total, invoice.auto_advance) == (result.external_id, "draft",
                                                                                 14_500, False)
    assert (invoice.collection_method, invoice.metadata["subledger_action_id"]) == ("send_invoice",
                                                                                    OVERAGE.idempotency_key)
    first, _ = invoice.lines.data
    assert first.description == "API calls over the included 1,000,000 (250000 units)"
    jan_1, feb_1 = (int(datetime(2026, m, 1, tzinfo=UTC).timestamp()) for m in (1, 2))
    assert (first.period.start, first.period.end, first.amount) == (jan_1, feb_1, 12_500)
    assert first.metadata.to_dict() == {"subledger_action_id": OVERAGE.idempotency_key, "subledger_line": "0",
                                        "subledger_component": "api_calls", "subledger_kind": "usage",
                                        "subledger_quantity": "250000"}
    assert result.record["id"] == invoice.id
    traffic.assert_valid(sandbox)


def test_a_correction_carries_its_contract_component_period_and_quantity_back_into_the_read(
    connect: Callable[..., StripeConnector], v1: Any, traffic: TrafficCheck, sandbox: StripeSandbox
) -> None:
    """A stale-rate correction for Salesforce contract 800Kc00000ACME01: 39,510 API calls
    (the quantity difference) for $79.02 in March 2026. Stripe keeps the contract on the
    invoice and the line's terms on its invoice item; the invoices stream reads them back."""
    correction = WriteAction("create_invoice", "unbilled_usage:acme:api_calls:2026-03", {
        "customer_external_id": "cus_acme", "currency": "USD", "contract_external_id": "800Kc00000ACME01",
        "metadata": {"subledger_finding": "fnd_stale_rate"},
        "lines": [{"line_key": "1", "kind": "usage", "description": "usage:api_calls 2026-03 (correction)",
                   "component": "api_calls", "meter": "api_calls", "quantity": "39510", "amount_minor": 7902,
                   "currency": "USD", "service_start": "2026-03-01", "service_end": "2026-03-31"}],
    })
    connector = connect()
    written = connector.write(correction)
    assert v1.invoices.retrieve(written.external_id).metadata.to_dict() == {
        "subledger_finding": "fnd_stale_rate", "subledger_action_id": correction.idempotency_key,
        "subledger_contract": "800Kc00000ACME01"}

    groups = {g.record.external_id: g for g in connector.read("invoices", None) if isinstance(g, RecordGroup)}
    invoice, [line] = groups[written.external_id].record, groups[written.external_id].children
    assert (invoice.contract_external_id, invoice.total_minor, invoice.period_start, invoice.period_end) == (
        "800Kc00000ACME01", 7902, date(2026, 3, 1), date(2026, 3, 31))
    assert (line.component, line.meter, line.kind, line.quantity, line.amount_minor) == (
        "api_calls", "api_calls", "usage", Decimal("39510"), 7902)
    assert line.unit_price == Decimal("0.002")  # $79.02 / 39,510 calls, not $79.02 for "1"
    assert (line.service_start, line.service_end) == (date(2026, 3, 1), date(2026, 3, 31))

    # Without a contract the invoice names none (it has no subscription either); the
    # subscription's own invoices keep theirs.
    plain = connector.write(OVERAGE)
    groups = {g.record.external_id: g for g in connector.read("invoices", None) if isinstance(g, RecordGroup)}
    assert groups[plain.external_id].record.contract_external_id is None
    assert "sub_acme" in {g.record.contract_external_id for g in groups.values()}
    fee = groups[plain.external_id].children[1]  # no component, meter or quantity given: none invented
    assert (fee.component, fee.meter, fee.kind, fee.quantity) == (None, None, "usage", 1)
    traffic.assert_valid(sandbox)


def test_find_before_create_and_replay_create_nothing_new(connect: Callable[..., StripeConnector], v1: Any) -> None:
    connector = connect()
    assert connector.find(OVERAGE) is None
    first = connector.write(OVERAGE)
    fresh = connect()  # as after a restart
    found = fresh.find(OVERAGE)
    assert found is not None and (found.external_id, found.created) == (first.external_id, False)
    replay = fresh.write(OVERAGE)
    assert (replay.external_id, replay.created) == (first.external_id, False)
    assert len(overage_invoices(v1)) == 1 and overage_invoices(v1)[0].total == 14_500


def test_finalize_when_configured(connect: Callable[..., StripeConnector], v1: Any) -> None:
    result = connect(finalize_invoices=True, collection_method="charge_automatically").write(OVERAGE)
    invoice = v1.invoices.retrieve(result.external_id)
    assert (invoice.status, invoice.number is not None, invoice.collection_method) == ("open", True,
                                                                                      "charge_automatically")


@pytest.mark.parametrize("path", ["/v1/invoices", "/v1/invoiceitems", "/v1/invoices/*/finalize"])
def test_a_connection_dropped_after_the_write_still_makes_one_invoice(
    path: str, connect: Callable[..., StripeConnector], sandbox: StripeSandbox, v1: Any, fake_clock: FakeClock
) -> None:
    """Stripe committed, the answer was lost: the retry replays the key and nothing doubles."""
    sandbox.faults.inject("drop", method="POST", path=path)
    result = connect(finalize_invoices=True).write(OVERAGE)
    [invoice] = overage_invoices(v1)
    assert (invoice.id, invoice.status, invoice.total) == (result.external_id, "open", 14_500)
    assert len(invoice.lines.data) == 2
    assert len(fake_clock.sleeps) == 1  # one backoff, then the replayed answer
    replayed = [e for e in sandbox.exchanges if e.replayed]
    assert len(replayed) == 1 and replayed[0].request.headers["idempotency-key"].startswith(OVERAGE.idempotency_key)


def test_a_timeout_after_the_write_still_makes_one_invoice(
    connect: Callable[..., StripeConnector], sandbox: StripeSandbox, v1: Any, fake_clock: FakeClock
) -> None:
    sandbox.faults.inject("timeout", method="POST", path="/v1/invoices", phase="after", seconds=5)
    connect(timeout_seconds=0.3).write(OVERAGE)
    assert len(overage_invoices(v1)) == 1


def test_after_the_key_expired_find_before_create_completes_the_first_attempt(
    connect: Callable[..., StripeConnector], sandbox: StripeSandbox, v1: Any, fake_clock: FakeClock
) -> None:
    """The first attempt made the invoice and lost every answer for its first line; a day
    later (Stripe has forgotten the keys) the retry finds the invoice by its metadata."""
    sandbox.faults.inject("drop", method="POST", path="/v1/invoiceitems", times=5)
    with pytest.raises(TransientError, match="gave up after 5 attempts"):
        connect().write(OVERAGE)
    assert connect().find(OVERAGE) is None  # incomplete: not reported as done
    sandbox.clock.advance(DAY + 60)
    result = connect().write(OVERAGE)
    [invoice] = overage_invoices(v1)
    assert (result.external_id, result.created, invoice.total) == (invoice.id, False, 14_500)
    assert [ln.metadata["subledger_line"] for ln in invoice.lines.data] == ["0", "1"]


def test_an_invalid_invoice_action_names_the_fix(connect: Callable[..., StripeConnector]) -> None:
    bad = WriteAction("create_invoice", "bad", {**OVERAGE.payload, "customer_external_id": "acme"})
    with pytest.raises(ConfigError, match="not a Stripe customer id"):
        connect().write(bad)
    fractional = WriteAction("create_invoice", "bad2", {**OVERAGE.payload, "lines": [{"amount_minor": 1.5}]})
    with pytest.raises(ConfigError, match="integer minor units"):
        connect().write(fractional)


LINK = WriteAction("update_customer_metadata", "link:globex", {"metadata": {"subledger_id": "globex"}},
                   target_external_id="cus_globex", base_version={"metadata": {"subledger_id": None}})


def test_customer_links_are_written_once_and_conflicts_are_refused(
    connect: Callable[..., StripeConnector], v1: Any, traffic: TrafficCheck, sandbox: StripeSandbox
) -> None:
    connector = connect()
    first = connector.write(LINK)
    assert (first.external_id, first.created) == ("cus_globex", True)
    assert v1.customers.retrieve("cus_globex").metadata["subledger_id"] == "globex"
    assert connector.write(LINK).created is False
    assert connector.find(LINK) is not None
    v1.customers.update("cus_acme", params={"metadata": {"subledger_id": "acme-by-hand"}})
    stale = WriteAction("update_customer_metadata", "link:acme", {"metadata": {"subledger_id": "acme-2"}},
                        target_external_id="cus_acme", base_version={"metadata": {"subledger_id": "acme"}})
    with pytest.raises(WriteConflict, match="expected 'acme', found 'acme-by-hand'"):
        connector.write(stale)
    assert v1.customers.retrieve("cus_acme").metadata["subledger_id"] == "acme-by-hand"
    assert connector.find(stale) is None
    traffic.assert_valid(sandbox)


def usage_action(key: str, *identifiers: str, quantity: str = "40") -> WriteAction:
    moment = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    return WriteAction("push_meter_events", key, {"events": [
        {"identifier": ident, "meter": "api_calls", "customer_external_id": "cus_globex", "quantity": quantity,
         "occurred_at": (moment + timedelta(minutes=n)).isoformat()} for n, ident in enumerate(identifiers)]})


def test_meter_events_are_pushed_once_per_identifier(
    connect: Callable[..., StripeConnector], sandbox: StripeSandbox, traffic: TrafficCheck
) -> None:
    connector = connect()
    action = usage_action("usage:globex:1", "u-1", "u-2")
    assert connector.find(action) is None
    assert connector.write(action).created
    assert connector.find(action) is None  # nothing can prove a push landed: it is recovered by re-sending
    assert connector.write(action).created is False  # replayed by the idempotency key
    again = usage_action("usage:globex:other-key", "u-1")  # same identifier, another action
    assert connector.write(again).created is False  # Stripe refuses the repeated identifier
    assert len(sandbox.store.collection("meter_events")) == 2 + 2  # two seeded, two pushed
    traffic.assert_valid(sandbox)


def test_meter_events_for_an_unknown_meter_fail_with_the_fix(connect: Callable[..., StripeConnector]) -> None:
    action = WriteAction("push_meter_events", "u", {"events": [{
        "identifier": "x", "meter": "nope", "customer_external_id": "cus_acme", "quantity": "1",
        "occurred_at": datetime.now(UTC).isoformat()}]})
    with pytest.raises(ConfigError, match="no active Stripe billing meter"):
        connect().write(action)


# -- limits ------------------------------------------------------------------------------------


def test_429_waits_the_retry_after_stripe_asked_for(
    connect: Callable[..., StripeConnector], sandbox: StripeSandbox, fake_clock: FakeClock
) -> None:
    sandbox.faults.inject("rate_limit", retry_after=7, times=2)
    assert connect().check().ok
    assert fake_clock.sleeps == [7.0, 7.0]


def test_stripe_should_retry_false_is_never_retried(
    connect: Callable[..., StripeConnector], sandbox: StripeSandbox, fake_clock: FakeClock
) -> None:
    sandbox.faults.inject("server_error", status=500, headers={"Stripe-Should-Retry": "false"})
    with pytest.raises(SystemFailure, match="HTTP 500"):
        connect().api.call("list customers", lambda: connect().api.v1.customers.list())
    assert fake_clock.sleeps == []


def test_stripe_should_retry_true_retries_even_a_conflict(
    connect: Callable[..., StripeConnector], sandbox: StripeSandbox, fake_clock: FakeClock
) -> None:
    sandbox.faults.inject("server_error", status=409, headers={"Stripe-Should-Retry": "true"})
    assert connect().check().ok
    assert len(fake_clock.sleeps) == 1


def test_bad_credentials_and_permissions_fail_check_with_the_fix(server: SandboxServer, sandbox: StripeSandbox
                                                                ) -> None:
    sandbox.restricted_keys["rk_test_invoices_only"] = {"invoices": "read"}
    for key, words in (("sk_test_nope_00000000", "api_key"), ("rk_test_invoices_only", "restricted key")):
        connector = StripeConnector(StripeConfig(api_key=key, api_base=server.url))
        result = connector.check()
        assert not result.ok and words in result.message and key not in result.message


def test_concurrency_per_account_is_bounded(server: SandboxServer) -> None:
    config = StripeConfig(api_key=DEFAULT_API_KEY, api_base=server.url, max_concurrency=2, account="acct_limit_test")
    apis = [StripeApi(config, name=f"c{n}") for n in range(2)]  # two connector instances, one account
    active = peak = 0
    lock = threading.Lock()

    def slow() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    threads = [threading.Thread(target=apis[n % 2].call, args=("slow", slow)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_an_invoice_voided_by_hand_is_not_created_again(connect: Callable[..., StripeConnector], v1: Any) -> None:
    first = connect(finalize_invoices=True).write(OVERAGE)
    v1.invoices.void_invoice(first.external_id)
    again = connect(finalize_invoices=True).write(OVERAGE)
    assert (again.external_id, again.created) == (first.external_id, False)
    assert [i.status for i in overage_invoices(v1)] == ["void"]
