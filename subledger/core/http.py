"""The shared HTTP and retry layer every connector uses.

Two entry points:

* :func:`retry_call` wraps any call (typically an official SDK's) with retries. A
  ``classify`` function maps the SDK's exceptions to subledger's three failure kinds;
  without one, :func:`default_classify` understands subledger's own errors, httpx, the
  built-in network errors, and the ``status``/``http_status``/``status_code`` attributes
  most vendor SDKs put on their exceptions.
* :class:`HttpClient`, an httpx client with the same retries, for systems without an SDK.

What is retried: rate limits (429), server errors (5xx except 501/505), 408/425, and
connection errors, whatever the answer's body (a vendor's error document, a proxy's HTML
page, ``{"error": "..."}``, text, nothing). ``Retry-After`` is honoured, in seconds or as an
HTTP date; otherwise the wait backs off exponentially, capped, with jitter. Everything else
is raised at once as a :class:`~subledger.core.errors.ConfigError` (401, 403, 404, 422,
other 4xx: the user must act) or a :class:`~subledger.core.errors.SystemFailure` (an answer
we do not understand), so the kind reaches the user. Messages quote the gist of any body
(:func:`vendor_detail`), never markup; error text passes through
:func:`~subledger.core.secrets.redact`. A 401/403 that is not the vendor's own error
document (``vendor_error=False``, or an HTML page) says to check the URL and any proxy
before the credentials.

Tests run the layer under a fake clock: a :class:`RetryPolicy` takes ``sleep``, ``clock``
and ``now``, and :func:`use_retry_policy` makes a policy the default for the code inside it
(connectors pass ``policy=None`` and get the current one).
"""

from __future__ import annotations

import contextvars
import email.utils
import html
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import tenacity

from subledger import __version__
from subledger.core.errors import ConfigError, SubledgerError, SystemFailure, TransientError
from subledger.core.secrets import redact

log = logging.getLogger(__name__)

T = TypeVar("T")
Classifier = Callable[[BaseException], SubledgerError | None]

