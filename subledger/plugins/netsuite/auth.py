"""Authentication: token-based (OAuth 1.0a, HMAC-SHA256) and OAuth 2.0 client credentials.

Both are ``httpx.Auth`` flows so every request the shared ``HttpClient`` sends is signed
right before it leaves, query string included (SuiteQL paging changes it per page).
The signature itself is oauthlib's (RFC 5849); the JWT assertion is PyJWT's.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Generator
from typing import Any

import httpx
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, Client

from subledger.core.errors import ConfigError, SubledgerError, SystemFailure
from subledger.core.http import error_for_status, not_sent, vendor_detail
from subledger.core.secrets import register_secret
from subledger.plugins.netsuite import exact_json
from subledger.plugins.netsuite.config import NetSuiteConfig

TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
_OAUTHLIB_LOGGERS = ("oauthlib.oauth1.rfc5849", "oauthlib.oauth1.rfc5849.signature",
                     "oauthlib.oauth1.rfc5849.endpoints.base", "oauthlib.oauth1.rfc5849.endpoints.resource")


class _NoCredentialDebug(logging.Filter):
    """Drops oauthlib's debug records: they quote the consumer key, token id and base string."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


for _name in _OAUTHLIB_LOGGERS:
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _NoCredentialDebug) for f in _logger.filters):
        _logger.addFilter(_NoCredentialDebug())
SCOPES = ["rest_webservices"]


class TokenBasedAuth(httpx.Auth):
    """Signs each request with OAuth 1.0a HMAC-SHA256 in the ``Authorization`` header.

    NetSuite signs the method, the URL and its query parameters, never a JSON body; the
    realm is the account id.
    """

    def __init__(self, config: NetSuiteConfig) -> None:
        assert config.consumer_key and config.consumer_secret and config.token_id and config.token_secret
        self._client = Client(
            config.consumer_key.get_secret_value(),
            client_secret=config.consumer_secret.get_secret_value(),
            resource_owner_key=config.token_id.get_secret_value(),
            resource_owner_secret=config.token_secret.get_secret_value(),
            signature_method=SIGNATURE_HMAC_SHA256,
            realm=config.realm,
        )

    def __repr__(self) -> str:
        return "TokenBasedAuth(**********)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        _, headers, _ = self._client.sign(str(request.url), http_method=request.method)
        request.headers["Authorization"] = headers["Authorization"]
        yield request


class ClientCredentialsAuth(httpx.Auth):
    """OAuth 2.0 client credentials with a signed JWT assertion (NetSuite's M2M flow).

    The token (valid an hour) is fetched on first use and again shortly before it
    expires, or after a 401.
    """

    def __init__(self, config: NetSuiteConfig, token_url: str) -> None:
        assert config.client_id and config.private_key and config.certificate_id
        self._config = config
        self._token_url = token_url
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:
        return "ClientCredentialsAuth(**********)"

    def assertion(self, now: float | None = None) -> str:
        """The JWT NetSuite exchanges for an access token."""
        import jwt

        cfg = self._config
        assert cfg.client_id and cfg.private_key
        issued = int(now if now is not None else time.time())
        claims = {"iss": cfg.client_id.get_secret_value(), "scope": SCOPES, "aud": self._token_url,
                  "iat": issued, "exp": issued + 3600, "jti": uuid.uuid4().hex}
        try:
            return jwt.encode(claims, cfg.private_key.get_secret_value(), algorithm=cfg.jwt_algorithm,
                              headers={"kid": cfg.certificate_id, "typ": "JWT"})
        except (ValueError, TypeError, jwt.PyJWTError) as err:
            raise ConfigError(
                f"NetSuite: cannot sign the OAuth 2.0 assertion with private_key ({type(err).__name__})",
                fix="give private_key as the PEM private key (RSA for PS256/RS256, EC P-256 for ES256) whose "
                "certificate you uploaded in Setup > Integration > OAuth 2.0 Client Credentials (M2M) Setup",
            ) from None

    def _fetch(self) -> Generator[httpx.Request, httpx.Response, None]:
        form = {"grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self.assertion()}
        response = yield httpx.Request("POST", self._token_url, data=form)
        response.read()
        if response.status_code != 200:
            # Never go on with no token (NetSuite would answer 401, read as bad credentials): a 429
            # or 5xx from the token endpoint is transient and retried, a refusal names the settings.
            raise not_sent(token_error(response))
        try:
            doc: dict[str, Any] = exact_json.loads(response.content)
            token = str(doc["access_token"])
        except (ValueError, KeyError, TypeError):
            raise not_sent(SystemFailure(
                f"NetSuite: the OAuth 2.0 token endpoint answered without an access token "
                f"({vendor_detail(response.content) or 'an empty body'})",
                fix="check base_url points at the account's REST services (…/services/rest/auth/oauth2/v1/token)",
            )) from None
        register_secret(token)
        self._token = token
        self._expires = time.monotonic() + int(doc.get("expires_in", 3600)) - 60

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            fresh = self._token is None or time.monotonic() >= self._expires
        if fresh:
            yield from self._fetch()
        request.headers["Authorization"] = f"Bearer {self._token or 'invalid'}"
        response = yield request
        if response.status_code == 401 and not fresh:
            yield from self._fetch()
            request.headers["Authorization"] = f"Bearer {self._token or 'invalid'}"
            yield request


OAUTH_REFUSALS = frozenset({"invalid_client", "invalid_grant", "unauthorized_client", "invalid_scope",
                            "invalid_request", "unsupported_grant_type", "access_denied"})


def token_error(response: httpx.Response) -> SubledgerError:
    """The error for a failed token request: transient for a 429 or 5xx whatever its body; a
    credential refusal (NetSuite's OAuth ``error``) names the settings to check."""
    err = error_for_status(response.status_code, headers=response.headers, body=response.content,
                           operation="NetSuite: POST OAuth 2.0 token")
    try:
        code = exact_json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        code = None
    if isinstance(err, ConfigError):
        if isinstance(code, str) and code in OAUTH_REFUSALS:
            err.fix = ("check the credentials: client_id, certificate_id and private_key (the key whose certificate "
                       "is uploaded in "
                       "Setup > Integration > OAuth 2.0 Client Credentials (M2M) Setup) and the role's "
                       "rest_webservices access")
        elif response.status_code in (401, 403):
            err.fix = ("the refusal is not NetSuite's OAuth error: check account_id and base_url, and any proxy "
                       "between subledger and NetSuite; then client_id, certificate_id and private_key")
    return err


def auth_for(config: NetSuiteConfig) -> httpx.Auth:
    """The auth flow the config asks for."""
    if config.auth == "oauth2":
        return ClientCredentialsAuth(config, config.api_base + TOKEN_PATH)
    return TokenBasedAuth(config)
