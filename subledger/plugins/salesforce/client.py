"""``simple-salesforce``, wrapped with subledger's retries, limits and transport.

Every call goes through :func:`subledger.core.http.retry_call`. Salesforce reports an
exhausted API allowance as ``403 REQUEST_LIMIT_EXCEEDED`` (it has no 429): that is a rate
limit here, retried after ``Retry-After`` when given, else with backoff; the org's daily
allowance running out ("TotalRequests Limit exceeded") is handed to the scheduler to come
back in an hour. Each response's ``Sforce-Limit-Info`` is watched, and reading stops
(transiently) once the configured share of the daily allowance is used.

The SDK always speaks https to ``*.salesforce.com``; :class:`_Transport` (a ``requests``
adapter) applies the per-request timeout and, when ``base_url`` is set, sends every
request there instead (a local sandbox at ``http://127.0.0.1:PORT``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from subledger.core.errors import ConfigError, SubledgerError, SystemFailure, TransientError
from subledger.core.http import (
    current_policy,
    error_for_status,
    is_transient_status,
    parse_retry_after,
    retry_call,
    vendor_detail,
)
from subledger.core.secrets import redact, register_secret
from subledger.plugins.salesforce.config import SalesforceConfig

T = TypeVar("T")
log = logging.getLogger(__name__)

_INSTALL_FIX = "install the Salesforce extra: pip install 'subledger[salesforce]'"
_LIMIT = re.compile(r"api-usage=(\d+)/(\d+)")
DAILY_LIMIT_RETRY_SECONDS = 3600.0


def _requests() -> Any:
    import requests

    return requests


def _sdk() -> Any:
    try:
        import simple_salesforce
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigError("the Salesforce connector needs simple-salesforce, which is not installed",
                          fix=_INSTALL_FIX) from None
    return simple_salesforce


class _Transport:
    """A ``requests`` adapter factory: default timeout, optional redirection, limit watching."""

    def __init__(self, config: SalesforceConfig) -> None:
        requests = _requests()
        transport = self
        self.local = threading.local()
        self.usage: tuple[int, int] | None = None

        class Adapter(requests.adapters.HTTPAdapter):  # type: ignore[misc, name-defined]
            def send(self, request: Any, **kwargs: Any) -> Any:
                if kwargs.get("timeout") is None:
                    kwargs["timeout"] = config.timeout_seconds
                if config.base_url:
                    target = urlsplit(config.base_url)
                    parts = urlsplit(request.url)
                    request.url = urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))
                response = super().send(request, **kwargs)
                transport.local.headers = requests.structures.CaseInsensitiveDict(response.headers)
                transport.local.status = response.status_code
                # An error's body, for when the SDK cannot read it (a proxy's page) and fails on it.
                transport.local.body = response.content[:65536] if response.status_code >= 400 else b""
                info = response.headers.get("Sforce-Limit-Info") or ""
                if m := _LIMIT.search(info):
                    transport.usage = (int(m.group(1)), int(m.group(2)))
                return response

        self.adapter = Adapter()

    def session(self) -> Any:
        session = _requests().Session()
        session.mount("https://", self.adapter)
        session.mount("http://", self.adapter)
        return session

    @property
    def last_headers(self) -> Any:
        """The headers of the last answer this thread received (case-insensitive)."""
        return getattr(self.local, "headers", None) or _requests().structures.CaseInsensitiveDict()

    @property
    def last_status(self) -> int | None:
        """The status of the last answer this thread received (None: none since :meth:`forget`)."""
        return getattr(self.local, "status", None)

    @property
    def last_body(self) -> bytes:
        """The body of the last error answer this thread received."""
        return getattr(self.local, "body", b"") or b""

    def forget(self) -> None:
        self.local.headers, self.local.status, self.local.body = {}, None, b""


def _error_detail(content: Any) -> tuple[str, str]:
    """``(errorCode, message)`` of a Salesforce error body, or ``("", gist)`` of any other body.

    Salesforce answers a list of ``{"errorCode", "message"}``; a proxy or gateway in front of
    it may answer anything (an HTML page, ``{"error": "..."}``, text, nothing), which gives
    no code and the gist of the body (an HTML page's title, not its markup).
    """
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode") or ""), str(content[0].get("message") or "")
    if isinstance(content, dict):
        code = content.get("errorCode")
        message = content.get("message") or content.get("error_description")
        return (code if isinstance(code, str) else ""), (str(message) if message else vendor_detail(content))
    return "", vendor_detail(content)


# The codes with which Salesforce refuses a login's credentials (SOAP exceptionCode, OAuth error).
CREDENTIAL_REFUSALS = frozenset({
    "INVALID_LOGIN", "LOGIN_MUST_USE_SECURITY_TOKEN", "INVALID_OPERATION_WITH_EXPIRED_PASSWORD", "PASSWORD_LOCKOUT",
    "API_DISABLED_FOR_ORG", "API_CURRENTLY_DISABLED", "INVALID_SSO_GATEWAY_URL", "LOGIN_DURING_RESTRICTED_DOMAIN",
    "LOGIN_DURING_RESTRICTED_TIME", "ORG_LOCKED", "INACTIVE_USER", "INVALID_AUTH", "INVALID AUTH",
    "INVALID_GRANT", "INVALID_CLIENT", "INVALID_CLIENT_ID", "INVALID_CLIENT_CREDENTIALS", "UNAUTHORIZED_CLIENT",
    "UNSUPPORTED_GRANT_TYPE", "INVALID_APP_ACCESS", "INACTIVE_ORG", "INVALID_SCOPE", "INVALID_REQUEST",
})
# Codes with which a login is refused for now, not for its credentials.
TRANSIENT_LOGIN_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE", "TEMPORARILY_UNAVAILABLE",
                                   "LOGIN_RATE_EXCEEDED", "UNKNOWN_EXCEPTION"})


class SalesforceApi:
    """One Salesforce org through ``simple-salesforce``.

    Args:
        config: the connection's config.
        name: the connection name, for messages.
    """

    def __init__(self, config: SalesforceConfig, *, name: str = "salesforce") -> None:
        self.config = config
        self.name = name
        self.transport = _Transport(config)
        self._sf: Any = None

    def __repr__(self) -> str:
        return f"SalesforceApi(connection={self.name!r}, domain={self.config.domain!r})"

    # -- login --------------------------------------------------------------------------------

    @property
    def sf(self) -> Any:
        """The logged-in ``simple_salesforce.Salesforce`` (logs in on first use)."""
        if self._sf is None:
            self._sf = self.call("log in", self._login, watch_limits=False)
        return self._sf

    def _login(self) -> Any:
        sdk = _sdk()
        c = self.config
        common = {"session": self.transport.session(), "domain": c.domain, "version": c.api_version,
                  "parse_float": Decimal, "object_pairs_hook": dict}
        if c.auth_flow == "jwt":
            key = c.private_key.get_secret_value() if c.private_key is not None else None
            sf = sdk.Salesforce(username=c.username, consumer_key=c.consumer_key, privatekey=key,
                                privatekey_file=None if key else c.private_key_file, **common)
        elif c.auth_flow == "oauth_password":
            assert c.password is not None and c.consumer_secret is not None
            sf = sdk.Salesforce(username=c.username, password=c.password.get_secret_value(),
                                consumer_key=c.consumer_key, consumer_secret=c.consumer_secret.get_secret_value(),
                                **common)
        else:
            assert c.password is not None and c.security_token is not None
            sf = sdk.Salesforce(username=c.username, password=c.password.get_secret_value(),
                                security_token=c.security_token.get_secret_value(), **common)
        register_secret(sf.session_id)  # an access token: masked in logs and errors from now on
        return sf

    # -- calls --------------------------------------------------------------------------------

    def classify(self, exc: BaseException, operation: str) -> SubledgerError | None:
        """Map an SDK or ``requests`` exception to a subledger error (None: not ours)."""
        sdk = _sdk()
        requests = _requests()
        where = f"{self.name}: {operation}"
        if isinstance(exc, sdk.SalesforceAuthenticationFailed):
            return self._login_error(exc, where)
        if isinstance(exc, sdk.SalesforceError):
            code, message = _error_detail(exc.content)
            headers = self.transport.last_headers
            detail = redact(f"{code}: {message}" if code else message)
            if exc.status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
                daily = "TotalRequests" in message
                after = parse_retry_after(headers.get("Retry-After"), now=current_policy().now())
                return TransientError(
                    f"{where} failed: HTTP 403 {detail} (a Salesforce API limit)",
                    fix="nothing to change; subledger comes back when the org's API allowance allows"
                    if daily else "nothing to change; subledger retries",
                    retry_after=after if after is not None else (DAILY_LIMIT_RETRY_SECONDS if daily else None),
                )
            # No errorCode: not Salesforce's error document (a proxy's page, a gateway's JSON, nothing).
            ours = bool(code)
            err = error_for_status(exc.status, headers=headers, body=detail, operation=where,
                                   now=current_policy().now(), vendor_error=ours)
            if code == "INVALID_FIELD" or code == "INVALID_TYPE":
                err.fix = ("create the field (docs/connectors/salesforce.md lists the fields and their types) and "
                           "give the integration user read access to it, or remove it from the mapping file")
            elif not ours:
                pass
            elif exc.status == 401:
                err.fix = "check the credentials; the integration user needs the API Enabled permission"
            elif exc.status == 403:
                err.fix = ("give the integration user the permissions listed in docs/connectors/salesforce.md "
                           "(API Enabled, read on the objects, edit on the write-back fields)")
            return err
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return TransientError(redact(f"{where} failed: could not reach Salesforce ({type(exc).__name__})"),
                                  fix="check the network and domain/base_url; subledger retries, or run it again")
        if isinstance(exc, getattr(sdk, "SalesforceOperationError", ())):
            return SystemFailure(redact(f"{where} failed: {exc}"), fix="look at the Bulk job in Setup > Bulk Data "
                                 "Load Jobs; run the sync again")
        status = self.transport.last_status
        if status is not None and status >= 400:
            # The SDK failed reading an error answer that is not Salesforce's (it reads a 401's body as
            # Salesforce's JSON list): classify the answer itself.
            body = self.transport.last_body
            try:
                code, _ = _error_detail(json.loads(body))
            except ValueError:
                code = ""
            return error_for_status(status, headers=self.transport.last_headers, body=body, operation=where,
                                    now=current_policy().now(), vendor_error=bool(code))
        return None

    def _login_error(self, exc: Any, where: str) -> SubledgerError:
        """A failed login, classified by what Salesforce (or what answered for it) said.

        simple-salesforce raises ``SalesforceAuthenticationFailed`` for every failed login,
        whatever the cause, with the SOAP fault's ``exceptionCode`` or the OAuth ``error`` as
        its code, or the HTTP status when the body was neither (a proxy's page). Only
        Salesforce's own refusal of the credentials (``INVALID_LOGIN``, ``invalid_grant``...)
        says to check them; a 429 or 5xx, or a refusal for now (``REQUEST_LIMIT_EXCEEDED``),
        is transient and retried.
        """
        raw_code = "" if exc.code is None else str(exc.code)
        text = str(getattr(exc, "auth_message", "") or "")  # never exc.message: an unformatted template
        status = self.transport.last_status
        if raw_code.isdigit():  # the body was not Salesforce's: simple-salesforce passed the status on
            status = status or int(raw_code)
            raw_code = ""
            try:
                code, message = _error_detail(json.loads(text))  # a REST-style error document, perhaps
            except ValueError:
                code, message = "", vendor_detail(text)
        else:
            code, message = raw_code.removeprefix("sf:"), vendor_detail(text)
        upper = code.upper()
        detail = redact(f"{code}: {message}" if code and message else code or message or "no message")
        if upper in CREDENTIAL_REFUSALS:
            fix = {
                "password": "check username, password and security_token (Setup > Reset My Security Token); "
                "domain must be test for a Salesforce sandbox org",
                "oauth_password": "check username, password, consumer_key and consumer_secret of the connected app",
                "jwt": "check consumer_key, username and the private key; the connected app must hold the matching "
                "certificate and the user must be pre-authorized",
            }[self.config.auth_flow]
            err: SubledgerError = ConfigError(f"{where} failed: Salesforce refused the login: {detail}", fix=fix)
        elif upper in TRANSIENT_LOGIN_CODES or (status is not None and is_transient_status(status)):
            after = parse_retry_after(self.transport.last_headers.get("Retry-After"), now=current_policy().now())
            shown = f"HTTP {status}: " if status else ""
            err = TransientError(f"{where} failed: Salesforce could not log in now ({shown}{detail})",
                                 fix="nothing to change: the login service is busy or unavailable; subledger "
                                 "retries, or run it again later", retry_after=after)
        else:
            shown = f"HTTP {status}: " if status else ""
            err = ConfigError(
                f"{where} failed: the login was refused ({shown}{detail})",
                fix="check domain (login, test or your My Domain) and base_url, and any proxy between subledger "
                "and Salesforce; then the credentials" if not code else
                "correct what Salesforce's message names in the connection's login settings",
            )
        if status is not None:
            err.http_status = status  # type: ignore[attr-defined]
        return err

    def _check_usage(self, operation: str) -> None:
        usage = self.transport.usage
        if usage is None or usage[1] <= 0:
            return
        used, total = usage
        if used * 100 >= total * self.config.api_usage_stop_percent:
            raise TransientError(
                f"{self.name}: {operation} not started: the org has used {used} of its {total} daily API requests "
                f"(Sforce-Limit-Info), at or above api_usage_stop_percent {self.config.api_usage_stop_percent}",
                fix="nothing to change: subledger comes back later; raise api_usage_stop_percent to use more",
                retry_after=DAILY_LIMIT_RETRY_SECONDS,
            )

    def call(self, operation: str, fn: Callable[[], T], *, watch_limits: bool = True,
             retry_if: Callable[[SubledgerError], bool] | None = None) -> T:
        """Run one SDK call with retries; refuses to start past the API usage threshold.

        An expired session (``401 INVALID_SESSION_ID``) logs in again once and repeats the
        call: the SDK does that for REST calls, not for Bulk API 2.0 ones.
        """
        if watch_limits:
            self._check_usage(operation)
        sdk = _sdk()

        def once_more_after_login() -> T:
            self.transport.forget()
            try:
                return fn()
            except sdk.SalesforceExpiredSession as exc:
                if _error_detail(exc.content)[0] != "INVALID_SESSION_ID" or self._sf is None:
                    raise
                log.info("%s: the Salesforce session expired; logging in again", self.name)
                self._sf = None
                self.sf  # noqa: B018 - logs in
                return fn()

        return retry_call(once_more_after_login, classify=lambda exc: self.classify(exc, operation),
                          operation=f"{self.name}: {operation}", retry_if=retry_if)

    @property
    def api_usage(self) -> tuple[int, int] | None:
        """``(used, allowance)`` from the last ``Sforce-Limit-Info`` seen."""
        return self.transport.usage

    # -- queries ------------------------------------------------------------------------------

    def count(self, soql_from: str) -> int:
        """``SELECT COUNT() FROM ...``: how many records a read would return."""
        result = self.call("count records", lambda: self.sf.query(f"SELECT COUNT() {soql_from}"))
        return int(result["totalSize"])

    def query(self, soql: str, *, deleted: bool = False) -> Iterator[dict[str, Any]]:
        """Every record of a REST query, page by page (``nextRecordsUrl``)."""
        headers = {"Sforce-Query-Options": f"batchSize={self.config.batch_size}"}
        op = "query" + (" (queryAll)" if deleted else "")
        page = self.call(op, lambda: self.sf.query(soql, include_deleted=deleted, headers=headers))
        while True:
            for record in page["records"]:
                record.pop("attributes", None)
                yield record
            if page.get("done", True):
                return
            url = page["nextRecordsUrl"]
            page = self.call(op, lambda u=url: self.sf.query_more(u, identifier_is_url=True, headers=headers))

    def bulk_query(self, sobject: str, soql: str, types: dict[str, str], *, deleted: bool = False
                   ) -> Iterator[dict[str, Any]]:
        """Every record of a Bulk API 2.0 query job, CSV pages typed by ``types`` (describe types)."""
        from simple_salesforce.bulk2 import Operation

        def client() -> Any:  # built from the current session (a re-login replaces it)
            return getattr(self.sf.bulk2, sobject)._client

        operation = Operation.query_all if deleted else Operation.query
        job = self.call("create Bulk query job", lambda: client().create_job(operation, soql))
        job_id = job["id"]
        policy = current_policy()
        waited = 0.0
        while True:
            info = self.call("poll Bulk query job", lambda: client().get_job(job_id, True))
            state = info.get("state")
            if state == "JobComplete":
                break
            if state in ("Failed", "Aborted"):
                raise SystemFailure(f"{self.name}: Bulk query job {job_id} {state.lower()}: "
                                    f"{redact(str(info.get('errorMessage') or ''))}",
                                    fix="look at the job in Setup > Bulk Data Load Jobs; run the sync again")
            if waited >= self.config.bulk_timeout_seconds:
                raise TransientError(f"{self.name}: Bulk query job {job_id} still {state} after {waited:.0f}s",
                                     fix="run the sync again later, or raise bulk_timeout_seconds")
            policy.sleep(self.config.bulk_poll_seconds)
            waited += self.config.bulk_poll_seconds
        locator = ""
        while True:
            page = self.call("read Bulk query results",
                             lambda loc=locator: client().get_query_results(job_id, loc,
                                                                           self.config.bulk_page_records))
            for row in csv.DictReader(io.StringIO(page["records"])):
                yield {name: _typed(value, types.get(name, "string")) for name, value in row.items()}
            locator = page["locator"]
            if not locator:
                return

    def describe(self, sobject: str) -> dict[str, Any]:
        """The object's describe (fields and their types)."""
        return self.call(f"describe {sobject}", lambda: self.sf.restful(f"sobjects/{sobject}/describe"))

    def composite(self, requests: list[dict[str, Any]], *, all_or_none: bool = True) -> list[dict[str, Any]]:
        """One ``composite`` call; returns the subresponses.

        Not resent after a failure that may have reached Salesforce (a dropped connection, a
        5xx): the outcome is unknown, and the engine settles it with ``find``. Only a refused
        request (an API limit, or a 429 from whatever answered) is retried.
        """
        body = {"allOrNone": all_or_none, "compositeRequest": requests}
        result = self.call("composite request", lambda: self.sf.restful("composite", method="POST", json=body),
                           retry_if=lambda err: "REQUEST_LIMIT_EXCEEDED" in err.message
                           or getattr(err, "http_status", None) == 429)
        return list(result["compositeResponse"])

    @property
    def data_path(self) -> str:
        """``/services/data/vNN.0`` (composite subrequest URLs start with it)."""
        return f"/services/data/v{self.config.api_version}"


def _typed(value: str, kind: str) -> Any:
    """A Bulk CSV cell as the REST API would give it (empty = null)."""
    if value == "":
        return None
    if kind in ("currency", "double", "int", "percent"):
        return Decimal(value)
    if kind == "boolean":
        return value.lower() == "true"
    return value
