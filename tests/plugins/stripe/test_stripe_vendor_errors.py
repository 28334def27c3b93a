"""Stripe against its sandbox: a gateway's error bodies on writes, and a second action for the same finding.

The spec-mock tests (``test_stripe_contract_mock.py``) show reads against a mock built from
Stripe's published spec; these use the Stripe sandbox with injected faults
(``subledger.core.sandbox.faults``) because they need state: a write that committed before
the gateway's error, and invoices an earlier action made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe
from stripe_testkit import basic_fixture

from subledger.core.connector import WriteAction
from subledger.core.errors import TransientError
from subledger.core.sandbox import SandboxServer
from subledger.core.sandbox.faults import FOREIGN_BODIES
from subledger.plugins.stripe.connector import StripeConnector
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox
from subledger.testing import FakeClock

Connect = Callable[..., StripeConnector]
LINES = [{"description": "API calls 2026-01 (correction found by subledger)", "amount_minor": 12_500,
          "quantity": "250000", "service_start": "2026-01-01", "service_end": "2026-01-31",
          "component": "api_calls", "meter": "api_calls", "kind": "usage"}]


def correction(key: str, *, amount: int = 12_500, finding: str = "fnd_unbilled_acme_2026_01") -> WriteAction:
    lines = [{**LINES[0], "amount_minor": amount}]
    return WriteAction("create_invoice", key, {
        "customer_external_id": "cus_acme", "contract_external_id": "sub_acme", "currency": "USD",
        "lines": lines, "total_minor": amount, "metadata": {"subledger_finding": finding}})


@pytest.fixture(autouse=True)
def seeded(sandbox: StripeSandbox) -> None:
    sandbox.seed(basic_fixture(int(time.time())))


@pytest.fixture
def v1(server: SandboxServer) -> Any:
    return stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": server.url}, max_network_retries=0,
                               stripe_version="2023-08-16").v1


def corrections(v1: Any, finding: str = "fnd_unbilled_acme_2026_01") -> list[Any]:
    return [i for i in v1.invoices.list(params={"customer": "cus_acme", "limit": 100}).data
            if i.metadata.to_dict().get("subledger_finding") == finding]


@pytest.mark.parametrize("shape", ["html", "json_error_string", "empty"])
def test_a_gateway_error_after_the_write_committed_is_retried_and_makes_one_invoice(
    connect: Connect, sandbox: StripeSandbox, v1: Any, fake_clock: FakeClock, shape: str
) -> None:
    body, content_type = FOREIGN_BODIES[shape]
    fault = sandbox.faults.inject("server_error", method="POST", path="/v1/invoices", status=502, phase="after",
                                  body=body, content_type=content_type, headers={"Retry-After": "2"})

    result = connect().write(correction("sl_gateway"))

    assert fault.fired == 1 and fake_clock.sleeps == [2.0]
    assert result.created and [i.id for i in corrections(v1)] == [result.external_id]


def test_a_gateway_that_stays_down_is_a_transient_failure_with_its_fix(connect: Connect, sandbox: StripeSandbox,
                                                                       fake_clock: FakeClock) -> None:
    body, content_type = FOREIGN_BODIES["json_error_string"]
    sandbox.faults.inject("server_error", method="POST", path="/v1/invoices", status=503, times=99, body=body,
                          content_type=content_type)

    with pytest.raises(TransientError) as raised:
        connect().write(correction("sl_down"))

    assert "HTTP 503" in raised.value.message and "upstream connect error" in raised.value.message
    assert "gave up after 5 attempts" in raised.value.message and "retries" in (raised.value.fix or "")


def test_a_second_action_for_the_same_finding_and_the_same_lines_finds_the_first_invoice(
    connect: Connect, v1: Any
) -> None:
    connector = connect()
    first = connector.write(correction("sl_first_planning"))

    again = correction("sl_second_planning")
    assert connector.find(again) is not None
    second = connector.write(again)

    assert first.created and not second.created and second.external_id == first.external_id
    assert [i.id for i in corrections(v1)] == [first.external_id]


def test_a_different_correction_for_the_same_finding_is_written(connect: Connect, v1: Any) -> None:
    """The same finding can rightly need another invoice (late usage after the first was counted):
    only the same lines make it the same fix."""
    connector = connect()
    first = connector.write(correction("sl_first_correction"))
    later = connector.write(correction("sl_late_usage", amount=2_500))

    assert first.created and later.created and later.external_id != first.external_id
    assert sorted(i.total for i in corrections(v1)) == [2_500, 12_500]


def test_a_voided_invoice_of_the_same_finding_is_not_taken_for_the_fix(connect: Connect, v1: Any) -> None:
    connector = connect()
    first = connector.write(correction("sl_voided_planning"))
    v1.invoices.finalize_invoice(first.external_id)
    v1.invoices.void_invoice(first.external_id)

    second = connector.write(correction("sl_after_void"))

    assert second.created and second.external_id != first.external_id
