"""Incremental reads through Stripe's Events API, with a lookback window.

A stream's first read lists every object (newest first, a checkpoint after each page, so
a crash resumes at the page it stopped on). Before listing, it notes where the event log
stands. Later reads list the events of the stream's types since then, re-reading each
changed object once: creations *and* updates are caught (a list filtered on ``created``
would miss an invoice paid today that was created last month).

The event log is re-scanned ``lookback`` seconds behind the cursor because an event can
become visible after events created later; the ids of events already handled in that
window are kept in the state, so nothing is handled twice. The state stays small: a
timestamp, the ids of the last few minutes' events, and the wall-clock time of the last
read. Stripe keeps events for 30 days; a cursor older than ``events_retention_days``
starts over with a full read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from subledger.plugins.stripe.client import StripeApi


@dataclass(frozen=True)
class Change:
    """An object some events touched, and the newest of those events."""

    object_id: str
    event: dict[str, Any]

    @property
    def deleted(self) -> bool:
        return self.event["type"].endswith(".deleted")


@dataclass(frozen=True)
class EventFeed:
    """The event types that change one stream's objects, and how to find the object id.

    Attributes:
        types: event types to list (Stripe's ``types[]`` takes up to 20).
        object_id: the id of the stream's object an event changed (None: not this stream's).
    """

    types: tuple[str, ...]
    object_id: Callable[[dict[str, Any]], str | None] = lambda event: event["data"]["object"].get("id")


def now_utc() -> datetime:
    return datetime.now(UTC)


def start_state(api: StripeApi, feed: EventFeed, lookback: int) -> dict[str, Any]:
    """Where the event log stands before a full read: the newest event's time, and the
    ids of this feed's events inside the lookback window (their changes are in the read)."""
    newest = api.call("list events", lambda: api.v1.events.list(params={"limit": 1}))
    if not newest.data:
        return {"since": 0, "seen": {}, "read_at": now_utc().isoformat()}
    since = int(newest.data[0].created)
    seen = {e["id"]: int(e["created"]) for e in _events(api, feed, since - lookback)}
    return {"since": since, "seen": seen, "read_at": now_utc().isoformat()}


def _events(api: StripeApi, feed: EventFeed, from_ts: int) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"created": {"gte": max(0, from_ts)}, "types": list(feed.types)}
    return list(api.list_all("list events", lambda q: api.v1.events.list(params=q), params))


def expired(state: dict[str, Any], retention_days: int) -> bool:
    """True when the cursor is older than Stripe keeps events (a full read is needed)."""
    read_at = state.get("read_at")
    if not read_at:
        return True
    try:
        last = datetime.fromisoformat(read_at)
    except ValueError:
        return True
    return now_utc() - last > timedelta(days=retention_days)


def changes(api: StripeApi, feed: EventFeed, state: dict[str, Any], lookback: int
            ) -> tuple[list[Change], dict[str, Any]]:
    """The objects changed since ``state`` (oldest change first) and the state after them."""
    since = int(state.get("since") or 0)
    seen: dict[str, int] = dict(state.get("seen") or {})
    events = [e for e in _events(api, feed, since - lookback) if e["id"] not in seen]
    events.sort(key=lambda e: (e["created"], e["id"]))
    latest: dict[str, Change] = {}
    for event in events:
        oid = feed.object_id(event)
        if oid:
            latest.pop(oid, None)  # keep the newest event, ordered by it
            latest[oid] = Change(oid, event)
    new_since = max([since, *(int(e["created"]) for e in events)])
    window = new_since - lookback
    merged = {**seen, **{e["id"]: int(e["created"]) for e in events}}
    kept = {event_id: created for event_id, created in sorted(merged.items()) if created >= window}
    return list(latest.values()), {"since": new_since, "seen": kept, "read_at": now_utc().isoformat()}
