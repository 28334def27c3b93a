"""The shared HTTP and retry layer: what is retried, how long it waits, how failures are
classified, and that secrets stay out of the errors.

``retry_call`` is exercised with plain functions and SDK-shaped exceptions; ``HttpClient``
against a real HTTP server on 127.0.0.1 that answers from a script. Every wait goes
through a fake clock.
"""

from __future__ import annotations

import email.utils
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from subledger.core import secrets
from subledger.core.errors import ConfigError, FailureKind, SubledgerError, SystemFailure, TransientError
from subledger.core.http import (
    HttpClient,
    RetryPolicy,
    current_policy,
    default_classify,
    error_for_status,
    http_status,
    is_transient_status,
    not_sent,
    parse_retry_after,
    retry_call,
    use_retry_policy,
    vendor_detail,
)
from subledger.testing import FakeClock

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


# -- Retry-After ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("Fri, 01 Mar 2024 12:00:05 GMT", 5.0),
        ("Fri, 01 Mar 2024 11:59:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


# -- backoff ---------------------------------------------------------------------------------------


def test_backoff_doubles_from_half_a_second_and_is_capped_at_thirty_without_jitter() -> None:
    policy = RetryPolicy(jitter=0)
    assert [policy.backoff(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


@given(retry=st.integers(min_value=1, max_value=500), draw=st.floats(min_value=0, max_value=0.999999))
def test_jittered_backoff_stays_between_half_the_exponential_step_and_the_cap(retry: int, draw: float) -> None:
    policy = RetryPolicy(random=lambda: draw)
    step = min(30.0, 0.5 * 2.0 ** min(retry - 1, 64))

    wait = policy.backoff(retry)

    assert step * 0.5 <= wait <= step <= 30.0


# -- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "fix_mentions"),
    [
        (429, FailureKind.TRANSIENT, "subledger retries"),
        (500, FailureKind.TRANSIENT, "subledger retries"),
        (502, FailureKind.TRANSIENT, "subledger retries"),
        (503, FailureKind.TRANSIENT, "subledger retries"),
        (408, FailureKind.TRANSIENT, "subledger retries"),
        (400, FailureKind.CONFIG, "correct the value its message names"),
        (401, FailureKind.CONFIG, "credentials"),
        (403, FailureKind.CONFIG, "permission"),
        (404, FailureKind.CONFIG, "base URL or object id"),
        (422, FailureKind.CONFIG, "correct the value its message names"),
        (501, FailureKind.SYSTEM, "maintainers"),
        (302, FailureKind.SYSTEM, "maintainers"),
    ],
)
def test_each_status_is_classified_so_the_user_knows_who_acts(
    status: int, kind: FailureKind, fix_mentions: str
) -> None:
    err = error_for_status(status, body='{"error": {"message": "No such customer: cus_9"}}', operation="GET /v1/x")

    assert err.kind is kind
    assert fix_mentions in (err.fix or "")
    assert err.message.startswith(f"GET /v1/x failed: HTTP {status} ")
    assert err.message.endswith(": No such customer: cus_9")


def test_a_429_carries_its_retry_after() -> None:
    err = error_for_status(429, headers={"Retry-After": "12"})
    assert isinstance(err, TransientError) and err.retry_after == 12.0


def test_sdk_exceptions_are_classified_from_their_status_attributes() -> None:
    class StripeLikeError(Exception):
        http_status = 429
        headers = {"Retry-After": "3"}

    class HubSpotLikeError(Exception):
        status = 403
        body = '{"message": "This app lacks the crm.objects.deals.read scope"}'

    class OrbLikeResponse:
        status_code = 404
        headers: dict[str, str] = {}
        text = "not found"

    class OrbLikeError(Exception):
        response = OrbLikeResponse()

    rate_limited = default_classify(StripeLikeError("slow down"))
    forbidden = default_classify(HubSpotLikeError())
    missing = default_classify(OrbLikeError())

    assert (rate_limited.kind, getattr(rate_limited, "retry_after", None)) == (FailureKind.TRANSIENT, 3.0)
    assert forbidden.kind is FailureKind.CONFIG and "lacks the crm.objects.deals.read scope" in forbidden.message
    assert missing.kind is FailureKind.CONFIG and "HTTP 404" in missing.message


def test_network_errors_are_transient_and_unknown_errors_are_system_failures() -> None:
    assert default_classify(ConnectionResetError("reset by peer")).kind is FailureKind.TRANSIENT
    assert default_classify(TimeoutError()).kind is FailureKind.TRANSIENT
    failure = default_classify(KeyError("total"), operation="map invoice")
    assert isinstance(failure, SystemFailure)
    assert failure.message == "map invoice failed unexpectedly: KeyError: 'total'"


# -- retry_call ----------------------------------------------------------------------------------


class Flaky:
    """Fails with the given exceptions in turn, then returns "ok"."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_transient_failures_are_retried_with_backoff_until_success(fake_clock: FakeClock) -> None:
    flaky = Flaky(TransientError("busy"), TransientError("busy"))

    assert retry_call(flaky) == "ok"
    assert flaky.calls == 3
    assert len(fake_clock.sleeps) == 2
    assert 0.25 <= fake_clock.sleeps[0] <= 0.5 and 0.5 <= fake_clock.sleeps[1] <= 1.0


def test_retry_after_is_waited_exactly(fake_clock: FakeClock) -> None:
    flaky = Flaky(TransientError("rate limited", retry_after=7))
    assert retry_call(flaky) == "ok"
    assert fake_clock.sleeps == [7.0]


def test_config_errors_and_system_failures_are_not_retried(fake_clock: FakeClock) -> None:
    for failure in (ConfigError("bad key", fix="rotate it"), KeyError("boom")):
        flaky = Flaky(failure)
        with pytest.raises(SubledgerError) as raised:
            retry_call(flaky)
        assert flaky.calls == 1
        assert raised.value.kind in (FailureKind.CONFIG, FailureKind.SYSTEM)
    assert fake_clock.sleeps == []


def test_it_gives_up_after_max_attempts_with_a_transient_error() -> None:
    clock = FakeClock()
    flaky = Flaky(*[TransientError("HTTP 503") for _ in range(10)])

    with pytest.raises(TransientError) as raised:
        retry_call(flaky, policy=clock.policy(max_attempts=4), operation="list invoices")

    assert flaky.calls == 4 and len(clock.sleeps) == 3
    assert raised.value.message == "HTTP 503 (gave up after 4 attempts)"
    assert raised.value.kind is FailureKind.TRANSIENT


def test_a_retry_after_longer_than_the_policy_allows_is_handed_back_not_slept() -> None:
    clock = FakeClock()
    flaky = Flaky(TransientError("rate limited", retry_after=3600))

    with pytest.raises(TransientError) as raised:
        retry_call(flaky, policy=clock.policy(max_retry_after=300))

    assert clock.sleeps == [] and flaky.calls == 1
    assert raised.value.retry_after == 3600
    assert str(raised.value) == "rate limited (the vendor asked to wait 3600s). Fix: run it again in 3600 seconds"


def test_the_time_budget_stops_retries() -> None:
    clock = FakeClock()
    flaky = Flaky(*[TransientError("busy", retry_after=40) for _ in range(10)])

    with pytest.raises(TransientError):
        retry_call(flaky, policy=clock.policy(max_elapsed=100))

    assert clock.sleeps == [40.0, 40.0]  # a third wait would end past 100 s


def test_a_custom_classifier_maps_an_sdk_exception(fake_clock: FakeClock) -> None:
    class VendorThrottled(Exception):
        pass

    def classify(exc: BaseException) -> SubledgerError | None:
        if isinstance(exc, VendorThrottled):
            return TransientError("vendor throttled", retry_after=2)
        return None

    flaky = Flaky(VendorThrottled())
    assert retry_call(flaky, classify=classify) == "ok"
    assert fake_clock.sleeps == [2.0]


def test_base_exceptions_pass_through_untouched(fake_clock: FakeClock) -> None:
    with pytest.raises(KeyboardInterrupt):
        retry_call(Flaky(KeyboardInterrupt()))


def test_classified_errors_keep_the_original_as_cause_and_mask_secrets(fake_clock: FakeClock) -> None:
    secrets.register_secret("sk_test_9f8e7d6c5b")
    original = RuntimeError("bad answer for key sk_test_9f8e7d6c5b")

    with pytest.raises(SystemFailure) as raised:
        retry_call(Flaky(original), operation="fetch")

    assert raised.value.__cause__ is original
    assert "sk_test_9f8e7d6c5b" not in str(raised.value)
    assert "key **********" in str(raised.value)


def test_the_policy_in_force_is_scoped_to_the_block() -> None:
    clock = FakeClock()
    before = current_policy()
    with use_retry_policy(clock.policy()) as policy:
        assert current_policy() is policy
    assert current_policy() is before


# -- HttpClient against a real local server ----------------------------------------------------


class ScriptedServer:
    """An HTTP server on 127.0.0.1 answering requests from a script of responses."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], str]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.requests.append((self.command, self.path, dict(self.headers)))
                status, headers, body = server.script.pop(0) if server.script else (200, {}, "{}")
                data = body.encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def answer(self, status: int, body: Any = None, **headers: str) -> None:
        text = body if isinstance(body, str) else json.dumps(body if body is not None else {})
        self.script.append((status, {k.replace("_", "-"): v for k, v in headers.items()}, text))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture
def client(server: ScriptedServer) -> Iterator[HttpClient]:
    with HttpClient(server.url, headers={"Authorization": "Bearer tok_live_abcdef"}, name="netsuite") as c:
        yield c


def test_a_429_is_retried_after_its_retry_after(
    server: ScriptedServer, client: HttpClient, fake_clock: FakeClock
) -> None:
    server.answer(429, {"error": {"message": "Too many requests"}}, Retry_After="2")
    server.answer(200, {"items": [1, 2]})

    assert client.get_json("/record/v1/invoice") == {"items": [1, 2]}
    assert fake_clock.sleeps == [2.0]
    assert len(server.requests) == 2
    assert server.requests[0][2]["User-Agent"].startswith("subledger/")


def test_an_http_date_retry_after_is_measured_on_the_policy_clock(
    server: ScriptedServer, client: HttpClient, fake_clock: FakeClock
) -> None:
    when = email.utils.format_datetime(fake_clock.now() + timedelta(seconds=9), usegmt=True)
    server.answer(503, "maintenance", Retry_After=when)
    server.answer(200, {"ok": True})

    assert client.get_json("/x") == {"ok": True}
    assert fake_clock.sleeps == [9.0]


def test_5xx_is_retried_with_backoff(server: ScriptedServer, client: HttpClient, fake_clock: FakeClock) -> None:
    server.answer(500, "oops")
    server.answer(502, "bad gateway")
    server.answer(200, {"ok": True})

    assert client.get_json("/x") == {"ok": True}
    assert len(fake_clock.sleeps) == 2 and len(server.requests) == 3


def test_a_4xx_is_not_retried_and_surfaces_as_a_config_error(
    server: ScriptedServer, client: HttpClient, fake_clock: FakeClock
) -> None:
    server.answer(401, {"error": {"message": "Invalid login attempt."}})

    with pytest.raises(ConfigError) as raised:
        client.get_json("/record/v1/customer")

    assert len(server.requests) == 1 and fake_clock.sleeps == []
    assert raised.value.message == (
        "netsuite: GET /record/v1/customer failed: HTTP 401 Unauthorized: Invalid login attempt."
    )
    assert "credentials" in (raised.value.fix or "")


def test_a_post_without_idempotency_key_is_not_resent_after_a_5xx(
    server: ScriptedServer, client: HttpClient, fake_clock: FakeClock
) -> None:
    server.answer(500, "oops")

    with pytest.raises(TransientError):
        client.post_json("/record/v1/invoice", {"total": 100})

    assert len(server.requests) == 1 and fake_clock.sleeps == []


def test_a_post_with_an_idempotency_key_or_refused_with_429_is_retried(
    server: ScriptedServer, client: HttpClient, fake_clock: FakeClock
) -> None:
    server.answer(500, "oops")
    server.answer(201, {"id": "inv_1"})
    server.answer(429, "slow down", Retry_After="1")
    server.answer(201, {"id": "inv_2"})

    first = client.post_json("/invoices", {"total": 100}, headers={"Idempotency-Key": "k1"})
    second = client.post_json("/invoices", {"total": 200})

    assert (first, second) == ({"id": "inv_1"}, {"id": "inv_2"})
    assert len(server.requests) == 4


def test_connection_refused_is_transient_and_retried_even_for_posts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    clock = FakeClock()
    with HttpClient(f"http://127.0.0.1:{port}", policy=clock.policy(max_attempts=3)) as client, \
            pytest.raises(TransientError) as raised:
        client.post_json("/x", {})

    assert len(clock.sleeps) == 2
    assert "could not reach the server" in raised.value.message
    assert "gave up after 3 attempts" in raised.value.message


def test_secrets_echoed_by_the_server_are_masked_in_the_error(
    server: ScriptedServer, client: HttpClient, fake_clock: FakeClock
) -> None:
    secrets.register_secret("tok_live_abcdef")
    server.answer(403, {"message": "token tok_live_abcdef lacks scope"})

    with pytest.raises(ConfigError) as raised:
        client.get_json("/x?token=tok_live_abcdef")

    assert "tok_live_abcdef" not in str(raised.value)
    assert "token ********** lacks scope" in str(raised.value)
    assert "tok_live_abcdef" not in repr(client)


def test_a_non_json_answer_is_a_system_failure(server: ScriptedServer, client: HttpClient) -> None:
    server.script.append((200, {"Content-Type": "text/html"}, "<html>login</html>"))
    with pytest.raises(SystemFailure, match="expected JSON, got text/html"):
        client.get_json("/x")


def test_an_unsupported_url_is_a_config_error(fake_clock: FakeClock) -> None:
    with HttpClient("ftp://127.0.0.1/") as client, pytest.raises(ConfigError, match="check the base URL"):
        client.get_json("/x")


# -- any body: proxies, gateways, vendors' odd answers ------------------------------------------------

HTML_503 = ("<!DOCTYPE html><html><head><title>503 Service Temporarily Unavailable</title><style>b{}</style>"
            "</head><body><h1>503</h1><script>x()</script></body></html>")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (HTML_503, "an HTML page: 503 Service Temporarily Unavailable"),
        ("<html><body><h1>Bad &amp; gateway</h1></body></html>", "an HTML page: Bad & gateway"),
        ('{"error": "upstream connect error"}', "upstream connect error"),
        ('{"error": "invalid_grant", "error_description": "authentication failure"}',
         "invalid_grant: authentication failure"),
        ('[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "TotalRequests Limit exceeded."}]',
         "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."),
        ('{"status": "error", "message": "You have reached your limit.", "category": "RATE_LIMITS"}',
         "You have reached your limit."),
        ('<?xml version="1.0"?><soapenv:Envelope><soapenv:Body><soapenv:Fault><faultcode>sf:SERVER_UNAVAILABLE'
         '</faultcode><faultstring>Try later</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>',
         "sf:SERVER_UNAVAILABLE: Try later"),
        ('["busy"]', '["busy"]'),
        ('{"error": {"message": "Internal', '{"error": {"message": "Internal'),
        ("  Service\n  Unavailable ", "Service Unavailable"),
        ("", ""),
        (None, ""),
        (b"\xff\xfe broken \xff", "\ufffd\ufffd broken \ufffd"),
        ("x" * 1000, "x" * 300),
    ],
)
def test_the_gist_of_any_body_is_quoted_never_markup(body: Any, detail: str) -> None:
    assert vendor_detail(body) == detail


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 408])
@pytest.mark.parametrize("body", [HTML_503, '{"error": "x"}', "", "plain", '["busy"]', b"\x00\xff", None])
def test_a_429_or_5xx_is_transient_whatever_its_body(status: int, body: Any) -> None:
    err = error_for_status(status, headers={"retry-after": "4"}, body=body, operation="GET /x")
    assert isinstance(err, TransientError) and err.retry_after == 4.0
    assert "<" not in err.message and "{content}" not in err.message


