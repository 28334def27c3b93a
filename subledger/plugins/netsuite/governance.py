"""Governance: NetSuite limits requests in flight per account, not requests per second.

:class:`GovernedTransport` is the httpx transport under the connector's ``HttpClient``:

* a semaphore of ``max_concurrency`` slots bounds the requests in flight from this
  connector (every thread shares it), so a parallel read never exceeds the pool;
* NetSuite refuses a request over the account's limit with HTTP 429, or with HTTP 400
  and ``o:errorCode`` ``CONCURRENCY_LIMIT_EXCEEDED`` (older endpoints); both mean "nothing
  ran, come back shortly". The 400 form is presented as a 429, so the shared retry
  layer backs off and retries it like any rate limit (POSTs included: nothing ran);
* NetSuite's error document keeps its message in ``o:errorDetails``; it is lifted to a
  top-level ``detail`` so errors quote NetSuite's own words and error code.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from subledger.plugins.netsuite import exact_json

CONCURRENCY_CODES = frozenset({"CONCURRENCY_LIMIT_EXCEEDED", "CONCURRENT_REQUEST_LIMIT_EXCEEDED"})


def error_details(body: Any) -> list[dict[str, Any]]:
    """The ``o:errorDetails`` of a NetSuite error document (empty when there are none)."""
    if not isinstance(body, dict):
        return []
    details = body.get("o:errorDetails")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def error_codes(body: Any) -> set[str]:
    """The ``o:errorCode`` values of an error document."""
    return {str(d.get("o:errorCode")) for d in error_details(body) if d.get("o:errorCode")}


class GovernedTransport(httpx.BaseTransport):
    """Bounds requests in flight and normalises NetSuite's error documents."""

    def __init__(self, max_concurrency: int, inner: httpx.BaseTransport | None = None) -> None:
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._inner = inner or httpx.HTTPTransport()
        self._gauge = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._slots:
            with self._gauge:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                response = self._inner.handle_request(request)
                # Read inside the slot: the request occupies NetSuite until its body is sent.
                content = response.read()
            finally:
                with self._gauge:
                    self.in_flight -= 1
        if response.status_code < 400:
            return response
        return _normalised_error(response, content, request)

    def close(self) -> None:
        self._inner.close()


def _normalised_error(response: httpx.Response, content: bytes, request: httpx.Request) -> httpx.Response:
    try:
        body = exact_json.loads(content)
    except ValueError:
        return response
    details = error_details(body)
    if not details:
        return response
    status = response.status_code
    if error_codes(body) & CONCURRENCY_CODES:
        status = 429
    first = details[0]
    body = {**body, "detail": f"{first.get('detail', '')} [{first.get('o:errorCode', '')}]".strip()}
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")]
    return httpx.Response(status, headers=headers, content=exact_json.dumps(body).encode(), request=request)
