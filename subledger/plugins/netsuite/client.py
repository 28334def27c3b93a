"""The REST client: record service (get, upsert by external id, patch) and SuiteQL paging.

Every request goes through the shared :class:`~subledger.core.http.HttpClient` (retries,
classification, redaction) over a :class:`GovernedTransport` (the concurrency pool).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from subledger.core.errors import ConfigError, SubledgerError, SystemFailure
from subledger.core.http import HttpClient, http_status, vendor_detail
from subledger.plugins.netsuite import exact_json
from subledger.plugins.netsuite.auth import auth_for
from subledger.plugins.netsuite.config import NetSuiteConfig
from subledger.plugins.netsuite.governance import GovernedTransport, error_codes, error_details

RECORD = "/services/rest/record/v1"
SUITEQL = "/services/rest/query/v1/suiteql"
JSON = "application/json"


def eid(external_id: str) -> str:
    """The path segment that addresses a record by its external id."""
    return "eid:" + quote(external_id, safe="")


class NetSuiteClient:
    """One NetSuite account's REST services."""

    def __init__(self, config: NetSuiteConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.transport = GovernedTransport(config.max_concurrency, transport)
        self.http = HttpClient(
            config.api_base, auth=auth_for(config), timeout=config.timeout_seconds,
            transport=self.transport, name="NetSuite",
            headers={"Accept": JSON}, refine=self._refine,
        )

    def __repr__(self) -> str:
        return f"NetSuiteClient(account={self.config.account_id!r})"

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, url: str, *, body: Any = None, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, idempotent: bool | None = None) -> httpx.Response:
        data = None
        all_headers = dict(headers or {})
        if body is not None:
            data = exact_json.dumps(body).encode()
            all_headers["Content-Type"] = JSON
        with warnings.catch_warnings():
            # Raw bytes keep Decimal amounts exact; HttpClient has no content= parameter yet.
            warnings.filterwarnings("ignore", message="Use 'content=", category=DeprecationWarning)
            return self.http.request(method, url, params=params, data=data, headers=all_headers,
                                     idempotent=idempotent)

    def _refine(self, response: httpx.Response, err: SubledgerError) -> SubledgerError:
        """Tell NetSuite's own refusal of the credentials from a proxy's 401/403 page."""
        if response.status_code not in (401, 403) or not isinstance(err, ConfigError):
            return err
        try:
            body = exact_json.loads(response.content)
        except ValueError:
            body = None
        codes = error_codes(body)
        if not error_details(body):
            err.fix = ("the refusal is not NetSuite's error document: check account_id and base_url, and any proxy "
                       "between subledger and NetSuite; then the credentials")
        elif response.status_code == 401 or "INVALID_LOGIN" in codes:
            err.fix = (
                "check the credentials: consumer_key, consumer_secret, token_id and token_secret (the access token "
                "must belong to this account_id and its role must have REST Web Services)"
                if self.config.auth == "tba" else
                "check the credentials: client_id, certificate_id and private_key; the mapped role must have REST "
                "Web Services")
        else:
            err.fix = "give the integration role the permission NetSuite names (docs/connectors/netsuite.md)"
        return err

    # -- records ----------------------------------------------------------------------------

    def get(self, record_type: str, record_id: str) -> dict[str, Any] | None:
        """A record with its sublists, by internal id or ``eid:<external id>``; None if absent."""
        try:
            response = self._send("GET", f"{RECORD}/{record_type}/{record_id}",
                                  params={"expandSubResources": "true"})
        except SubledgerError as err:
            if http_status(err) == 404:
                return None
            raise
        record = _document(response)
        if not isinstance(record, dict):
            raise SystemFailure(f"NetSuite: GET {record_type}/{record_id} answered {type(record).__name__}, "
                                "not a record", fix="check base_url points at the account's REST web services")
        return record

    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> str:
        """Create or replace the record with this external id (``PUT .../eid:<id>``); its internal id.

        PUT is idempotent, so a retry after a lost answer updates the same record.
        """
        response = self._send("PUT", f"{RECORD}/{record_type}/{eid(external_id)}", body=body)
        return _location_id(response)

    def patch(self, record_type: str, record_id: str, body: dict[str, Any]) -> None:
        """Change some fields of a record."""
        self._send("PATCH", f"{RECORD}/{record_type}/{record_id}", body=body, idempotent=True)

    # -- SuiteQL ------------------------------------------------------------------------------

    def suiteql(self, query: str, *, page_size: int | None = None, offset: int = 0
                ) -> Iterator[tuple[list[dict[str, Any]], int, bool]]:
        """Run a SuiteQL query page by page: (rows, next offset, has more).

        A SuiteQL POST is a read, so it is retried like a GET.
        """
        limit = page_size or self.config.page_size
        while True:
            response = self._send("POST", SUITEQL, body={"q": query}, params={"limit": limit, "offset": offset},
                                  headers={"Prefer": "transient"}, idempotent=True)
            doc = _document(response)
            if not isinstance(doc, dict):
                raise SystemFailure("NetSuite: SuiteQL answered something other than a result page",
                                    fix="check base_url points at the account's REST web services")
            rows = [{k: v for k, v in item.items() if k != "links"} for item in doc.get("items") or []
                    if isinstance(item, dict)]
            offset += len(rows)
            has_more = bool(doc.get("hasMore"))
            yield rows, offset, has_more
            if not has_more or not rows:
                return


def _document(response: httpx.Response) -> Any:
    """The JSON of a successful answer; a SystemFailure naming what came instead (a proxy's page)."""
    try:
        return exact_json.loads(response.content)
    except ValueError:
        raise SystemFailure(
            f"NetSuite: {response.request.method} {response.request.url.path} answered HTTP {response.status_code} "
            f"with {response.headers.get('content-type') or 'no content type'}, not JSON "
            f"({vendor_detail(response.content) or 'an empty body'})",
            fix="check base_url points at the account's REST web services, not a web page or a proxy's",
        ) from None


def _location_id(response: httpx.Response) -> str:
    location = response.headers.get("Location", "")
    record_id = location.rstrip("/").rsplit("/", 1)[-1]
    if not record_id:
        raise ConfigError(
            f"NetSuite answered {response.request.method} {response.request.url.path} without a Location header",
            fix="check base_url points at the REST web services (…/services/rest)",
        )
    return record_id