USER_AGENT = f"subledger/{__version__}"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_MAX_DETAIL = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How to retry transient failures.

    Attributes:
        max_attempts: attempts in all, the first included.
        backoff_initial: the first backoff, in seconds.
        backoff_multiplier: growth of the backoff per retry.
        backoff_max: the cap on any one backoff.
        jitter: fraction of each backoff removed at random (0 = none, 0.5 = up to half),
            so clients that failed together do not retry together.
        max_retry_after: the longest ``Retry-After`` to wait for in-process; a longer one
            is raised as a TransientError carrying ``retry_after`` for the scheduler.
        max_elapsed: time budget for all attempts and waits, in seconds.
        sleep: how to wait (``time.sleep``; a fake clock's in tests).
        clock: a monotonic clock, for the time budget.
        now: the current aware time, for ``Retry-After`` given as an HTTP date.
        random: a source of floats in [0, 1), for jitter.
    """

    max_attempts: int = 5
    backoff_initial: float = 0.5
    backoff_multiplier: float = 2.0
    backoff_max: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 300.0
    max_elapsed: float = 600.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, retry_number: int) -> float:
        """The wait before retry ``retry_number`` (1-based) when no Retry-After was given.

        ``base = min(backoff_max, backoff_initial * backoff_multiplier ** (n - 1))``, then
        up to ``jitter * base`` is taken off at random: never above the cap, never below
        ``(1 - jitter) * base``.
        """
        exponent = min(retry_number - 1, 64)  # beyond this the cap applies anyway
        base = min(self.backoff_max, self.backoff_initial * self.backoff_multiplier**exponent)
        return base * (1 - self.jitter * self.random())

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with some attributes changed."""
        return replace(self, **changes)


_DEFAULT_POLICY = RetryPolicy()
_current_policy: contextvars.ContextVar[RetryPolicy] = contextvars.ContextVar(
    "subledger_retry_policy", default=_DEFAULT_POLICY
)


def current_policy() -> RetryPolicy:
    """The policy in force: the innermost :func:`use_retry_policy`, else the default."""
    return _current_policy.get()


@contextmanager
def use_retry_policy(policy: RetryPolicy) -> Iterator[RetryPolicy]:
    """Make ``policy`` the default for calls made inside the block (tests: a fake clock)."""
    token = _current_policy.set(policy)
    try:
        yield policy
    finally:
        _current_policy.reset(token)


# -- Retry-After ----------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.

    Returns None when absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
        if value is None:
            value = headers.get(name.lower())
        if value is None and hasattr(headers, "items"):  # a plain dict with the name in another case
            value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    except (AttributeError, TypeError):
        return None
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    return None if value is None else str(value)


# -- classification -----------------------------------------------------------------------

_STATUS_FIX = {
    401: "check the connection's credentials (API key, token or password); "
    "`subledger connections check NAME` tries them",
    403: "give the credentials the permission this operation needs, or use credentials that have it",
    404: "check the account, base URL or object id in the connection's config",
    405: "check the base URL in the connection's config",
    409: "the target changed or already exists; re-read it and try again",
    410: "the object no longer exists at the vendor; remove the reference to it",
}
_TRANSIENT_FIX = "nothing to change: the vendor is busy or unavailable; subledger retries, or run it again later"


_HTML = re.compile(r"<\s*(?:!doctype\s+html|html|head|body|title)\b", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_INVISIBLE = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_XML_MESSAGE = re.compile(
    r"<(?:[\w.-]+:)?(?:exceptionMessage|faultstring|message)\b[^>]*>(.*?)</", re.IGNORECASE | re.DOTALL
)
_XML_CODE = re.compile(r"<(?:[\w.-]+:)?(?:exceptionCode|faultcode)\b[^>]*>(.*?)</", re.IGNORECASE | re.DOTALL)
_JSON_MESSAGE_KEYS = ("message", "error_description", "detail", "title", "errorMessage", "description")


def body_text(body: Any) -> str:
    """A response body as text, whatever it arrived as (bytes, memoryview, str, None, a parsed document)."""
    if isinstance(body, memoryview):
        body = body.tobytes()
    if isinstance(body, bytes | bytearray):
        return bytes(body).decode("utf-8", "replace")
    if body is None:
        return ""
    if isinstance(body, dict | list):
        try:
            return json.dumps(body, default=str)
        except (TypeError, ValueError):
            return str(body)
    return str(body)


def looks_like_html(body: Any) -> bool:
    """True when a body is a web page (a proxy's or gateway's error page), not an API document."""
    return bool(_HTML.search(body_text(body)[:2048]))


def _squash(text: str) -> str:
    return " ".join(html.unescape(text).split())


def _json_message(doc: Any) -> str:
    """The message of a JSON error document, in the shapes vendors and gateways use."""
    if isinstance(doc, list):
        doc = next((item for item in doc if isinstance(item, dict)), None)  # Salesforce: a list of errors
    if not isinstance(doc, dict):
        return doc if isinstance(doc, str) else ""
    error = doc.get("error")
    if isinstance(error, dict):
        for key in _JSON_MESSAGE_KEYS:
            if isinstance(error.get(key), str) and error[key]:
                return error[key]
    for key in _JSON_MESSAGE_KEYS:
        value = doc.get(key)
        if isinstance(value, str) and value:
            code = doc.get("errorCode") or doc.get("code") or error
            return f"{code}: {value}" if isinstance(code, str) and code and code not in value else value
    if isinstance(error, str) and error:  # OAuth, or a gateway's {"error": "..."}
        return error
    return ""


def vendor_detail(body: Any) -> str:
    """The vendor's own error message from a response body, when it has one.

    Any body gives a readable detail, never an exception: a vendor's JSON error (``error.message``,
    ``message``, ``error_description``, ``detail``, Salesforce's list of errors), a gateway's
    ``{"error": "..."}``, an HTML error page (its title), a SOAP fault (its message), plain text,
    or nothing at all.
    """
    text = body_text(body).strip()
    if not text:
        return ""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if doc is not None:
        message = _json_message(doc)
        return _squash(message or text)[:_MAX_DETAIL]
    if looks_like_html(text):
        title = _TITLE.search(text)
        page = _squash(title.group(1)) if title else ""
        if not page:
            page = _squash(_TAG.sub(" ", _INVISIBLE.sub(" ", text)))
        return f"an HTML page{': ' + page if page else ''}"[:_MAX_DETAIL]
    if text.startswith("<"):
        message, code = _XML_MESSAGE.search(text), _XML_CODE.search(text)
        parts = [_squash(m.group(1)) for m in (code, message) if m and m.group(1).strip()]
        if parts:
            return ": ".join(parts)[:_MAX_DETAIL]
        return _squash(_TAG.sub(" ", text))[:_MAX_DETAIL]
    return _squash(text)[:_MAX_DETAIL]


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status is a temporary refusal: 429, 408, 425, or a 5xx other than 501/505."""
    return status in (408, 425, 429) or (500 <= status < 600 and status not in (501, 505))


_FOREIGN_AUTH_FIX = (
    "the refusal did not come from the vendor's API (its answer is not the vendor's error document): check the "
    "connection's base URL and any proxy or gateway between subledger and the vendor, then the credentials"
)


def error_for_status(
    status: int,
    *,
    headers: Any = None,
    body: Any = "",
    operation: str = "request",
    now: datetime | None = None,
    vendor_error: bool | None = None,
) -> SubledgerError:
    """The subledger error for an HTTP status: transient, config or system.

    The status decides the kind, whatever the body is: a 429 or 5xx is transient even when
    its body is a proxy's HTML page, ``{"error": "..."}``, plain text or empty.

    Args:
        status: the HTTP status code.
        headers: response headers (for ``Retry-After``); any mapping.
        body: the response body, in any shape; the vendor's message is quoted (redacted).
        operation: what was attempted, e.g. ``GET /v1/customers``.
        now: the current time, for an HTTP-date ``Retry-After`` (default: the current retry
            policy's clock, so a fake clock in tests reads the date the way it waits).
        vendor_error: whether the body is the vendor's own error document (the connector
            knows its shape). A 401 or 403 that is not (False, or an HTML page when None)
            did not come from the vendor's API, so its fix points at the URL and any proxy
            before the credentials.
    """
    if now is None:
        now = current_policy().now()
    try:
        reason = httpx.codes.get_reason_phrase(status)
    except (TypeError, ValueError):
        reason = ""
    detail = vendor_detail(body)
    message = redact(
        f"{operation} failed: HTTP {status}{' ' + reason if reason else ''}{': ' + detail if detail else ''}"
    )
    err: SubledgerError
    if is_transient_status(status):
        retry_after = parse_retry_after(_header(headers, "Retry-After"), now=now)
        err = TransientError(message, fix=_TRANSIENT_FIX, retry_after=retry_after)
    elif 400 <= status < 500:
        fix = _STATUS_FIX.get(
            status, "the vendor rejected the request; correct the value its message names"
        )
        if status in (401, 403) and (vendor_error is False or (vendor_error is None and looks_like_html(body))):
            fix = _FOREIGN_AUTH_FIX
        err = ConfigError(message, fix=fix)
    else:
        err = SystemFailure(message, fix="report this to the subledger connector's maintainers")
    err.http_status = status  # type: ignore[attr-defined]
    return err


def http_status(err: BaseException) -> int | None:
    """The HTTP status a classified error came from, if any."""
    return getattr(err, "http_status", None)


def _status_of(exc: BaseException) -> tuple[int | None, Any, Any]:
    """(status, headers, body) from the attributes vendor SDK exceptions commonly carry."""
    response = getattr(exc, "response", None)
    for holder in (exc, response):
        if holder is None:
            continue
        for attr in ("status_code", "http_status", "http_status_code", "status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
                headers = getattr(holder, "headers", None)
                if headers is None and response is not None:
                    headers = getattr(response, "headers", None)
                body = getattr(holder, "body", None) or getattr(holder, "http_body", None)
                if body is None and response is not None:
                    body = getattr(response, "text", None)
                return value, headers, body
    return None, None, None


def default_classify(exc: BaseException, *, operation: str = "call", now: datetime | None = None) -> SubledgerError:
    """Map any exception to a subledger error of the right kind.

    subledger errors pass through; httpx transport errors and the built-in
    ``ConnectionError``/``TimeoutError`` are transient (a bad URL is config); an exception
    carrying an HTTP status is classified by :func:`error_for_status`; anything else is a
    system failure.
    """
    if isinstance(exc, SubledgerError):
        return exc
    if isinstance(exc, httpx.HTTPStatusError):
        r = exc.response
        return error_for_status(r.status_code, headers=r.headers, body=r.text, operation=operation, now=now)
    detail = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ConfigError(f"{operation} failed: {detail}", fix="check the base URL in the connection's config")
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return TransientError(
            f"{operation} failed: could not reach the server ({detail})",
            fix="check the network and the server's address; subledger retries, or run it again later",
        )
    status, headers, body = _status_of(exc)
    if status is not None:
        err = error_for_status(status, headers=headers, body=body or str(exc), operation=operation, now=now)
        return err
    return SystemFailure(
        f"{operation} failed unexpectedly: {detail}",
        fix="run again with --debug and report the traceback to the connector's maintainers",
    )


# -- retry_call ----------------------------------------------------------------------------


class _Stop(tenacity.stop.stop_base):
    """Stop after max attempts, past the time budget, or when Retry-After is too long to wait."""

    def __init__(self, policy: RetryPolicy, started: float) -> None:
        self.policy = policy
        self.started = started

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number >= self.policy.max_attempts:
            return True
        wait = _next_wait(self.policy, retry_state)
        if wait > self.policy.max_retry_after:
            return True
        return self.policy.clock() - self.started + wait > self.policy.max_elapsed


def _next_wait(policy: RetryPolicy, retry_state: tenacity.RetryCallState) -> float:
    cached = getattr(retry_state, "_subledger_wait", None)
    if cached is not None and cached[0] == retry_state.attempt_number:
        return cached[1]
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    retry_after = getattr(exc, "retry_after", None)
    wait = float(retry_after) if retry_after is not None else policy.backoff(retry_state.attempt_number)
    retry_state._subledger_wait = (retry_state.attempt_number, wait)  # type: ignore[attr-defined]
    return wait


def retry_call(
    fn: Callable[[], T],
    *,
    classify: Classifier | None = None,
    policy: RetryPolicy | None = None,
    operation: str = "call",
    retry_if: Callable[[SubledgerError], bool] | None = None,
) -> T:
    """Call ``fn()`` and retry it while it fails transiently.

    Args:
        fn: the call, taking no arguments (use a lambda or ``functools.partial``).
        classify: maps an exception to a subledger error, or None to fall back to
            :func:`default_classify`. Connectors pass one for their SDK's exceptions.
        policy: the retry policy; None uses :func:`current_policy`.
        operation: what the call does, for messages (``list customers``).
        retry_if: an extra condition a transient failure must meet to be retried (the
            HTTP client uses it to avoid re-sending non-idempotent requests).

    Returns:
        What ``fn`` returned.

    Raises:
        ConfigError: the user must act; not retried.
        TransientError: still failing after the retries (``retry_after`` set when the
            vendor said when to come back).
        SystemFailure: an unexpected failure; not retried.
    """
    policy = policy or current_policy()

    def to_error(exc: Exception) -> SubledgerError:
        err = classify(exc) if classify is not None else None
        if err is None:
            err = default_classify(exc, operation=operation, now=policy.now())
        return err

    def attempt() -> T:
        try:
            return fn()
        except SubledgerError:
            raise
        except Exception as exc:
            raise to_error(exc) from exc

    def should_retry(exc: BaseException) -> bool:
        # A failure an inner retry_call already gave up on (a login inside a call) is not retried
        # again here: nested retries would multiply the attempts and the waits.
        return (isinstance(exc, TransientError) and not getattr(exc, "retries_exhausted", False)
                and (retry_if is None or retry_if(exc)))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: %s; retrying in %.2fs (attempt %d of %d)",
            operation, redact(str(exc)), state.upcoming_sleep, state.attempt_number + 1, policy.max_attempts,
        )

    def give_up(state: tenacity.RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, TransientError)
        if not should_retry(exc):
            raise exc
        n = state.attempt_number
        if exc.retry_after is not None and exc.retry_after > policy.max_retry_after:
            why = f"the vendor asked to wait {exc.retry_after:.0f}s"
            fix = f"run it again in {exc.retry_after:.0f} seconds"
        else:
            why, fix = f"gave up after {n} attempt{'s' if n != 1 else ''}", exc.fix or _TRANSIENT_FIX
        final = TransientError(f"{redact(exc.message)} ({why})", fix=fix, retry_after=exc.retry_after)
        final.retries_exhausted = True  # type: ignore[attr-defined]
        if http_status(exc) is not None:
            final.http_status = http_status(exc)  # type: ignore[attr-defined]
        raise final from exc

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(should_retry),
        stop=_Stop(policy, policy.clock()),
        wait=lambda state: _next_wait(policy, state),
        sleep=policy.sleep,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        reraise=True,
    )
    return retrying(attempt)


# -- HttpClient ---------------------------------------------------------------------------


class HttpClient:
    """An httpx client with subledger's retries and failure classification.

    Non-idempotent requests (POST, PATCH) are only retried when nothing can have
    happened on the server (connection refused, 429) unless they carry an
    ``Idempotency-Key`` header or ``idempotent=True`` is passed.

    Args:
        base_url: the API's base URL.
        headers: default headers (auth headers stay out of every message and repr).
        auth: an httpx auth (basic, OAuth, ...).
        timeout: seconds per request.
        policy: the retry policy; None uses the current one at each request.
        transport: an httpx transport (tests).
        name: the system's name, for messages.
        refine: called with an error answer (status >= 400) and the error classified from
            it; returns the error to raise. A connector uses it to tell its vendor's own error
            document from a proxy's page (a real credential refusal, with the vendor's fix) and
            to name the vendor's settings in the fix. The kind should stay the status's.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        name: str = "",
        refine: Callable[[httpx.Response, SubledgerError], SubledgerError] | None = None,
    ) -> None:
        self.name = name or httpx.URL(base_url).host
        self.policy = policy
        self.refine = refine
        self._client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            auth=auth,
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HttpClient(base_url={str(self._client.base_url)!r})"

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send a request, retrying transient failures; raise a classified error on failure."""
        method = method.upper()
        if idempotent is None:
            has_key = any(k.lower() == "idempotency-key" for k in (headers or {}))
            idempotent = method in IDEMPOTENT_METHODS or has_key
        operation = f"{self.name}: {method} {httpx.URL(url).path or url}"
        policy = self.policy or current_policy()

        def send() -> httpx.Response:
            try:
                response = self._client.request(
                    method, url, params=params, json=json, data=data, headers=headers
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                err = default_classify(exc, operation=operation)
                raise _NotSent(err.message, fix=err.fix) from exc
            if response.status_code >= 400:
                err = error_for_status(
                    response.status_code, headers=response.headers, body=response.content,
                    operation=operation, now=policy.now(),
                )
                if self.refine is not None:
                    err = self.refine(response, err)
                raise err
            return response

        def safe_to_retry(err: SubledgerError) -> bool:
            # A request that never reached the server, or one refused with 429, did nothing.
            return idempotent or isinstance(err, _NotSent) or not request_sent(err) or http_status(err) == 429

        return retry_call(send, policy=policy, operation=operation, retry_if=safe_to_retry)

    def get_json(self, url: str, **kwargs: Any) -> Any:
        """GET ``url`` and decode its JSON body."""
        return _json_of(self.request("GET", url, **kwargs))

    def post_json(self, url: str, body: Any, **kwargs: Any) -> Any:
        """POST ``body`` as JSON and decode the JSON answer."""
        return _json_of(self.request("POST", url, json=body, **kwargs))


class _NotSent(TransientError):
    """A transient failure before the request reached the server (safe to retry any method)."""


def not_sent(err: SubledgerError) -> SubledgerError:
    """Mark ``err`` as a failure before the request itself was sent (safe to retry any method).

    For failures on the way to a request: an OAuth token endpoint answering 429 or 503, a
    signature that could not be made. :class:`HttpClient` retries such a failure even for a
    POST without an ``Idempotency-Key``, since the POST never left.
    """
    err.request_sent = False  # type: ignore[attr-defined]
    return err


def request_sent(err: BaseException) -> bool:
    """False when ``err`` happened before its request was sent (see :func:`not_sent`)."""
    return getattr(err, "request_sent", True) is not False


def _json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SystemFailure(
            redact(f"{response.request.method} {response.request.url.path}: expected JSON, got "
                   f"{response.headers.get('content-type', 'no content type')}"),
            fix="check the base URL points at the API, not a web page",
        ) from None
