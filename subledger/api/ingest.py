"""Usage ingest over HTTP: validate each event on its own, store the good ones exactly once.

A batch is never all-or-nothing: every event gets its own result, ``accepted``,
``duplicate`` (the same id with the same payload is already stored) or ``rejected`` with the
field and the reason (bad field, same id with a different payload, too old, too far ahead).
Accepted events go through :func:`subledger.core.store.usage.ingest_usage`, which is
exactly-once on ``UNIQUE(system, event_id)`` and updates the daily rollups the standing
endpoint reads.

Validation is hand-written rather than one pydantic model per event: it runs for every
event of every batch, and a rejected event must not take the batch down with it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from subledger.core.connector import UsageEventIn
from subledger.core.db_types import decimal_text, utcnow
from subledger.core.model.period import AccountingPeriod
from subledger.core.model.usage import UsageEvent
from subledger.core.store.usage import ingest_usage

FIELDS = frozenset({"id", "customer", "customer_external_id", "meter", "quantity", "timestamp", "properties"})
MAX_ID = 255
MAX_METER = 128


@dataclass
class EventResult:
    """What happened to one event of a batch."""

    index: int
    id: str | None
    status: str  # accepted, duplicate, rejected
    code: str | None = None  # invalid, conflict, too_old, too_new
    field: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "id": self.id, "status": self.status}
        if self.status == "rejected":
            out.update(code=self.code, field=self.field, reason=self.reason)
        return out


@dataclass
class BatchResult:
    results: list[EventResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.count("accepted"),
            "duplicates": self.count("duplicate"),
            "rejected": self.count("rejected"),
            "results": [r.to_json() for r in self.results],
        }


class Invalid(Exception):
    def __init__(self, field: str, reason: str, code: str = "invalid") -> None:
        super().__init__(reason)
        self.field, self.reason, self.code = field, reason, code


def parse_body(raw: bytes) -> Any:
    """The request body as JSON, with every decimal number kept exact."""
    return json.loads(raw, parse_float=Decimal)


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(name, f"{name} must be a non-empty string")
    if len(value) > limit:
        raise Invalid(name, f"{name} is longer than {limit} characters")
    return value


def _quantity(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise Invalid("quantity", "quantity must be a number or a decimal string, not a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        q = value
    elif isinstance(value, str):
        try:
            q = Decimal(value.strip())
        except InvalidOperation:
            raise Invalid("quantity", f"quantity {value[:40]!r} is not a decimal number") from None
    else:
        raise Invalid("quantity", "quantity must be a number or a decimal string such as \"12.5\"")
    if not q.is_finite():
        raise Invalid("quantity", "quantity must be finite")
    if abs(q.adjusted()) > 30:
        raise Invalid("quantity", "quantity is out of range (more than 30 digits)")
    return q


def _timestamp(value: Any) -> datetime:
    if isinstance(value, bool):
        raise Invalid("timestamp", "timestamp must be an ISO 8601 string with a timezone or Unix seconds")
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        seconds = float(value)
        if not math.isfinite(seconds) or not 0 <= seconds < 32503680000:
            raise Invalid("timestamp", "timestamp in Unix seconds is out of range")
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str):
        raise Invalid("timestamp", "timestamp must be an ISO 8601 string with a timezone or Unix seconds")
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Invalid("timestamp", f"timestamp {value[:40]!r} is not ISO 8601 (e.g. 2026-03-01T12:00:00Z)") from None
    if at.tzinfo is None:
        raise Invalid("timestamp", "timestamp has no timezone; add Z or an offset such as +00:00")
    return at.astimezone(UTC)


def _properties(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("properties", "properties must be a JSON object")
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    raise TypeError


def validate_event(raw: Any) -> UsageEventIn:
    """One event of a batch as a :class:`UsageEventIn`; :class:`Invalid` names the field at fault."""
    if not isinstance(raw, dict):
        raise Invalid("", "each event must be a JSON object")
    extra = raw.keys() - FIELDS
    if extra:
        name = sorted(extra)[0]
        raise Invalid(name, f"unknown field {name!r}; an event has {', '.join(sorted(FIELDS))}")
    event_id = _text(raw.get("id"), "id", MAX_ID)
    customer = raw.get("customer_external_id")
    name = "customer_external_id"
    if customer is None:
        customer, name = raw.get("customer"), "customer"
    elif raw.get("customer") is not None:
        raise Invalid("customer", "give either customer or customer_external_id, not both")
    if customer is None:
        raise Invalid("customer", "customer (or customer_external_id) is required")
    customer = _text(customer, name, MAX_ID)
    meter = _text(raw.get("meter"), "meter", MAX_METER)
    if "quantity" not in raw:
        raise Invalid("quantity", "quantity is required")
    quantity = _quantity(raw["quantity"])
    if "timestamp" not in raw:
        raise Invalid("timestamp", "timestamp is required")
    at = _timestamp(raw["timestamp"])
    props = _properties(raw.get("properties"))
    # The payload hash decides duplicate (same) vs conflict (different): it is over the
    # canonical content, so 12.50 and "12.5" or two spellings of one instant are the same.
    canonical = (customer, meter, decimal_text(quantity.normalize()), at.isoformat(), props)
    try:
        digest = orjson.dumps(canonical, default=_json_default, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raise Invalid("properties", "properties must hold JSON values only") from None

    return UsageEventIn(event_id, customer, meter, quantity, at, props, hashlib.sha256(digest).hexdigest())


def _month_start(d: date) -> date:
    return d.replace(day=1)


def earliest_open(now: datetime, grace_days: int, closed_through: str | None) -> datetime:
    """The oldest instant still accepted: the current month's start, or the previous month's
    while it is within ``grace_days`` of its end, never inside a closed accounting period."""
    this_month = _month_start(now.date())
    start = this_month
    if now < datetime.combine(this_month, datetime.min.time(), UTC) + timedelta(days=grace_days):
        start = _month_start(this_month - timedelta(days=1))
    if closed_through:
        year, month = (int(p) for p in closed_through.split("-"))
        after_closed = date(year + month // 12, month % 12 + 1, 1)
        start = max(start, after_closed)
    return datetime.combine(start, datetime.min.time(), UTC)


_stamps = itertools.count()


def _fetch_stamp() -> datetime:
    # A per-call unique fetched_at, so the slow path can tell the rows this call inserted
    # from rows that were there before (same id, same payload: a duplicate).
    return utcnow().replace(microsecond=0) + timedelta(microseconds=next(_stamps) % 1_000_000)


def ingest_batch(
    engine: Engine,
    source: str,
    events: list[Any],
    *,
    now: datetime | None = None,
    grace_days: int = 3,
    max_future_seconds: int = 300,
) -> BatchResult:
    """Validate and store one batch; every event gets a result."""
    now = now or utcnow()
    out = BatchResult([EventResult(i, None, "rejected") for i in range(len(events))])
    good: list[tuple[int, UsageEventIn]] = []
    with Session(engine) as session, session.begin():
        closed = session.exec(select(func.max(AccountingPeriod.period))).one()[0]
        oldest = earliest_open(now, grace_days, closed)
        newest = now + timedelta(seconds=max_future_seconds)
        for i, raw in enumerate(events):
            res = out.results[i]
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                res.id = raw["id"]
            try:
                ev = validate_event(raw)
                if ev.occurred_at < oldest:
                    raise Invalid(
                        "timestamp",
                        f"timestamp {ev.occurred_at.isoformat()} is before {oldest.isoformat()}, the start of the "
                        "oldest open period (its grace window has passed); send a correction in the open period",
                        "too_old",
                    )
                if ev.occurred_at > newest:
                    raise Invalid(
                        "timestamp",
                        f"timestamp {ev.occurred_at.isoformat()} is more than {max_future_seconds}s in the future; "
                        "check the sender's clock",
                        "too_new",
                    )
            except Invalid as bad:
                res.code, res.field, res.reason = bad.code, bad.field or None, bad.reason
                continue
            good.append((i, ev))
        if good:
            _store(session, source, good, out)
    return out


def _store(session: Session, source: str, good: list[tuple[int, UsageEventIn]], out: BatchResult) -> None:
    first: dict[str, UsageEventIn] = {}
    for i, ev in good:
        seen = first.get(ev.event_id)
        if seen is None:
            first[ev.event_id] = ev
            out.results[i].status = "accepted"
        elif seen.payload_hash == ev.payload_hash:
            out.results[i].status = "duplicate"
        else:
            _conflict(out.results[i], "an earlier event of this batch")
    stamp = _fetch_stamp()
    result = ingest_usage(session, source, list(first.values()), fetched_at=stamp)
    if result.inserted == len(first):
        return  # fast path: every distinct event was new
    stored = {
        eid: (h, at)
        for eid, h, at in session.exec(
            select(UsageEvent.event_id, UsageEvent.payload_hash, UsageEvent.fetched_at).where(
                UsageEvent.system == source, UsageEvent.event_id.in_(list(first))
            )
        ).all()
    }
    for i, ev in good:
        res = out.results[i]
        if res.status != "accepted":
            continue
        h, at = stored.get(ev.event_id, (None, None))
        if at == stamp:
            continue  # inserted by this call
        if h == ev.payload_hash:
            res.status = "duplicate"
        else:
            _conflict(res, "an event already stored")


def _conflict(res: EventResult, against: str) -> None:
    res.status, res.code, res.field = "rejected", "conflict", "id"
    res.reason = (
        f"event id {res.id!r} was already used by {against} with a different payload; usage events are immutable: "
        "send a correction as a new event with a new id"
    )
