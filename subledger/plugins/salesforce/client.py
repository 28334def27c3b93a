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
import logging
import re
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from subledger.core.errors import ConfigError, SubledgerError, SystemFailure, TransientError
from subledger.core.http import current_policy, error_for_status, parse_retry_after, retry_call
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
                transport.local.headers = dict(response.headers)
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
    def last_headers(self) -> dict[str, str]:
        return getattr(self.local, "headers", {}) or {}


def _error_detail(content: Any) -> tuple[str, str]:
    """``(errorCode, message)`` of a Salesforce error body."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode") or ""), str(content[0].get("message") or "")
    if isinstance(content, dict):
        return str(content.get("errorCode") or content.get("error") or ""), str(
            content.get("message") or content.get("error_description") or "")
    return "", str(content or "")[:500]


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
            flow = self.config.auth_flow
            fix = {
                "password": "check username, password and security_token (Setup > Reset My Security Token); "
                "domain must be test for a Salesforce sandbox org",
                "oauth_password": "check username, password, consumer_key and consumer_secret of the connected app",
                "jwt": "check consumer_key, username and the private key; the connected app must hold the matching "
                "certificate and the user must be pre-authorized",
            }[flow]
            return ConfigError(redact(f"{where} failed: Salesforce refused the login: {exc.code}: {exc.message}"),
                               fix=fix)
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
            err = error_for_status(exc.status, headers=headers, body=detail, operation=where,
                                   now=current_policy().now())
            if code == "INVALID_FIELD" or code == "INVALID_TYPE":
                err.fix = ("create the field (docs/connectors/salesforce.md lists the fields and their types) and "
                           "give the integration user read access to it, or remove it from the mapping file")
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
        return None

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
        request (an API limit) is retried.
        """
        body = {"allOrNone": all_or_none, "compositeRequest": requests}
        result = self.call("composite request", lambda: self.sf.restful("composite", method="POST", json=body),
                           retry_if=lambda err: "REQUEST_LIMIT_EXCEEDED" in err.message)
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
