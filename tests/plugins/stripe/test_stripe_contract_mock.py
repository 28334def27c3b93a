"""Contract tests: the connector against a mock generated from Stripe's own OpenAPI spec.

``serve-mock.sh start stripe`` runs Steady on the 2023-08-16 v1 spec (installed from npm on
first use). Steady validates every request against Stripe's contract, independently of
our sandbox, and answers with spec-conforming but arbitrary data, so these tests show
that what the connector *sends* is what Stripe defines and that it survives any answer
the spec allows (each record valid or rejected with a fix, never a crash).

Three things about a stateless, generated mock are adjusted, and only these: the connector
sends ``X-Steady-Reject-On-Error: false`` so Steady answers and *reports* its findings in
headers (collected and checked here), because Steady flags the SDK's indexed query
arrays (``expand[0]=``) which Stripe accepts; list answers are cut to one page
(``has_more`` rewritten to false), since a stateless mock repeats the same page forever;
and an object Steady generated without its (spec-optional) ``id`` gets one, so the
calls that follow it can be made.
Billing meters, meter events and credit grants are not in the 2023 spec; they are
checked against Stripe's 2026 example objects in the sandbox tests instead.
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

from subledger.core.connector import Checkpoint, RecordGroup, Rejected, WriteAction
from subledger.core.sandbox.specs import serve_mock_script, spec_file
from subledger.plugins.stripe.config import StripeConfig
from subledger.plugins.stripe.connector import StripeConnector
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
    """Collects Steady's request findings and ends every list after one page."""

    def __init__(self) -> None:
        super().__init__()
        self.headers["X-Steady-Reject-On-Error"] = "false"
        self.findings: list[tuple[str, str, str, str]] = []
        self.requests_seen = 0
        self.ids_filled = 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(method, url, *args, **kwargs)
        self.requests_seen += 1
        for n in range(1, int(response.headers.get("x-steady-error-count", "0")) + 1):
            self.findings.append((f"{method!s} {url!s}", response.headers.get(f"x-steady-error-{n}-code", ""),
                                  response.headers.get(f"x-steady-error-{n}-path", ""),
                                  response.headers.get(f"x-steady-error-{n}-message", "")))
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            if isinstance(body, dict):
                if body.get("object") == "list":
                    body["has_more"] = False
                for obj in body.get("data", []) if body.get("object") == "list" else [body]:
                    if isinstance(obj, dict) and "object" in obj and not obj.get("id"):
                        self.ids_filled += 1
                        obj["id"] = f"mock_{obj['object']}_{self.ids_filled}"
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
                assert item.reason and item.fix, item
                continue
            kept += 1
            for record in [item.record, *item.children] if isinstance(item, RecordGroup) else [item]:
                problems += [f"{stream}: {p}" for p in record_problems(record, record_type=RECORD_TYPES[stream],
                                                                        connection="stripe-mock")]
    assert not problems, problems
    assert kept + rejected > 0 and session.requests_seen >= 15
    assert not untolerated(session), "Stripe's spec refuses requests the connector sent:\n" + "\n".join(
        untolerated(session))


def test_writes_follow_stripes_contract(connector: StripeConnector, session: SteadySession) -> None:
    invoice = connector.write(WriteAction("create_invoice", "contract-test-1", {
        "customer_external_id": "cus_contract", "currency": "USD", "description": "overage",
        "lines": [{"description": "API calls", "amount_minor": 1234, "quantity": "5000",
                   "service_start": "2026-01-01", "service_end": "2026-01-31", "component": "api_calls"}]}))
    assert invoice.created
    linked = connector.write(WriteAction("update_customer_metadata", "contract-test-2",
                                         {"metadata": {"subledger_id": "acme"}}, target_external_id="cus_contract"))
    assert linked.external_id == "cus_contract"
    assert not untolerated(session), "Stripe's spec refuses requests the connector sent:\n" + "\n".join(
        untolerated(session))


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
