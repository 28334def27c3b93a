"""The official ``stripe`` SDK, wrapped with subledger's retries and a per-account limit.

The SDK's own retries are off (``max_network_retries=0``): every call goes through
:func:`subledger.core.http.retry_call`, which retries rate limits, server errors and
dropped connections with capped, jittered backoff, honours ``Retry-After``, and reports
failures as config, transient or system errors. Stripe's ``Stripe-Should-Retry`` header
overrides the status: ``false`` is never retried, ``true`` always is. Writes carry an
explicit ``Idempotency-Key``, so a retried POST can never act twice.

At most ``max_concurrency`` requests per Stripe account are in flight across every
connector instance of the process (Stripe limits per account, not per client).

Errors are classified at this boundary whatever their body. A proxy or gateway in front of
Stripe answers in its own shape (an HTML page, ``{"error": "..."}``, plain text, nothing),
which the SDK does not expect: it raises an ``APIError`` without the response headers, or
fails inside its own error handling (``AttributeError`` in ``specific_v1_api_error``). The
SDK's HTTP client is therefore wrapped (:class:`_RecordingClient`) so the status, headers
and body of the last answer on this thread are known, and the failure is classified from
them: a 429 or 5xx is retried (its ``Retry-After`` honoured), and only Stripe's own 401/403
error says to check the key.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from subledger.core.errors import ConfigError, SubledgerError, SystemFailure, TransientError
from subledger.core.http import current_policy, error_for_status, parse_retry_after, retry_call, vendor_detail
from subledger.core.secrets import redact
from subledger.plugins.stripe.config import StripeConfig

T = TypeVar("T")

_INSTALL_FIX = "install the Stripe extra: pip install 'subledger[stripe]'"


def _sdk() -> Any:
    try:
        import stripe
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigError("the Stripe connector needs the stripe SDK, which is not installed",
                          fix=_INSTALL_FIX) from None
    return stripe


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if key.lower() == name.lower():
            return str(value)
    return None


@dataclass(frozen=True)
class Answer:
    """The status, headers and body of an HTTP answer the SDK received."""

    status: int
    headers: dict[str, str]
    body: bytes


class _RecordingClient:
    """Wraps the SDK's HTTP client and remembers, per thread, the last answer it received.

    Every other attribute is the wrapped client's, so the SDK sees the client it was given.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def last(self) -> Answer | None:
        return getattr(self._local, "answer", None)

    def forget(self) -> None:
        self._local.answer = None

    def _remember(self, response: Any, *, stream: bool = False) -> Any:
        content, status, headers = response
        body = b""
        if isinstance(status, int) and status >= 400 and not stream:  # a stream is left for the SDK to read
            body = content if isinstance(content, bytes) else str(content or "").encode()
        self._local.answer = Answer(status, dict(headers or {}), bytes(body)[:65536])
        return response

    def request_with_retries(self, *args: Any, **kwargs: Any) -> Any:
        self.forget()
        return self._remember(self._inner.request_with_retries(*args, **kwargs))

    def request_stream_with_retries(self, *args: Any, **kwargs: Any) -> Any:
        self.forget()
        return self._remember(self._inner.request_stream_with_retries(*args, **kwargs), stream=True)


