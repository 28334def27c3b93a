"""Alerts reach Slack (a local sandbox, through the official slack-sdk) and signed webhooks exactly once."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.model import Finding, Notification, SyncRun
from subledger.core.plugins import notifier_classes, register_plugin, unregister_plugin
from subledger.core.sandbox import SandboxServer
from subledger.plugins.slack.notifier import SlackNotifier
from subledger.plugins.slack.sandbox import TOKEN, SlackSandbox
from subledger.plugins.slack.webhook import SignedWebhookNotifier
from subledger.sync.notify import NotifySettings, backoff, build_notifiers, dispatch

NOW = datetime(2026, 5, 20, 12, tzinfo=UTC)
SETTINGS = NotifySettings(public_url="https://subledger.example", min_amount=__import__("decimal").Decimal("100"))


@pytest.fixture
def slack() -> Iterator[SandboxServer]:
    with SandboxServer(SlackSandbox()) as server:
        yield server


def seed(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.add(Finding(id="fnd_t80", rule="thresholds", key="acme:c1:allotment:api:2026-05-01:0.8", customer="acme",
                      summary="acme reached 80% of allotment:api in the period from 2026-05-01"))
        s.add(Finding(id="fnd_big", rule="unbilled_usage", key="k1", customer="acme", amount_minor=25_000,
                      currency="USD", summary="acme: 250.00 USD unbilled"))
        s.add(Finding(id="fnd_small", rule="unbilled_usage", key="k2", customer="acme", amount_minor=500,
                      currency="USD", summary="acme: 5.00 USD unbilled"))
        s.add(SyncRun(id="run_bad", status="failed", connections=["stripe"],
                      errors=[{"stage": "pull", "error": "HTTP 503 from stripe"}]))


def test_thresholds_big_findings_and_failed_syncs_are_posted_once(engine: Engine, slack: SandboxServer) -> None:
    seed(engine)
    notifier = SlackNotifier(TOKEN, "#finance", base_url=slack.url + "/api/")
    first = dispatch(engine, {"finance": notifier}, SETTINGS, now=NOW)
    assert first == {"queued": 3, "sent": 3, "retry": 0, "failed": 0}
    texts = [m["text"] for m in slack.sandbox.messages("#finance")]
    assert texts == [
        "Threshold reached: acme reached 80% of allotment:api in the period from 2026-05-01",
        "New finding: unbilled_usage: acme: 250.00 USD unbilled",
        "Sync run_bad failed: sync of stripe failed: HTTP 503 from stripe",
    ]
    links = [m["blocks"][1]["elements"][0]["text"] for m in slack.sandbox.messages()]
    assert links[0] == "<https://subledger.example/v1/findings/fnd_t80|Evidence>"
    # Nothing is sent twice, however often dispatch runs.
    assert dispatch(engine, {"finance": notifier}, SETTINGS, now=NOW + timedelta(hours=1))["sent"] == 0
    assert len(slack.sandbox.messages()) == 3


def test_a_slack_outage_is_retried_with_backoff_and_delivered_once(engine: Engine, slack: SandboxServer) -> None:
    seed(engine)
    notifier = SlackNotifier(TOKEN, "#finance", base_url=slack.url + "/api/", timeout=2)
    slack.sandbox.faults.inject("server_error", status=503, times=3)
    out = dispatch(engine, {"finance": notifier}, SETTINGS, now=NOW)
    assert out["sent"] == 0 and out["retry"] == 3
    with Session(engine) as s:
        rows = s.exec(select(Notification)).all()
    assert {r.next_attempt_at for r in rows} == {NOW + backoff(1)} and backoff(1) == timedelta(seconds=30)
    assert "503" in rows[0].last_error
    # Too early: nothing is tried. After the backoff: delivered.
    assert dispatch(engine, {"finance": notifier}, SETTINGS, now=NOW + timedelta(seconds=10))["sent"] == 0
    assert dispatch(engine, {"finance": notifier}, SETTINGS, now=NOW + timedelta(seconds=31))["sent"] == 3
    assert len(slack.sandbox.messages()) == 3
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 10)] == [30, 60, 120, 3600]


def test_a_rate_limit_is_a_retry_and_a_bad_token_is_reported(engine: Engine, slack: SandboxServer) -> None:
    seed(engine)
    slack.sandbox.faults.inject("rate_limit", retry_after=1, times=1)
    good = SlackNotifier(TOKEN, "#finance", base_url=slack.url + "/api/")
    bad = SlackNotifier("xoxb-wrong", "#finance", base_url=slack.url + "/api/")
    out = dispatch(engine, {"finance": good, "other": bad}, SETTINGS, now=NOW)
    assert out["sent"] == 2 and out["retry"] == 4
    with Session(engine) as s:
        errors = {r.channel: r.last_error for r in s.exec(select(Notification)).all() if r.last_error}
    assert "invalid_auth" in errors["other"] and "429" in errors["finance"]
    assert repr(bad).startswith("SlackNotifier(") and "xoxb-wrong" not in repr(bad)


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_signed_webhook_alerts_verify_with_the_shared_secret(engine: Engine) -> None:
    seed(engine)
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        out = dispatch(engine, {"ops": SignedWebhookNotifier(url, "s3cret-hook")}, SETTINGS, now=NOW)
    finally:
        server.shutdown()
    assert out["sent"] == 3
    headers, body = _Receiver.received[0]
    t, v1 = (p.split("=", 1)[1] for p in headers["Subledger-Signature"].split(","))
    assert v1 == hmac.new(b"s3cret-hook", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["Subledger-Alert"] == "finding:fnd_t80" and json.loads(body)["kind"] == "threshold"


def test_notifiers_register_through_the_hook_and_build_from_config(slack: SandboxServer) -> None:
    import subledger.plugins.slack as plugin

    if "slack" not in notifier_classes():
        register_plugin(plugin, "slack-test")
    try:
        built = build_notifiers([{"notifier": "slack", "name": "fin", "token": TOKEN, "channel": "#finance",
                                  "base_url": slack.url + "/api/"}])
        assert list(built) == ["fin"] and isinstance(built["fin"], SlackNotifier)
        assert set(notifier_classes()) >= {"slack", "webhook"}
    finally:
        unregister_plugin("slack-test")
