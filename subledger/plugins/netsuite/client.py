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

from subledger.core.errors import ConfigError, SubledgerError
from subledger.core.http import HttpClient, http_status
from subledger.plugins.netsuite import exact_json
from subledger.plugins.netsuite.auth import auth_for
from subledger.plugins.netsuite.config import NetSuiteConfig
from subledger.plugins.netsuite.governance import GovernedTransport

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
            headers={"Accept": JSON},
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
        return exact_json.loads(response.content)

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
            doc = exact_json.loads(response.content)
            rows = [{k: v for k, v in item.items() if k != "links"} for item in doc.get("items", [])]
            offset += len(rows)
            has_more = bool(doc.get("hasMore"))
            yield rows, offset, has_more
            if not has_more or not rows:
                return


def _location_id(response: httpx.Response) -> str:
    location = response.headers.get("Location", "")
    record_id = location.rstrip("/").rsplit("/", 1)[-1]
    if not record_id:
        raise ConfigError(
            f"NetSuite answered {response.request.method} {response.request.url.path} without a Location header",
            fix="check base_url points at the REST web services (…/services/rest)",
        )
    return record_id
