"""Stripe webhooks: verify the signature, refuse stale and replayed deliveries, deduplicate.

:func:`verify_webhook` checks ``Stripe-Signature`` on the raw body (the SDK's HMAC check)
against every configured secret, so secrets rotate without downtime (Stripe signs with
each of an endpoint's active secrets, one ``v1`` signature each); the timestamp must be
within ``tolerance`` seconds (300) of ``now``. :class:`WebhookInbox` adds deduplication by
event id (Stripe retries deliveries for up to three days) and says which streams an event
invalidates, so the service layer can trigger an incremental pull of just those.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from subledger.core.errors import ConfigError

log = logging.getLogger(__name__)

TOLERANCE = 300
DEDUPE_SECONDS = 3 * 24 * 3600  # Stripe retries a delivery for up to three days


class WebhookRejected(ConfigError):
    """A delivery that must not be processed (forged, stale, malformed); answer it with HTTP 400."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _timestamp(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    raise WebhookRejected("Stripe-Signature has no timestamp", fix="send the header exactly as Stripe sent it")


def verify_webhook(
    raw_body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str | SecretStr],
    now: datetime | float | None = None,
    *,
    tolerance: int = TOLERANCE,
) -> dict[str, Any]:
    """The event a genuine, fresh delivery carries.

    Args:
        raw_body: the request body exactly as received (not re-serialised JSON).
        headers: the request headers (``Stripe-Signature`` is read case-insensitively).
        secrets: the endpoint's signing secrets (``whsec_...``); several while rotating.
        now: the current time (``datetime`` or Unix seconds); default the system clock.
        tolerance: the largest accepted age (or clock skew ahead) in seconds.

    Raises:
        WebhookRejected: no signature matches any secret (forged, or the wrong secret),
            the timestamp is outside the tolerance (stale: possibly a replay), or the body
            is not an event.
    """
    import stripe

    header = _header(headers, "Stripe-Signature")
    if not header:
        log.warning("stripe webhook rejected: no Stripe-Signature header")
        raise WebhookRejected("the request has no Stripe-Signature header", fix="only Stripe may call this endpoint")
    timestamp = _timestamp(header)
    current = now.timestamp() if isinstance(now, datetime) else (time.time() if now is None else now)
    payload = raw_body.decode("utf-8") if isinstance(raw_body, (bytes, bytearray)) else str(raw_body)
    values = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets if s]
    if not values:
        raise WebhookRejected("no webhook signing secret is configured", fix="set the endpoint's whsec_ secret")
    matched = False
    for secret in values:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
        except stripe.SignatureVerificationError:
            continue
        matched = True
        break
    if not matched:
        log.warning("stripe webhook rejected: signature matches none of the %d configured secret(s) (forged, or "
                    "signed with a secret not configured here)", len(values))
        raise WebhookRejected(
            "the Stripe-Signature matches none of the configured signing secrets",
            fix="check the endpoint's signing secret (whsec_...); during rotation configure both secrets",
        )
    age = current - timestamp
    if abs(age) > tolerance:
        log.warning("stripe webhook rejected: signed %ds %s, outside the %ds tolerance (stale or replayed)",
                    abs(int(age)), "ago" if age > 0 else "in the future", tolerance)
        raise WebhookRejected(
            f"the delivery was signed {abs(int(age))}s {'ago' if age > 0 else 'ahead'}, outside the {tolerance}s "
            "tolerance",
            fix="check the server clock; Stripe re-signs every retry, so a genuine retry is never stale",
        )
    try:
        event = json.loads(payload)
    except json.JSONDecodeError:
        log.warning("stripe webhook rejected: the signed body is not JSON")
        raise WebhookRejected("the signed body is not JSON", fix="send the body exactly as Stripe sent it") from None
    if not isinstance(event, dict) or event.get("object") != "event" or not event.get("id"):
        log.warning("stripe webhook rejected: the signed body is not a Stripe event")
        raise WebhookRejected("the signed body is not a Stripe event", fix="send Stripe event deliveries only")
    return event


def streams_for(event_type: str) -> list[str]:
    """The connector streams an event of ``event_type`` changes."""
    from subledger.plugins.stripe.connector import FEEDS

    return [name for name, feed in FEEDS.items() if event_type in feed.types]


class WebhookInbox:
    """Verified, deduplicated deliveries for one endpoint.

    Args:
        secrets: the endpoint's signing secrets (several while rotating).
        tolerance: seconds a delivery may be old (or early).
        capacity: how many event ids to remember (oldest forgotten first).
    """

    def __init__(self, secrets: Sequence[str | SecretStr], *, tolerance: int = TOLERANCE,
                 capacity: int = 100_000) -> None:
        self.secrets = list(secrets)
        self.tolerance = tolerance
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookInbox(secrets={len(self.secrets)}, seen={len(self._seen)})"

    def accept(self, raw_body: bytes, headers: Mapping[str, str], now: datetime | float | None = None
               ) -> dict[str, Any] | None:
        """The event if it is new; None for a duplicate (answer 200 so Stripe stops retrying).

        Raises:
            WebhookRejected: as :func:`verify_webhook`.
        """
        event = verify_webhook(raw_body, headers, self.secrets, now, tolerance=self.tolerance)
        current = now.timestamp() if isinstance(now, datetime) else (time.time() if now is None
                                                                     else float(now))
        with self._lock:
            for event_id, seen_at in list(self._seen.items()):
                if current - seen_at <= DEDUPE_SECONDS and len(self._seen) <= self.capacity:
                    break
                del self._seen[event_id]
            if event["id"] in self._seen:
                log.info("stripe webhook %s (%s) already processed; ignoring the duplicate delivery",
                         event["id"], event.get("type"))
                return None
            self._seen[event["id"]] = current
        return event
