"""NetSuite failures classified whatever the answer looks like, malformed records rejected, and
find-before-create by the source record (issue 15: failure A's third cause, items 5 and 15).

NetSuite publishes no OpenAPI document to build a mock from (each account generates its own
from its metadata catalog; see ``../shared/vendor-specs/README.md``), so these run the
connector's own REST client over HTTP against the NetSuite sandbox with injected faults
(``subledger.core.sandbox.faults``). Faults with their own ``body`` answer the way a proxy
or gateway in front of NetSuite does (an HTML page, ``{"error": "..."}``, text, nothing).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ns_testkit import tba_config
from sqlalchemy import Engine
from sqlmodel import Session, select

import subledger.plugins.netsuite as netsuite_plugin
from subledger.core.connector import Checkpoint, Rejected, WriteAction
from subledger.core.errors import ConfigError, TransientError
from subledger.core.model import Action, Connection
from subledger.core.plugins import register_plugin
from subledger.core.sandbox import SandboxServer
from subledger.core.sandbox.faults import FOREIGN_BODIES
from subledger.core.secrets import config_for_storage, load_config
from subledger.plugins.netsuite.config import NetSuiteConfig
from subledger.plugins.netsuite.connector import NetSuiteConnector
from subledger.plugins.netsuite.sandbox import DEFAULT_ACCOUNT, TOKEN_PATH, NetSuiteSandbox
from subledger.sync.apply import apply_actions
from subledger.sync.engine import sync
from subledger.sync.settings import AutoApproval, IdentitySettings, SyncSettings
from subledger.testing import FakeClock
from subledger.testing.memory import DEFAULT_API_KEY, MemoryConfig, memory_connector, memory_store, reset_memory_stores

Connect = Callable[..., NetSuiteConnector]
SUITEQL = "/services/rest/query/v1/suiteql"
RECORD = "/services/rest/record/v1/*"
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def customer_ids(connector: NetSuiteConnector) -> list[str]:
    return [c.external_id for c in connector.read("customers", None) if hasattr(c, "external_id")]


# -- 429 and 5xx, whatever the body ------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(FOREIGN_BODIES))
def test_a_5xx_or_429_is_retried_whatever_its_body(connect: Connect, sandbox: NetSuiteSandbox,
                                                   fake_clock: FakeClock, shape: str) -> None:
    body, content_type = FOREIGN_BODIES[shape]
    sandbox.faults.inject("server_error", method="POST", path=SUITEQL, status=503, times=1, body=body,
                          content_type=content_type)
    sandbox.faults.inject("rate_limit", method="GET", path=RECORD, times=1, body=body, content_type=content_type,
                          retry_after=5)

    assert customer_ids(connect()) == ["1001", "1002"]
    assert len(fake_clock.sleeps) == 2 and 5.0 in fake_clock.sleeps


def test_a_failure_that_persists_is_reported_as_transient_with_its_fix(connect: Connect, sandbox: NetSuiteSandbox,
                                                                       fake_clock: FakeClock) -> None:
    body, content_type = FOREIGN_BODIES["html"]
    sandbox.faults.inject("server_error", method="POST", path=SUITEQL, status=502, times=99, body=body,
                          content_type=content_type)

    with pytest.raises(TransientError) as raised:
        customer_ids(connect())

    err = raised.value
    assert "HTTP 502" in err.message and "503 Service Temporarily Unavailable" in err.message
    assert "gave up after 5 attempts" in err.message and "retries" in (err.fix or "")
    assert "<html" not in str(err).lower() and not PLACEHOLDER.search(str(err))
    check = connect().check()
    assert not check.ok and check.details["kind"] == "transient" and "credentials" not in check.message


def test_only_netsuites_own_401_says_to_check_the_credentials(connect: Connect, sandbox: NetSuiteSandbox,
                                                              fake_clock: FakeClock) -> None:
    with pytest.raises(ConfigError) as raised:
        customer_ids(connect(token_secret="ts" + "0" * 62))
    assert "[INVALID_LOGIN]" in raised.value.message and "token_secret" in (raised.value.fix or "")

    body, content_type = FOREIGN_BODIES["html"]
    sandbox.faults.inject("server_error", method="POST", path=SUITEQL, status=401, times=1, body=body,
                          content_type=content_type)
    with pytest.raises(ConfigError) as raised:
        customer_ids(connect())
    assert "proxy" in (raised.value.fix or "") and "token_secret" not in (raised.value.fix or "")
    assert fake_clock.sleeps == []


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def oauth2(sandbox: NetSuiteSandbox, server: SandboxServer) -> Iterator[Callable[..., NetSuiteConnector]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sandbox.oauth2_clients["client-123"] = {"cert-abc": key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()}
    made: list[NetSuiteConnector] = []

    def build(private_key: str | None = None) -> NetSuiteConnector:
        config = load_config(NetSuiteConfig, {
            "account_id": DEFAULT_ACCOUNT, "base_url": server.url, "auth": "oauth2", "client_id": "client-123",
            "certificate_id": "cert-abc", "private_key": private_key or _pem(key)})
        made.append(NetSuiteConnector(config))  # type: ignore[arg-type]
        return made[-1]

    yield build
    for connector in made:
        connector.close()


def test_a_busy_token_endpoint_is_retried_not_reported_as_bad_credentials(
    oauth2: Callable[..., NetSuiteConnector], sandbox: NetSuiteSandbox, fake_clock: FakeClock
) -> None:
    body, content_type = FOREIGN_BODIES["html"]
    sandbox.faults.inject("server_error", method="POST", path=TOKEN_PATH, status=503, times=1, body=body,
                          content_type=content_type)
    sandbox.faults.inject("rate_limit", method="POST", path=TOKEN_PATH, times=1, body="", retry_after=2)

    assert customer_ids(oauth2()) == ["1001", "1002"]
    tokens = [e for e in sandbox.exchanges if e.request.path == TOKEN_PATH]
    assert len(tokens) == 3 and 2.0 in fake_clock.sleeps
    assert not [e for e in sandbox.exchanges if e.response is not None and e.response.status == 401]


def test_a_token_endpoint_that_stays_down_is_transient_and_a_refused_key_names_the_settings(
    oauth2: Callable[..., NetSuiteConnector], sandbox: NetSuiteSandbox, fake_clock: FakeClock
) -> None:
    body, content_type = FOREIGN_BODIES["json_error_string"]
    sandbox.faults.inject("server_error", method="POST", path=TOKEN_PATH, status=502, times=99, body=body,
                          content_type=content_type)
    with pytest.raises(TransientError) as raised:
        customer_ids(oauth2())
    assert "HTTP 502" in raised.value.message and "upstream connect error" in raised.value.message
    assert "credentials" not in (raised.value.fix or "") and not PLACEHOLDER.search(str(raised.value))
    sandbox.faults.clear()

    other = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(ConfigError) as refused:
        customer_ids(oauth2(private_key=other))
    assert "invalid_grant" in refused.value.message and "private_key" in (refused.value.fix or "")


# -- malformed records ---------------------------------------------------------------------------------


def test_records_missing_fields_or_with_bad_amounts_are_rejected_with_the_field_never_a_crash(
    connect: Connect, sandbox: NetSuiteSandbox
) -> None:
    invoices = sandbox.store.collection("invoice")
    del invoices["2001"]["currency"]
    del invoices["2002"]["entity"]
    sandbox.store.collection("customerPayment")["3001"]["payment"] = "12,5 EUR"
    connector = connect()

    read = {stream: list(connector.read(stream, None)) for stream in ("invoices", "payments", "credit_notes")}

    assert all(isinstance(items[-1], Checkpoint) for items in read.values())
    rejected = {r.location: r for items in read.values() for r in items if isinstance(r, Rejected)}
    assert set(rejected) == {"netsuite:invoice/2001", "netsuite:invoice/2002", "netsuite:customerPayment/3001"}
    assert rejected["netsuite:invoice/2002"].field == "entity"
    assert "currency" in rejected["netsuite:invoice/2001"].reason
    for reject in rejected.values():
        assert reject.reason and reject.fix
    assert [c for c in read["credit_notes"] if not isinstance(c, Checkpoint | Rejected)]


# -- find-before-create by the source record ---------------------------------------------------------------


def _invoice_action(key: str, **changes: Any) -> WriteAction:
    payload = {"source_system": "stripe", "source_external_id": "in_77", "number": "B-77", "customer": "cus_acme",
               "currency": "USD", "issued_at": "2026-01-05T00:00:00+00:00", "total_minor": 4200, "tax_minor": 0,
               "lines": [{"description": "API calls", "amount_minor": 4200, "quantity": "4200",
                          "service_start": "2026-01-01", "service_end": "2026-01-31"}], **changes}
    return WriteAction("create_invoice", key, payload)


def _copies(sandbox: NetSuiteSandbox, source: str = "in_77") -> list[dict[str, Any]]:
    return [r for r in sandbox.store.collection("invoice").values()
            if r.get("custbody_subledger_source_id") == source]


def test_a_second_action_for_the_same_source_invoice_finds_the_first(connect: Connect,
                                                                     sandbox: NetSuiteSandbox) -> None:
    connector = connect()
    first = connector.write(_invoice_action("sl_first_planning"))
    again = _invoice_action("sl_second_planning", issued_at="2026-01-06T00:00:00+00:00")

    assert connector.find(again) is not None
    second = connector.write(again)

    assert first.created and not second.created and second.external_id == first.external_id
    [invoice] = _copies(sandbox)
    assert invoice["externalId"] == "subledger:stripe:in_77"


def test_an_invoice_written_under_an_older_external_id_is_found_by_its_source_fields(
    connect: Connect, sandbox: NetSuiteSandbox
) -> None:
    """Invoices written before this version carry the action key as external id; the source custom
    fields still identify them, so a new planning of the same invoice finds them (SuiteQL)."""
    connector = connect()
    legacy = connector.client.upsert("invoice", "sl_written_by_an_older_version", {
        "entity": {"externalId": "cus_acme"}, "currency": {"id": "1"},
        "custbody_subledger_source_system": "stripe", "custbody_subledger_source_id": "in_77",
        "item": {"items": [{"item": {"id": "501"}, "amount": 42, "description": "API calls"}]}})

    result = connector.write(_invoice_action("sl_new_planning"))

    assert not result.created and result.external_id == legacy
    assert len(_copies(sandbox)) == 1


def test_a_second_action_for_the_same_customer_finds_the_first(connect: Connect, sandbox: NetSuiteSandbox) -> None:
    connector = connect()
    payload = {"external_id": "cus_initech", "name": "Initech", "currency": "USD"}
    first = connector.write(WriteAction("create_customer", "sl_customer_1", payload))
    second = connector.write(WriteAction("create_customer", "sl_customer_2",
                                         {**payload, "email": "ap@initech.example"}))

    assert first.created and not second.created and first.external_id == second.external_id
    assert [c.get("externalId") for c in sandbox.store.collection("customer").values()].count("cus_initech") == 1


SETTINGS = SyncSettings(
    roles={"billing": ["billing"], "netsuite": ["erp"]},
    identity=IdentitySettings(master="billing"),
    auto_approve=[AutoApproval(rule="invoice_missing_from_erp", max_amount="100.00")],
)


@pytest.fixture
def connected(engine: Engine, isolated_plugins: None, server: SandboxServer) -> Iterator[Engine]:
    reset_memory_stores()
    billing = memory_store("billing")
    billing.put("customers", "cus_acme", name="Acme Corp", email="ap@acme.example", email_domain="acme.example",
                currency="USD")
    billing.put("invoices", "in_77", customer_external_id="cus_acme", currency="USD", status="open", number="B-77",
                subtotal_minor=4200, total_minor=4200, amount_due_minor=4200,
                issued_at=datetime(2026, 1, 5, tzinfo=UTC), period_start=date(2026, 1, 1),
                period_end=date(2026, 1, 31),
                lines=[{"line_key": "l1", "kind": "usage", "description": "API calls", "quantity": "4200",
                        "amount_minor": 4200, "currency": "USD", "service_start": date(2026, 1, 1),
                        "service_end": date(2026, 1, 31)}])
    if not any(ep.name == "netsuite" for ep in importlib.metadata.entry_points(group="subledger")):
        register_plugin(netsuite_plugin, name="netsuite")
    ns_config = load_config(NetSuiteConfig, tba_config(server.url))
    mem_config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
    with Session(engine) as s, s.begin():
        s.add(Connection(name="billing", plugin="memory", config=config_for_storage(mem_config)))
        s.add(Connection(name="netsuite", plugin="netsuite", config=config_for_storage(ns_config)))
    with memory_connector():
        yield engine
    reset_memory_stores()


def test_planning_and_applying_the_same_missing_invoice_twice_makes_one_netsuite_invoice(
    connected: Engine, sandbox: NetSuiteSandbox, fake_clock: FakeClock
) -> None:
    """Failure A's third cause: a second planning of the same fix (another action key: here the
    invoice planned again with another issue date) found nothing and created a duplicate."""
    sync(connected, trigger="test", settings=SETTINGS)  # plans invoice_missing_from_erp for B-77, applies it
    with Session(connected) as s:
        [first] = s.exec(select(Action).where(Action.kind == "create_invoice")).all()
        assert first.status == "done"
        written = first.external_id
        s.add(Action(id="act_again", idempotency_key="sl_planned_again_with_another_key", kind="create_invoice",
                     connection="netsuite", rule=first.rule, finding_id=first.finding_id,
                     payload={**first.payload, "issued_at": "2026-01-06T00:00:00+00:00"},
                     amount_minor=first.amount_minor, currency=first.currency, status="approved",
                     approved_by="tests"))
        s.commit()

    report = apply_actions(connected, actor="tests")

    assert report.done == ["act_again"] and not report.failed
    with Session(connected) as s:
        again = s.get(Action, "act_again")
        assert again is not None and again.external_id == written
    [invoice] = _copies(sandbox)
    assert invoice["id"] == written
