"""Webhook verification: genuine deliveries pass; forged, stale and replayed ones do not."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import SecretStr

from subledger.plugins.stripe.sandbox import sign_payload
from subledger.plugins.stripe.webhooks import WebhookInbox, WebhookRejected, streams_for, verify_webhook

NOW = 1_767_225_600
OLD_SECRET, NEW_SECRET = "whsec_old_0123456789", "whsec_new_9876543210"
EVENT = {"id": "evt_1", "object": "event", "type": "invoice.paid", "created": NOW, "data": {"object": {"id": "in_1"}}}
BODY = json.dumps(EVENT).encode()


def signed(body: bytes, *secrets: str, at: int = NOW) -> dict[str, str]:
    """Stripe's header: one timestamp, one v1 signature per active secret."""
    parts = [sign_payload(body, s, at).split(",")[1] for s in secrets]
    return {"Stripe-Signature": ",".join([f"t={at}", *parts])}


def test_a_genuine_delivery_returns_its_event() -> None:
    assert verify_webhook(BODY, signed(BODY, NEW_SECRET), [NEW_SECRET], now=NOW + 10) == EVENT


def test_rotation_accepts_either_secret_while_both_sign() -> None:
    headers = signed(BODY, OLD_SECRET, NEW_SECRET)
    assert verify_webhook(BODY, headers, [OLD_SECRET], now=NOW)["id"] == "evt_1"
    assert verify_webhook(BODY, headers, [SecretStr(NEW_SECRET)], now=NOW)["id"] == "evt_1"
    only_new = signed(BODY, NEW_SECRET)
    assert verify_webhook(BODY, only_new, [OLD_SECRET, NEW_SECRET], now=NOW)["id"] == "evt_1"


def test_a_forged_or_altered_body_is_rejected_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    tampered = BODY.replace(b"invoice.paid", b"invoice.voided")
    with caplog.at_level(logging.WARNING), pytest.raises(WebhookRejected, match="matches none"):
        verify_webhook(tampered, signed(BODY, NEW_SECRET), [NEW_SECRET], now=NOW)
    assert "stripe webhook rejected: signature matches none" in caplog.text
    assert NEW_SECRET not in caplog.text
    with pytest.raises(WebhookRejected, match="matches none"):
        verify_webhook(BODY, signed(BODY, "whsec_attacker"), [NEW_SECRET], now=NOW)


@pytest.mark.parametrize(("age", "ok"), [(300, True), (301, False), (-300, True), (-301, False)])
def test_the_timestamp_must_be_within_300_seconds(age: int, ok: bool, caplog: pytest.LogCaptureFixture) -> None:
    headers = signed(BODY, NEW_SECRET, at=NOW)
    if ok:
        assert verify_webhook(BODY, headers, [NEW_SECRET], now=NOW + age)["id"] == "evt_1"
        return
    with caplog.at_level(logging.WARNING), pytest.raises(WebhookRejected, match="tolerance"):
        verify_webhook(BODY, headers, [NEW_SECRET], now=NOW + age)
    assert "stale or replayed" in caplog.text


def test_missing_header_or_secret_or_a_non_event_body_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="no Stripe-Signature"):
        verify_webhook(BODY, {}, [NEW_SECRET], now=NOW)
    with pytest.raises(WebhookRejected, match="no webhook signing secret"):
        verify_webhook(BODY, signed(BODY, NEW_SECRET), [], now=NOW)
    with pytest.raises(WebhookRejected, match="no timestamp"):
        verify_webhook(BODY, {"stripe-signature": "v1=abc"}, [NEW_SECRET], now=NOW)
    not_event = b'{"hello": "world"}'
    with pytest.raises(WebhookRejected, match="not a Stripe event"):
        verify_webhook(not_event, signed(not_event, NEW_SECRET), [NEW_SECRET], now=NOW)


def test_the_inbox_deduplicates_by_event_id(caplog: pytest.LogCaptureFixture) -> None:
    inbox = WebhookInbox([NEW_SECRET])
    assert inbox.accept(BODY, signed(BODY, NEW_SECRET), now=NOW) == EVENT
    retry = signed(BODY, NEW_SECRET, at=NOW + 60)  # Stripe re-signs each retry
    with caplog.at_level(logging.INFO):
        assert inbox.accept(BODY, retry, now=NOW + 60) is None
    assert "already processed" in caplog.text
    assert NEW_SECRET not in repr(inbox)


def test_events_name_the_streams_to_pull() -> None:
    assert streams_for("invoice.paid") == ["invoices"]
    assert streams_for("invoiceitem.created") == ["invoices"]
    assert streams_for("charge.refunded") == ["payments"]
    assert streams_for("customer.subscription.updated") == ["contracts"]
    assert streams_for("balance.available") == []
