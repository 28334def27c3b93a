"""Vendor webhooks: verify with the connector's own verifier, store once per event, pull in the background.

A connector takes webhooks when its class declares ``capabilities.webhooks`` and provides
a verifier, either as methods on the class (``verify_webhook(raw_body, headers, secrets)``
returning the event dict, and ``webhook_streams(event_type)``), or, as the Stripe plugin
does, as functions ``verify_webhook`` and ``streams_for`` in a ``webhooks`` module of the
connector's package. The class is found through the plugin registry; the API imports no
plugin by name.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from subledger.core.db_types import utcnow
from subledger.core.model.webhook_event import WebhookEvent
from subledger.core.secrets import redact

log = logging.getLogger(__name__)

Verify = Callable[[bytes, Mapping[str, str], Sequence[str]], dict[str, Any]]
Streams = Callable[[str], list[str]]


@dataclass(frozen=True)
class Verifier:
    verify: Verify
    streams: Streams


def verifier_for(cls: type[Any]) -> Verifier | None:
    """The webhook verifier of a connector class, or None when it takes no webhooks."""
    if not getattr(getattr(cls, "capabilities", None), "webhooks", False):
        return None
    if callable(getattr(cls, "verify_webhook", None)) and callable(getattr(cls, "webhook_streams", None)):
        return Verifier(cls.verify_webhook, cls.webhook_streams)
    package = cls.__module__.rpartition(".")[0]
    try:
        module = importlib.import_module(f"{package}.webhooks")
    except ImportError:
        return None
    verify, streams = getattr(module, "verify_webhook", None), getattr(module, "streams_for", None)
    if not (callable(verify) and callable(streams)):
        return None
    return Verifier(verify, streams)


def signature_digest(headers: Mapping[str, str]) -> str:
    """A hash of the signature headers: equal only for a byte-for-byte replay of one delivery."""
    sig = "|".join(f"{k.lower()}={v}" for k, v in sorted(headers.items()) if "signature" in k.lower())
    return hashlib.sha256(sig.encode()).hexdigest()


@dataclass
class Receipt:
    status: str  # new, duplicate, replayed
    event: WebhookEvent


def record_delivery(engine: Engine, connection: str, event: dict[str, Any], streams: list[str], digest: str) -> Receipt:
    """Store a verified event once per (connection, event id); count and classify repeats."""
    row = WebhookEvent(
        connection=connection, event_id=str(event["id"]), type=str(event.get("type", ""))[:128],
        streams=streams, payload=event, signatures=[digest],
    )
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            session.add(row)
        return Receipt("new", row)
    except IntegrityError:
        pass
    with Session(engine, expire_on_commit=False) as session, session.begin():
        stored = session.exec(
            select(WebhookEvent).where(WebhookEvent.connection == connection, WebhookEvent.event_id == row.event_id)
        ).one()
        if digest in stored.signatures:
            return Receipt("replayed", stored)
        stored.deliveries += 1
        stored.signatures = [*stored.signatures[-19:], digest]
        session.add(stored)
        return Receipt("duplicate", stored)


def process_event(engine: Engine, event_row_id: int, pull: Callable[[str, list[str]], Any]) -> None:
    """Pull the streams the event names, then mark it processed (or failed, with the error)."""
    with Session(engine) as session:
        row = session.get(WebhookEvent, event_row_id)
        assert row is not None
        connection, streams = row.connection, list(row.streams)
    error = None
    try:
        if streams:
            pull(connection, streams)
    except Exception as exc:
        error = redact(str(exc))[:2000]
        log.warning("webhook event %s of %s: pulling %s failed: %s", event_row_id, connection, streams, error)
    with Session(engine) as session, session.begin():
        row = session.get(WebhookEvent, event_row_id)
        assert row is not None
        row.status = "failed" if error else "processed"
        row.error = error
        row.processed_at = utcnow()
        session.add(row)