def _stripe_shaped(body: Any) -> bool:
    """Whether a response body is Stripe's own error document (``{"error": {"message": ...}}``)."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def classify_stripe_error(exc: BaseException, *, operation: str = "Stripe call",
                          answer: Answer | None = None) -> SubledgerError | None:
    """Map a Stripe SDK exception to a subledger error (None: the default classification).

    ``answer`` is the HTTP answer the failing call received, when known: it supplies the
    headers and body the SDK drops for a body that is not Stripe's (a proxy's page), and it
    classifies an SDK that failed while reading such a body (``AttributeError``,
    ``TypeError``, ``KeyError`` from inside the SDK) by the answer's status.
    """
    stripe = _sdk()
    if not isinstance(exc, stripe.StripeError):
        if answer is None or answer.status < 400:
            return None
        return _foreign(answer, operation)
    status = exc.http_status
    if answer is not None and answer.status != status:
        answer = None
    headers = exc.headers or (answer.headers if answer else {})
    body = exc.http_body or (answer.body if answer else "")
    should_retry = (_header(headers, "Stripe-Should-Retry") or "").lower()
    request_id = getattr(exc, "request_id", None) or _header(headers, "Request-Id")
    ours = _stripe_shaped(body)  # not exc.json_body: for a body it cannot read, the SDK puts the headers there
    if ours or status is None:
        detail = redact(str(getattr(exc, "user_message", None) or exc._message or type(exc).__name__))
    else:  # the SDK's "Invalid response object from API: <the whole page>": quote the page's gist instead
        detail = vendor_detail(body) or type(exc).__name__
    where = f"{operation}{f' (request {request_id})' if request_id else ''}"
    if status is None:  # no HTTP answer: connection refused, reset, dropped, timed out
        if should_retry == "false" or getattr(exc, "should_retry", True) is False:
            return SystemFailure(f"{where} failed: {detail}", fix="check the connection's api_base and the network")
        return TransientError(
            f"{where} failed: could not reach Stripe ({detail})",
            fix="check the network and api_base; subledger retries, or run it again later",
        )
    error_type = (getattr(exc, "error", None) and getattr(exc.error, "type", None)) or ""
    if error_type == "idempotency_error":
        return SystemFailure(
            f"{where} failed: HTTP {status}: {detail}",
            fix="an idempotency key was reused for a different request; report this to subledger's maintainers",
        )
    if should_retry == "true":
        asked = TransientError(
            f"{where} failed: HTTP {status}: {detail}",
            fix="nothing to change; Stripe asked for a retry",
            retry_after=parse_retry_after(_header(headers, "Retry-After"), now=current_policy().now()),
        )
        asked.http_status = status  # type: ignore[attr-defined]
        return asked
    # An HTTP-date Retry-After is measured from the retry policy's clock (a fake one in tests).
    err = error_for_status(status, headers=headers, body=body if not ours else (body or detail),
                           operation=where, now=current_policy().now(), vendor_error=ours)
    if should_retry == "false" and isinstance(err, TransientError):
        fixed: SubledgerError = SystemFailure(err.message, fix="Stripe said not to retry; run it again later")
        fixed.http_status = status  # type: ignore[attr-defined]
        return fixed
    if status == 401 and ours:
        err.fix = "check the connection's api_key (a secret sk_ or restricted rk_ key of this Stripe account)"
    elif status == 403 and ours:
        err.fix = (
            "give the restricted key the permission Stripe names (see docs/connectors/stripe.md for the full list)"
        )
    return err


def _foreign(answer: Answer, operation: str) -> SubledgerError:
    """The error for an answer the SDK could not read (not Stripe's error document)."""
    request_id = _header(answer.headers, "Request-Id")
    where = f"{operation}{f' (request {request_id})' if request_id else ''}"
    err = error_for_status(answer.status, headers=answer.headers, body=answer.body, operation=where,
                           now=current_policy().now(), vendor_error=_stripe_shaped(answer.body))
    should_retry = (_header(answer.headers, "Stripe-Should-Retry") or "").lower()
    if should_retry == "false" and isinstance(err, TransientError):
        fixed: SubledgerError = SystemFailure(err.message, fix="Stripe said not to retry; run it again later")
        fixed.http_status = answer.status  # type: ignore[attr-defined]
        return fixed
    return err


class StripeApi:
    """One Stripe account, through the official SDK.

    Args:
        config: the connection's config.
        name: the connection name, for messages.
        http_client: an SDK HTTP client to use instead of a ``stripe.RequestsClient`` with
            the configured timeout (for proxies, instrumentation, contract tests).
    """

    _limits: ClassVar[dict[str, threading.BoundedSemaphore]] = {}
    _limits_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, config: StripeConfig, *, name: str = "stripe", http_client: Any = None) -> None:
        stripe = _sdk()
        self.config = config
        self.name = name
        key = config.api_key.get_secret_value()
        self._http = _RecordingClient(http_client or stripe.RequestsClient(timeout=config.timeout_seconds))
        self.client = stripe.StripeClient(
            key,
            stripe_account=config.account,
            stripe_version=config.api_version,
            base_addresses={"api": config.api_base, "meter_events": config.meter_events_url},
            max_network_retries=0,
            http_client=self._http,
        )
        self.v1 = self.client.v1
        self._limit = self._semaphore(config, key)

    def __repr__(self) -> str:
        return f"StripeApi(connection={self.name!r}, api_base={self.config.api_base!r})"

    @classmethod
    def _semaphore(cls, config: StripeConfig, key: str) -> threading.BoundedSemaphore:
        # Keyed by account, never by the raw key (the registry outlives this object).
        account = config.account or hashlib.sha256(key.encode()).hexdigest()[:16]
        ident = f"{config.api_base}|{account}"
        with cls._limits_lock:
            if ident not in cls._limits:
                cls._limits[ident] = threading.BoundedSemaphore(config.max_concurrency)
            return cls._limits[ident]

    def call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one SDK call with retries, inside the account's concurrency limit."""

        def limited() -> T:
            self._http.forget()
            with self._limit:
                return fn()

        op = f"{self.name}: {operation}"
        return retry_call(limited, operation=op,
                          classify=lambda exc: classify_stripe_error(exc, operation=op, answer=self._http.last))

    def pages(
        self, operation: str, list_fn: Callable[[dict[str, Any]], Any], params: dict[str, Any]
    ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """Every page of a list call as plain dicts, following ``starting_after`` cursors.

        Each page is fetched through :meth:`call`, so a failure mid-list retries that
        page only. Yields ``(objects, has_more)``.
        """
        cursor = params.get("starting_after")
        visited: set[str] = set()
        while True:
            query = {**params, "limit": self.config.page_size}
            if cursor:
                query["starting_after"] = cursor
            page = self.call(operation, lambda q=query: list_fn(q))  # type: ignore[misc]
            data = [to_plain(obj) for obj in (getattr(page, "data", None) or [])]
            has_more = bool(getattr(page, "has_more", False))
            yield data, has_more
            if not has_more or not data:
                return
            last = page_cursor(data)
            if not last or last in visited:
                # A list that never advances would loop forever; Stripe's never does.
                raise SystemFailure(
                    f"{self.name}: {operation}: Stripe said more objects follow, but the page "
                    + ("has no object with an id to continue from" if not last else f"repeats {last}"),
                    fix="report this answer to subledger's maintainers (with the request id from the logs)",
                )
            visited.add(last)
            cursor = last

    def list_all(
        self, operation: str, list_fn: Callable[[dict[str, Any]], Any], params: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Every object of a list call, page after page."""
        for data, _ in self.pages(operation, list_fn, params):
            yield from data


def page_cursor(data: list[dict[str, Any]]) -> str | None:
    """Where the next page starts: the id of the page's last object that has one.

    Stripe's spec leaves ``id`` optional on some objects (invoices); such an object is
    rejected by the mapping, and the page continues from the last one that has an id.
    """
    return next((str(obj["id"]) for obj in reversed(data) if isinstance(obj, dict) and obj.get("id")), None)


def to_plain(obj: Any) -> dict[str, Any]:
    """A Stripe SDK object as a plain dict (decimal strings arrive as ``Decimal``)."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