def test_only_the_vendors_own_401_says_check_the_credentials() -> None:
    ours = error_for_status(401, body='{"error": {"message": "Invalid API Key"}}', vendor_error=True)
    page = error_for_status(401, body=HTML_503)
    foreign = error_for_status(401, body='{"error": "unauthorized"}', vendor_error=False)
    assert "credentials" in (ours.fix or "") and "proxy" not in (ours.fix or "")
    assert "proxy" in (page.fix or "") and "proxy" in (foreign.fix or "")
    assert is_transient_status(429) and is_transient_status(503) and not is_transient_status(501)


def test_a_retry_call_inside_another_is_not_retried_again_once_it_gave_up() -> None:
    clock = FakeClock()
    inner = Flaky(*[TransientError("login: HTTP 503") for _ in range(20)])

    def outer() -> str:
        return retry_call(inner, policy=clock.policy(), operation="log in")

    with pytest.raises(TransientError) as raised:
        retry_call(outer, policy=clock.policy(), operation="query")

    assert inner.calls == 5 and len(clock.sleeps) == 4, "the attempts are not multiplied"
    assert raised.value.message == "login: HTTP 503 (gave up after 5 attempts)"


def test_the_final_transient_error_keeps_its_http_status(fake_clock: FakeClock) -> None:
    with pytest.raises(TransientError) as raised:
        retry_call(Flaky(*[error_for_status(503, body="down") for _ in range(9)]))
    assert http_status(raised.value) == 503


