"""Contract tests: the connector against a mock generated from Stripe's own OpenAPI spec.

``serve-mock.sh start stripe`` runs Steady on the 2023-08-16 v1 spec (installed from npm on
first use). Steady validates every request against Stripe's contract, independently of
our sandbox, and answers with spec-conforming but minimal data: every object carries only
the fields the spec requires, so an invoice comes *without an id* (the spec makes it
optional), a customer without a name or email, a refund without a charge or status. These
tests show that what the connector *sends* is what Stripe defines and that every stream
survives any answer the spec allows: each object is mapped, or rejected with its location,
field, reason and fix; never a crash.

What is adjusted about a stateless, generated mock, and only this (each is the SDK or the
mock legitimately differing from Stripe, not a connector problem hidden):

* the connector sends ``X-Steady-Reject-On-Error: false`` so Steady answers and *reports* its
  findings in headers (collected and checked here), because Steady flags the SDK's indexed
  query arrays (``expand[0]=``, its E3014), which Stripe accepts; every other finding fails;
* list answers are cut to one page (``has_more`` rewritten to false), since a stateless mock
  answers the same page forever and the connector would rightly refuse a list that repeats.
  One test keeps Steady's ``has_more`` on a page whose objects have no id, to show that this
  is a classified failure (nothing to continue from), not a ``KeyError``.

Nothing else is touched: objects without an id stay without one. Billing meters, meter events
and credit grants are not in the 2023 spec; the mock answers them 404 with its own body
(``{"error": "Path not found..."}``, which the SDK cannot read), and the connector reports a
config error, not an internal one. Their shapes are checked against Stripe's 2026 example
objects in the sandbox tests instead.

A loopback proxy in front of the mock (``fault_proxy.py``) answers for it the way a gateway in
front of Stripe does, to show that a 429 or 5xx with a body that is not Stripe's is retried
under the shared policy (``Retry-After`` honoured) and then reported as transient with its fix.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from fault_proxy import Answer, FaultProxy

from subledger.core.connector import Checkpoint, RecordGroup, Rejected, WriteAction
from subledger.core.errors import ConfigError, SystemFailure, TransientError
from subledger.core.sandbox.faults import FOREIGN_BODIES
from subledger.core.sandbox.specs import serve_mock_script, spec_file
from subledger.plugins.stripe.config import StripeConfig
from subledger.plugins.stripe.connector import StripeConnector
from subledger.testing import FakeClock
from subledger.testing.records import record_problems

pytestmark = pytest.mark.integration

SPEC_STREAMS = ("customers", "contracts", "invoices", "credit_notes", "payments")
RECORD_TYPES = {"customers": "customer", "contracts": "contract", "invoices": "invoice",
                "credit_notes": "credit_note", "payments": "payment"}
# Steady's E3014: "expand[0]" looks like a serialisation of "expand". It is the SDK's own
# encoding of arrays (Stripe accepts it); everything else Steady reports is a failure.
TOLERATED = {"E3014"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mock_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = serve_mock_script()
    spec = spec_file("stripe", "spec3.2023-08-16.json")
    if not script.found or not spec.found:
        pytest.skip(script.reason or spec.reason)
    missing = [tool for tool in ("node", "npm", "curl", "setsid") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the Stripe contract tests need {', '.join(missing)} on PATH to run serve-mock.sh "
                    "(Node 18+ with npm installs the Steady mock server); install them", pytrace=False)
    env = {**os.environ, "MOCK_STATE_DIR": str(tmp_path_factory.mktemp("mock-state"))}
    # Parallel workers (pytest -n) must not run npm into the same cache at once.
    with open(Path(tempfile.gettempdir()) / "subledger-serve-mock-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = subprocess.run([str(script.path), "install", "steady"], capture_output=True, text=True, env=env,
                                   timeout=600, check=False)
    if installed.returncode != 0:
        pytest.fail(f"serve-mock.sh install steady failed:\n{installed.stderr[-2000:]}", pytrace=False)
    port = _free_port()
    started = subprocess.run([str(script.path), "start", "stripe", str(port)], capture_output=True, text=True,
                             env=env, timeout=600, check=False)
    if started.returncode != 0:
        pytest.fail(f"serve-mock.sh start stripe failed ({started.returncode}):\n{started.stderr[-2000:]}",
                    pytrace=False)
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script.path), "stop", str(port)], capture_output=True, env=env, timeout=60,
                       check=False)


class SteadySession(requests.Session):
    """Collects Steady's request findings and ends every list after one page (unless ``paged``)."""

    def __init__(self, paged: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.headers["X-Steady-Reject-On-Error"] = "false"
        self.findings: list[tuple[str, str, str, str]] = []
        self.requests_seen = 0
        self.paged = paged  # paths whose has_more is passed on as Steady answered it

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        self.requests_seen += 1
        for n in range(1, int(response.headers.get("x-steady-error-count", "0")) + 1):
            self.findings.append((f"{method!s} {url!s}", response.headers.get(f"x-steady-error-{n}-code", ""),
                                  response.headers.get(f"x-steady-error-{n}-path", ""),
                                  response.headers.get(f"x-steady-error-{n}-message", "")))
        if response.status_code < 300 and response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            if isinstance(body, dict) and body.get("object") == "list" and not str(url).split("?")[0].endswith(
                    self.paged):
                body["has_more"] = False
                response._content = json.dumps(body).encode()
        return response


@pytest.fixture
def session() -> SteadySession:
    return SteadySession()


@pytest.fixture
def connector(mock_url: str, session: SteadySession) -> StripeConnector:
    config = StripeConfig(api_key="sk_test_123", api_base=mock_url)
    return StripeConnector(config, connection="stripe-mock", http_client=stripe.RequestsClient(session=session))


def untolerated(session: SteadySession) -> list[str]:
    return [f"{where}: {code} at {path}: {message}" for where, code, path, message in session.findings
            if code not in TOLERATED]


def test_check_and_every_read_follow_stripes_contract(connector: StripeConnector, session: SteadySession) -> None:
    assert connector.check().ok
    problems: list[str] = []
    kept = rejected = 0
    for stream in SPEC_STREAMS:
        items = list(connector.read(stream, None))
        assert isinstance(items[-1], Checkpoint)
        again = list(connector.read(stream, json.loads(json.dumps(items[-1].state))))
        assert isinstance(again[-1], Checkpoint)
        for item in [*items, *again]:
            if isinstance(item, Checkpoint):
                continue
            if isinstance(item, Rejected):
                rejected += 1
                assert item.reason and item.fix and item.location.startswith("stripe:") and item.field, item
                continue
            kept += 1
            for record in [item.record, *item.children] if isinstance(item, RecordGroup) else [item]:
                problems += [f"{stream}: {p}" for p in record_problems(record, record_type=RECORD_TYPES[stream],
                                                                        connection="stripe-mock")]
    assert not problems, problems
    assert kept + rejected > 0 and session.requests_seen >= 15
    assert not untolerated(session), "Stripe's spec refuses requests the connector sent:\n" + "\n".join(
        untolerated(session))


def test_an_invoice_without_an_id_is_rejected_with_the_field_not_a_crash(connector: StripeConnector) -> None:
    """Stripe's spec makes ``invoice.id`` optional; the mock leaves it out. It used to be a KeyError."""
    items = list(connector.read("invoices", None))
    rejected = [r for r in items if isinstance(r, Rejected)]
    assert rejected and all(r.field == "id" and "without an id" in r.reason for r in rejected)


def test_a_page_of_objects_without_ids_that_says_more_follow_is_a_classified_failure(mock_url: str) -> None:
    """``has_more`` with no object to continue from: the list cannot be read whole, so the stream
    fails with a system failure naming it (nothing is judged on half a list), never a KeyError."""
    session = SteadySession(paged=("/v1/invoices",))
    connector = StripeConnector(StripeConfig(api_key="sk_test_123", api_base=mock_url), connection="stripe-mock",
                                http_client=stripe.RequestsClient(session=session))

    with pytest.raises(SystemFailure) as raised:
        list(connector.read("invoices", None))

    assert "no object with an id to continue from" in raised.value.message and raised.value.fix


@pytest.mark.parametrize("stream", ["meters", "credit_grants", "usage"])
def test_endpoints_the_spec_lacks_are_a_config_error_not_an_internal_one(connector: StripeConnector,
                                                                       stream: str) -> None:
    """The mock answers 404 ``{"error": "Path not found..."}``: the SDK fails inside its own error
    handling (AttributeError); the connector classifies the answer it got."""
    with pytest.raises(ConfigError) as raised:
        list(connector.read(stream, None))
    assert "HTTP 404" in raised.value.message and "Path not found" in raised.value.message


def test_writes_follow_stripes_contract(connector: StripeConnector, session: SteadySession) -> None:
    # The created invoice comes back without an id (the spec allows it): its lines cannot be added,
    # which is reported as a system failure with the fix, after the request itself passed the contract.
    with pytest.raises(SystemFailure) as raised:
        connector.write(WriteAction("create_invoice", "contract-test-1", {
            "customer_external_id": "cus_contract", "currency": "USD", "description": "overage",
            "metadata": {"subledger_finding": "fnd_contract"},
            "lines": [{"description": "API calls", "amount_minor": 1234, "quantity": "5000",
                       "service_start": "2026-01-01", "service_end": "2026-01-31", "component": "api_calls"}]}))
    assert "without an id" in raised.value.message and raised.value.fix
    linked = connector.write(WriteAction("update_customer_metadata", "contract-test-2",
                                         {"metadata": {"subledger_id": "acme"}}, target_external_id="cus_contract"))
    assert linked.external_id == "cus_contract"
    assert not untolerated(session), "Stripe's spec refuses requests the connector sent:\n" + "\n".join(
        untolerated(session))


# -- a gateway in front of Stripe: 429 and 5xx whatever the body ------------------------------------------


@pytest.fixture
def proxy(mock_url: str) -> Iterator[FaultProxy]:
    running = FaultProxy(mock_url)
    yield running
    running.close()


@pytest.fixture
def behind_proxy(proxy: FaultProxy, session: SteadySession) -> StripeConnector:
    config = StripeConfig(api_key="sk_test_123", api_base=proxy.url)
    return StripeConnector(config, connection="stripe-mock", http_client=stripe.RequestsClient(session=session))


@pytest.mark.parametrize("shape", sorted(FOREIGN_BODIES))
def test_a_5xx_or_429_is_retried_whatever_its_body(behind_proxy: StripeConnector, proxy: FaultProxy,
                                                   fake_clock: FakeClock, shape: str) -> None:
    body, content_type = FOREIGN_BODIES[shape]
    proxy.fail(Answer(503, body, content_type))
    proxy.fail(Answer(429, body, content_type, {"Retry-After": "7"}))

    items = list(behind_proxy.read("customers", None))

    assert isinstance(items[-1], Checkpoint) and proxy.fired == 2
    assert len(fake_clock.sleeps) == 2 and fake_clock.sleeps[-1] == 7.0, "Retry-After is waited exactly"


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_failure_that_persists_is_reported_as_transient_with_its_fix(
    behind_proxy: StripeConnector, proxy: FaultProxy, fake_clock: FakeClock, status: int
) -> None:
    body, content_type = FOREIGN_BODIES["json_error_string"] if status != 503 else FOREIGN_BODIES["html"]
    proxy.fail(Answer(status, body, content_type, {"Retry-After": "1"}), times=99)

    with pytest.raises(TransientError) as raised:
        list(behind_proxy.read("customers", None))

    err = raised.value
    assert f"HTTP {status}" in err.message and "gave up after 5 attempts" in err.message
    assert "retries" in (err.fix or "") and "api_key" not in (err.fix or "")
    assert "<html" not in str(err).lower() and "{" not in str(err).replace('{"', "")
    assert fake_clock.sleeps == [1.0] * 4 and proxy.fired == 5
    check = behind_proxy.check()
    assert not check.ok and check.details["kind"] == "transient"


def test_a_401_page_from_the_gateway_is_not_reported_as_a_bad_key(behind_proxy: StripeConnector,
                                                                   proxy: FaultProxy, fake_clock: FakeClock) -> None:
    body, content_type = FOREIGN_BODIES["html"]
    proxy.fail(Answer(401, body, content_type))

    with pytest.raises(ConfigError) as raised:
        list(behind_proxy.read("customers", None))

    assert "HTTP 401" in raised.value.message and "proxy" in (raised.value.fix or "")
    assert "api_key" not in (raised.value.fix or "") and fake_clock.sleeps == []


def test_the_2023_spec_has_no_billing_meters(mock_url: str) -> None:
    """Why meters, meter events and credit grants are checked against the 2026 example objects instead."""
    for path in ("/v1/billing/meters", "/v1/billing/credit_grants"):
        assert requests.get(f"{mock_url}{path}", headers={"Authorization": "Bearer sk_test_123"},
                            timeout=10).status_code == 404


def test_the_script_is_the_shared_one() -> None:
    found = serve_mock_script()
    if not found.found:
        pytest.skip(found.reason)
    assert Path(found.path).name == "serve-mock.sh"  # type: ignore[arg-type]
