"""Authentication: TBA signatures checked by oauthlib's RFC 5849 server, OAuth 2.0 client credentials."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ns_testkit import tba_config

from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import load_config
from subledger.plugins.netsuite.auth import TokenBasedAuth
from subledger.plugins.netsuite.config import NetSuiteConfig
from subledger.plugins.netsuite.connector import NetSuiteConnector
from subledger.plugins.netsuite.sandbox import DEFAULT_ACCOUNT, NetSuiteSandbox

SUITEQL = "/services/rest/query/v1/suiteql"


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def signed_client(server: SandboxServer, **overrides: Any) -> httpx.Client:
    config = load_config(NetSuiteConfig, tba_config(server.url, **overrides))
    return httpx.Client(base_url=server.url, auth=TokenBasedAuth(config))  # type: ignore[arg-type]


def test_a_signed_request_is_accepted(server: SandboxServer) -> None:
    with signed_client(server) as client:
        response = client.post(SUITEQL, params={"limit": 5}, json={"q": "SELECT id, name FROM subsidiary"},
                               headers={"Prefer": "transient"})
    assert response.status_code == 200
    assert response.json()["items"] == [{"links": [], "id": "1", "name": "Parent Company"}]
    sent = response.request.headers["Authorization"]
    assert sent.startswith(f'OAuth realm="{DEFAULT_ACCOUNT}"') and 'oauth_signature_method="HMAC-SHA256"' in sent


@pytest.mark.parametrize("overrides", [
    {"token_secret": "ts" + "0" * 62},       # the signature does not verify
    {"consumer_secret": "cs" + "0" * 62},
    {"token_id": "ti" + "5" * 62},           # an unknown token
    {"account_id": "7654321"},                # another account's realm
])
def test_a_wrong_signature_fails_the_way_netsuite_fails(server: SandboxServer, overrides: dict[str, str]) -> None:
    with signed_client(server, **overrides) as client:
        response = client.get("/services/rest/record/v1/customer/1001")
    assert response.status_code == 401
    body = response.json()
    assert (body["title"], body["status"]) == ("Unauthorized", 401)
    assert body["type"] == "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2"
    [detail] = body["o:errorDetails"]
    assert detail["o:errorCode"] == "INVALID_LOGIN" and detail["detail"].startswith("Invalid login attempt.")


def test_a_tampered_query_string_or_a_replayed_nonce_is_refused(server: SandboxServer) -> None:
    with signed_client(server) as client:
        request = client.build_request("POST", SUITEQL, params={"limit": 1},
                                       json={"q": "SELECT id FROM customer"}, headers={"Prefer": "transient"})
        signed = next(client.auth.auth_flow(request))  # type: ignore[union-attr]
        assert client.send(signed, auth=None).status_code == 200
        assert client.send(signed, auth=None).status_code == 401  # same nonce and timestamp
        tampered = client.build_request("POST", SUITEQL, params={"limit": 1000},
                                        json={"q": "SELECT id FROM customer"},
                                        headers={"Prefer": "transient",
                                                 "Authorization": signed.headers["Authorization"]})
        assert client.send(tampered, auth=None).status_code == 401


def test_check_reports_bad_credentials_with_netsuites_words(connect: Callable[..., NetSuiteConnector]) -> None:
    result = connect(token_secret="ts" + "0" * 62).check()
    assert not result.ok
    assert "HTTP 401" in result.message and "[INVALID_LOGIN]" in result.message
    assert "credentials" in result.message  # the fix
    assert "ts" + "0" * 62 not in result.message


def test_oauth2_client_credentials_with_a_ps256_assertion(sandbox: NetSuiteSandbox, server: SandboxServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sandbox.oauth2_clients["client-123"] = {"cert-abc": _public_pem(key)}
    base = {"account_id": DEFAULT_ACCOUNT, "base_url": server.url, "auth": "oauth2", "client_id": "client-123",
            "certificate_id": "cert-abc"}
    good = NetSuiteConnector(load_config(NetSuiteConfig, {**base, "private_key": _pem(key)}))  # type: ignore[arg-type]
    assert good.check().ok
    assert [c.external_id for c in good.read("customers", None) if hasattr(c, "external_id")] == ["1001", "1002"]
    tokens = [e for e in sandbox.exchanges if e.request.path.endswith("/oauth2/v1/token")]
    assert len(tokens) == 1, "the access token is reused until it expires"

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = NetSuiteConnector(load_config(NetSuiteConfig, {**base, "private_key": _pem(other)}))  # type: ignore[arg-type]
    result = wrong.check()
    # NetSuite's token endpoint refuses the assertion: that refusal is reported (never a 401 from a request
    # sent on with no token), with the settings to check.
    assert not result.ok and "HTTP 400" in result.message and "invalid_grant" in result.message
    assert "private_key" in result.message
    for c in (good, wrong):
        c.close()


def test_oauth2_with_a_key_that_is_not_pem_names_the_fix(server: SandboxServer) -> None:
    config = load_config(NetSuiteConfig, {"account_id": DEFAULT_ACCOUNT, "base_url": server.url, "auth": "oauth2",
                                          "client_id": "c", "certificate_id": "k", "private_key": "not a key"})
    result = NetSuiteConnector(config).check()  # type: ignore[arg-type]
    assert not result.ok and "PEM private key" in result.message


def test_a_config_missing_credentials_for_its_auth_is_refused() -> None:
    from subledger.core.errors import ConfigError

    with pytest.raises(ConfigError, match="auth tba needs consumer_key, consumer_secret, token_id, token_secret"):
        load_config(NetSuiteConfig, {"account_id": "123"})