class _TokenFirst(httpx.Auth):
    """Fails to get a token (429) before the request is sent, once."""

    def __init__(self) -> None:
        self.failures = 1

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        if self.failures:
            self.failures -= 1
            raise not_sent(error_for_status(429, body="", operation="token"))
        yield request


def test_a_failure_before_the_request_was_sent_is_retried_even_for_a_post(
    server: ScriptedServer, fake_clock: FakeClock
) -> None:
    server.answer(201, {"id": "inv_1"})
    with HttpClient(server.url, auth=_TokenFirst(), name="vendor") as client:
        assert client.post_json("/invoices", {"total": 1}) == {"id": "inv_1"}
    assert len(server.requests) == 1 and len(fake_clock.sleeps) == 1


def test_refine_sees_the_answer_and_may_change_the_fix(server: ScriptedServer, fake_clock: FakeClock) -> None:
    server.answer(401, HTML_503, Content_Type="text/html")

    def refine(response: httpx.Response, err: SubledgerError) -> SubledgerError:
        err.fix = f"refined after {response.status_code} {response.headers['content-type']}"
        return err

    with HttpClient(server.url, refine=refine) as client, pytest.raises(ConfigError) as raised:
        client.get_json("/x")
    assert raised.value.fix == "refined after 401 text/html"
    assert raised.value.message.endswith("HTTP 401 Unauthorized: an HTML page: 503 Service Temporarily Unavailable")
