"""Governance: a bounded pool of requests in flight; concurrency refusals are backed off and retried."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from subledger.core.connector import RecordGroup, WriteAction
from subledger.core.errors import ConfigError, TransientError
from subledger.core.sandbox import SandboxServer
from subledger.plugins.netsuite.connector import NetSuiteConnector
from subledger.plugins.netsuite.sandbox import NetSuiteSandbox
from subledger.testing import FakeClock


def _more_invoices(sandbox: NetSuiteSandbox, n: int) -> None:
    for k in range(n):
        sandbox.save("invoice", {"entity": {"id": "1002"}, "tranDate": "2026-01-20",
                                 "item": {"items": [{"item": {"id": "501"}, "amount": f"{k + 1}.00"}]}}, None)


def test_the_pool_bounds_requests_in_flight_to_the_accounts_limit(
    sandbox: NetSuiteSandbox, connect: Callable[..., NetSuiteConnector]
) -> None:
    """18 invoices read in pages of 6, each page's records fetched in parallel: never more
    than 2 requests in flight, so the account (limit 2) never refuses one."""
    _more_invoices(sandbox, 16)
    sandbox.concurrency_limit, sandbox.request_latency = 2, 0.02
    connector = connect(max_concurrency=2, page_size=6)
    invoices = [i for i in connector.read("invoices", None) if isinstance(i, RecordGroup)]
    assert len(invoices) == 18
    assert sandbox.concurrency_refusals == 0
    assert connector.client.transport.peak_in_flight == 2  # the reads did run in parallel
    assert sandbox.peak_in_flight <= 2


def test_without_the_pool_the_account_refuses_requests(
    sandbox: NetSuiteSandbox, connect: Callable[..., NetSuiteConnector], fake_clock: FakeClock
) -> None:
    """The same read with 6 in flight against a limit of 2 is refused (and backed off)."""
    _more_invoices(sandbox, 16)
    sandbox.concurrency_limit, sandbox.request_latency = 2, 0.05
    connector = connect(max_concurrency=6, page_size=6)
    with contextlib.suppress(TransientError):  # whether the retries win is timing; the refusals are the point
        list(connector.read("invoices", None))
    assert sandbox.concurrency_refusals > 0
    assert fake_clock.sleeps, "refusals are backed off through the retry policy"


@pytest.mark.parametrize(("kind", "status"), [("server_error", 400), ("rate_limit", 429)])
def test_concurrency_errors_are_rate_limits_retried_with_backoff(
    sandbox: NetSuiteSandbox, connect: Callable[..., NetSuiteConnector], fake_clock: FakeClock, kind: str,
    status: int,
) -> None:
    fault = sandbox.faults.inject(kind, status=status, retry_after=None, times=2, path="/services/rest/query/*")
    result = connect().check()
    assert result.ok, result.message
    assert fault.fired == 2 and len(fake_clock.sleeps) == 2
    assert 0 < fake_clock.sleeps[0] <= 0.5 and fake_clock.sleeps[1] <= 1.0  # backoff grows from 0.5 s
    refused = [e for e in sandbox.exchanges if e.fault is fault]
    assert all(e.response is not None and e.response.status == status for e in refused)
    assert b"CONCURRENCY_LIMIT_EXCEEDED" in refused[0].response.encode()  # type: ignore[union-attr]


def test_a_write_refused_for_concurrency_is_retried_and_lands_once(
    sandbox: NetSuiteSandbox, connect: Callable[..., NetSuiteConnector], fake_clock: FakeClock
) -> None:
    fault = sandbox.faults.inject("server_error", status=400, method="PUT", times=1)
    result = connect().write(WriteAction("create_customer", "k1", {"external_id": "initech", "name": "Initech"}))
    assert result.created and fault.fired == 1 and len(fake_clock.sleeps) == 1
    assert [c["companyName"] for c in sandbox.store.collection("customer").values()].count("Initech") == 1


def test_a_user_error_is_not_retried_and_quotes_netsuite(
    server: SandboxServer, connect: Callable[..., NetSuiteConnector], fake_clock: FakeClock
) -> None:
    action = WriteAction("create_invoice", "k2", {"customer": "nobody", "currency": "USD",
                                                  "lines": [{"amount_minor": 100}]})
    with pytest.raises(ConfigError) as raised:
        connect().write(action)
    assert "HTTP 400" in str(raised.value) and "no customer eid:nobody. [INVALID_KEY_OR_REF]" in str(raised.value)
    assert fake_clock.sleeps == []
