"""Logins (SOAP with a security token, OAuth username-password, OAuth JWT bearer) and API limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sf_testkit import org_fixture

from subledger.core.errors import ConfigError, TransientError
from subledger.core.model import Customer
from subledger.core.sandbox import SandboxServer
from subledger.plugins.salesforce.config import SalesforceConfig
from subledger.plugins.salesforce.connector import SalesforceConnector
from subledger.plugins.salesforce.sandbox import (
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SalesforceSandbox,
)
from subledger.testing import FakeClock


def _pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


PRIVATE, PUBLIC = _pem_pair()
OTHER_PRIVATE, _ = _pem_pair()


@pytest.fixture
def jwt_server() -> Iterator[SandboxServer]:
    sandbox = SalesforceSandbox(fixture=org_fixture(), consumers={
        DEFAULT_CONSUMER_KEY: {"secret": DEFAULT_CONSUMER_SECRET, "certificate": PUBLIC}})
    with SandboxServer(sandbox) as server:
        yield server


def customers(connector: SalesforceConnector) -> list[str]:
    return sorted(c.name for c in connector.read("customers", None) if isinstance(c, Customer))


def test_the_jwt_bearer_flow_signs_in_with_the_connected_apps_key(jwt_server: SandboxServer) -> None:
    config = SalesforceConfig(username=DEFAULT_USERNAME, consumer_key=DEFAULT_CONSUMER_KEY, private_key=PRIVATE,
                              base_url=jwt_server.url)
    assert config.auth_flow == "jwt"
    assert customers(SalesforceConnector(config)) == ["Acme Corp", "Globex", "Initech"]
    assert PRIVATE not in repr(config)


def test_a_jwt_signed_by_another_key_is_refused_with_the_fix(jwt_server: SandboxServer) -> None:
    config = SalesforceConfig(username=DEFAULT_USERNAME, consumer_key=DEFAULT_CONSUMER_KEY,
                              private_key=OTHER_PRIVATE, base_url=jwt_server.url)
    result = SalesforceConnector(config).check()
    assert not result.ok
    assert "invalid_grant" in result.message and "certificate" in result.message


def test_the_oauth_username_password_flow(server: SandboxServer) -> None:
    config = SalesforceConfig(username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD,
                              consumer_key=DEFAULT_CONSUMER_KEY, consumer_secret=DEFAULT_CONSUMER_SECRET,
                              base_url=server.url)
    assert config.auth_flow == "oauth_password"
    assert customers(SalesforceConnector(config)) == ["Acme Corp", "Globex", "Initech"]


def test_a_wrong_password_fails_check_naming_the_login_never_the_password(config: SalesforceConfig) -> None:
    wrong = config.model_copy(update={"password": config.password.__class__("Hunter2-not-it")})
    result = SalesforceConnector(wrong).check()
    assert not result.ok
    assert "INVALID_LOGIN" in result.message and "security_token" in result.message
    assert "Hunter2-not-it" not in result.message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"username": "u", "password": "p"}, "security_token"),
        ({"username": "u", "password": "p", "consumer_key": "k"}, "consumer_secret"),
        ({"username": "u", "private_key": "pem"}, "consumer_key"),
        ({"username": "u", "password": "p", "security_token": "t", "base_url": "http://10.1.2.3:80"}, "loopback"),
    ],
)
def test_incomplete_logins_are_refused_when_the_config_is_built(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SalesforceConfig.model_validate(raw)


def test_an_org_out_of_api_requests_is_a_transient_error_to_come_back_to(
    connector: SalesforceConnector, sandbox: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    connector.check()
    sandbox.exhaust_limit()
    with pytest.raises(TransientError, match="REQUEST_LIMIT_EXCEEDED") as raised:
        list(connector.read("customers", None))
    assert raised.value.retry_after == 3600  # the daily allowance: the scheduler comes back, nothing sleeps here
    assert fake_clock.sleeps == []


def test_request_limit_exceeded_is_retried_after_retry_after(
    connector: SalesforceConnector, sandbox: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    sandbox.faults.inject("rate_limit", path="/services/data/*/query/", retry_after=4)
    assert customers(connector) == ["Acme Corp", "Globex", "Initech"]
    assert fake_clock.sleeps == [4]
    assert [ex.response.status for ex in sandbox.exchanges if ex.fault is not None] == [403]


def test_reading_stops_before_the_org_runs_out_of_api_requests(
    config: SalesforceConfig, fake_clock: FakeClock
) -> None:
    sandbox = SalesforceSandbox(fixture=org_fixture(), api_limit=6)
    with SandboxServer(sandbox) as server:
        connector = SalesforceConnector(config.model_copy(update={"base_url": server.url,
                                                                  "api_usage_stop_percent": 50}))
        with pytest.raises(TransientError, match="used 3 of its 6 daily API requests"):
            list(connector.read("contracts", None))
    assert connector.api.api_usage == (3, 6)


def test_an_unreachable_org_fails_check_as_transient(config: SalesforceConfig, fake_clock: FakeClock) -> None:
    result = SalesforceConnector(config.model_copy(update={"base_url": "http://127.0.0.1:9"})).check()
    assert not result.ok and result.details["kind"] == "transient"
    assert "could not reach Salesforce" in result.message


def test_a_client_error_is_not_retried(connector: SalesforceConnector, sandbox: SalesforceSandbox,
                                       fake_clock: FakeClock) -> None:
    sandbox.faults.inject("server_error", status=400, path="/services/data/*/query/")
    with pytest.raises(ConfigError, match="HTTP 400"):
        list(connector.read("customers", None))
    assert fake_clock.sleeps == []


def test_an_expired_session_logs_in_again_for_rest_and_bulk_reads(
    config: SalesforceConfig, sandbox: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    connector = SalesforceConnector(config.model_copy(update={"bulk_threshold": 1}))
    assert customers(connector) == ["Acme Corp", "Globex", "Initech"]
    sandbox.sessions.clear()  # expires before a REST call: the SDK logs in again
    assert customers(connector) == ["Acme Corp", "Globex", "Initech"]
    expired: list[bool] = []

    def expire_after_the_count(exchange: Any) -> None:
        if "COUNT" in exchange.request.target and not expired:
            expired.append(True)
            sandbox.sessions.clear()  # expires between the count and the Bulk job: the connector logs in again

    sandbox.observers.append(expire_after_the_count)
    assert customers(connector) == ["Acme Corp", "Globex", "Initech"]
    logins = [ex for ex in sandbox.exchanges if ex.request.path.startswith("/services/Soap/u/")]
    assert len(logins) == 3
