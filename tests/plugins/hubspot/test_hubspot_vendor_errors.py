"""HubSpot failures classified whatever the answer looks like, and objects with missing properties (issue 15).

HubSpot's OpenAPI documents are published but licensed "not for external use", so none is in
``../shared/vendor-specs`` to build a mock from (see its README). These tests therefore run
the official ``hubspot-api-client`` over HTTP against the HubSpot sandbox with injected
faults (``subledger.core.sandbox.faults``). Faults with their own ``body`` answer the way a
proxy or gateway in front of HubSpot does (an HTML page, ``{"error": "..."}``, text, nothing).

* A 429 or 5xx, whatever its body, is retried under the shared policy (``Retry-After``
  honoured), then reported as transient with its fix.
* Only HubSpot's own 401 (its error document) says to check the access token; a 401 page from
  something else points at the base URL and the proxy first.
* Every property HubSpot's object schema makes optional may be missing: each stream still
  reads, mapping what it can and rejecting what it cannot, with the object and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from subledger.core.connector import Checkpoint, Rejected
from subledger.core.errors import ConfigError, TransientError
from subledger.core.model import Contract, Customer
from subledger.core.sandbox.faults import FOREIGN_BODIES
from subledger.plugins.hubspot.config import HubSpotConfig
from subledger.plugins.hubspot.connector import HubSpotConnector
from subledger.plugins.hubspot.sandbox import HubSpotSandbox
from subledger.testing import FakeClock

Connect = Callable[..., HubSpotConnector]
SEARCH = "/crm/v3/objects/companies/search"
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def companies(connector: HubSpotConnector) -> list[str]:
    return sorted(c.external_id for c in connector.read("customers", None) if isinstance(c, Customer))


@pytest.mark.parametrize("shape", sorted(FOREIGN_BODIES))
def test_a_5xx_or_429_is_retried_whatever_its_body(connect: Connect, sandbox: HubSpotSandbox,
                                                   fake_clock: FakeClock, shape: str) -> None:
    body, content_type = FOREIGN_BODIES[shape]
    sandbox.faults.inject("server_error", method="POST", path=SEARCH, status=503, times=1, body=body,
                          content_type=content_type)
    sandbox.faults.inject("rate_limit", method="POST", path=SEARCH, times=1, body=body, content_type=content_type,
                          retry_after=6)

    assert companies(connect()) == ["101", "102", "103"]
    assert len(fake_clock.sleeps) == 2 and fake_clock.sleeps[-1] == 6.0


@pytest.mark.parametrize(("kind", "status"), [("server_error", 502), ("rate_limit", 429)])
def test_a_failure_that_persists_is_reported_as_transient_with_its_fix(
    connect: Connect, sandbox: HubSpotSandbox, fake_clock: FakeClock, kind: str, status: int
) -> None:
    body, content_type = FOREIGN_BODIES["html"]
    sandbox.faults.inject(kind, method="POST", path=SEARCH, status=status, times=99, body=body,
                          content_type=content_type, retry_after=1)

    with pytest.raises(TransientError) as raised:
        companies(connect())

    err = raised.value
    assert f"HTTP {status}" in err.message and "gave up after 5 attempts" in err.message
    assert "retries" in (err.fix or "") and "token" not in (err.fix or "")
    assert "<html" not in str(err).lower() and not PLACEHOLDER.search(str(err))
    sandbox.faults.inject(kind, method="GET", path="/crm/v3/objects/companies", status=status, times=1, body=body,
                          content_type=content_type)
    check = connect().check()
    assert not check.ok and check.details["kind"] == "transient" and "token" not in check.message


def test_only_hubspots_own_401_says_to_check_the_token(connect: Connect, sandbox: HubSpotSandbox, server: Any,
                                                       fake_clock: FakeClock) -> None:
    refused = HubSpotConnector(HubSpotConfig(access_token="pat-not-the-token", base_url=server.url))
    with pytest.raises(ConfigError) as raised:
        companies(refused)
    assert "access_token" in (raised.value.fix or "") and "HTTP 401" in raised.value.message

    body, content_type = FOREIGN_BODIES["html"]
    sandbox.faults.inject("server_error", method="POST", path=SEARCH, status=401, times=1, body=body,
                          content_type=content_type)
    with pytest.raises(ConfigError) as raised:
        companies(connect())
    assert "proxy" in (raised.value.fix or "") and fake_clock.sleeps == []


def _strip(obj: dict[str, Any], keep: tuple[str, ...] = ("hs_lastmodifieddate",)) -> None:
    obj["properties"] = {k: v for k, v in (obj.get("properties") or {}).items() if k in keep}


def test_objects_missing_every_optional_property_are_read_or_rejected_never_a_crash(
    connect: Connect, sandbox: HubSpotSandbox
) -> None:
    for kind in ("companies", "deals", "line_items", "products"):
        for obj in sandbox.store.collection(kind).values():
            _strip(obj, keep=("hs_lastmodifieddate", "dealstage") if kind == "deals" else ("hs_lastmodifieddate",))
    connector = connect()

    customers = list(connector.read("customers", None))
    contracts = list(connector.read("contracts", None))

    assert isinstance(customers[-1], Checkpoint) and isinstance(contracts[-1], Checkpoint)
    assert sorted(c.external_id for c in customers if isinstance(c, Customer)) == ["101", "102", "103"]
    assert all(c.name == "" for c in customers if isinstance(c, Customer))
    rejected = [r for r in contracts if isinstance(r, Rejected)]
    assert rejected and not [c for c in contracts if isinstance(c, Contract)]
    for reject in rejected:
        assert reject.reason and reject.fix and reject.location.startswith("HubSpot "), reject
