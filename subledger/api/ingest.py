"""Usage ingest over HTTP: validate each event on its own, store the good ones exactly once.

A batch is never all-or-nothing: every event gets its own result, ``accepted``,
``duplicate`` (the same id with the same payload is already stored) or ``rejected`` with a
code, the field, the reason and the fix. Accepted events go through
:func:`subledger.core.store.usage.ingest_usage`, which is exactly-once on
``UNIQUE(system, event_id)`` and updates the daily rollups the standing endpoint reads.

What is refused, before anything reaches the store (codes in ``docs/service.md``):

* malformed or over-long fields, NUL and other control characters in ids, unpaired
  surrogates anywhere (``invalid``, ``too_long``);
* quantities and timestamps outside the bounds every path checks
  (:mod:`subledger.core.terms.bounds`: 30 significant digits, below ``10**30``, years
  2000 to 2100) (``out_of_range``): exponent forms such as ``1e999999`` are refused from
  the exponent, without ever expanding the number;
* properties over ``max_properties_bytes`` or nested deeper than :data:`MAX_DEPTH`
  (``too_large``);
* negative quantities on meters not listed in ``correction_meters`` (``negative_quantity``);
* events outside the open window (``too_old``, ``too_new``);
* events whose customer or meter the store does not know (``unknown_customer``,
  ``unknown_meter``, see :mod:`subledger.api.known`): these are *quarantined* as
  :class:`~subledger.core.model.sync_state.Reject` rows that ``subledger rejects`` lists
  and :func:`subledger.api.quarantine.release` stores once they are known.

Validation is hand-written rather than one pydantic model per event: it runs for every
event of every batch, and a rejected event must not take the batch down with it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Context, Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from subledger.api.known import Catalog
from subledger.core.connector import UsageEventIn
from subledger.core.db_types import decimal_text, utcnow
from subledger.core.model.period import AccountingPeriod
from subledger.core.model.sync_state import Reject
from subledger.core.model.usage import UsageEvent
from subledger.core.store.usage import ingest_usage
from subledger.core.terms.bounds import END_INSTANT, FIRST_INSTANT, MAX_DIGITS, MAX_NUMBER_TEXT, number_problem

FIELDS = frozenset({"id", "customer", "customer_external_id", "meter", "quantity", "timestamp", "properties"})
MAX_ID = 255  # id and customer, characters (the store's column width)
MAX_METER = 128
MAX_KEY = 255  # a property name, characters
MAX_DEPTH = 8  # nesting of properties
MAX_TIMESTAMP_TEXT = 64
# Quantities and instants lie within the bounds every path of subledger checks (subledger.core.terms.bounds):
# at most MAX_DIGITS significant digits, below 10**MAX_DIGITS, no digit finer than 10**-MAX_DIGITS, written in at
# most MAX_NUMBER_TEXT characters; instants from EARLIEST (inclusive) to LATEST (exclusive).
EARLIEST = FIRST_INSTANT
LATEST = END_INSTANT
SPAN = f"{EARLIEST:%Y-%m-%d} to {LATEST - timedelta(days=1):%Y-%m-%d} (UTC)"
QUARANTINE_STREAM = "usage_quarantine"  # Reject.stream of quarantined API events

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WIDE = Context(prec=2 * MAX_DIGITS + 4)  # normalize() without rounding a bounded quantity
_ID_BAD = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # control characters, unpaired surrogates
_TEXT_BAD = re.compile("[\x00\ud800-\udfff]")  # in property names and values: NUL, unpaired surrogates
_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")  # no exponent: within the bounds when short
_PLAIN_DIGITS = MAX_DIGITS
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Oversize:
    """A JSON number literal too long to parse (kept as text so the event, not the body, is refused)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


@dataclass
class EventResult:
    """What happened to one event of a batch."""

    index: int
    id: str | None
    status: str  # accepted, duplicate, rejected
    code: str | None = None
    field: str | None = None
    reason: str | None = None
    fix: str | None = None
    quarantined: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "id": self.id, "status": self.status}
        if self.status == "rejected":
            out.update(code=self.code, field=self.field, reason=self.reason, fix=self.fix)
            if self.quarantined:
                out["quarantined"] = True
        return out


@dataclass
class BatchResult:
    results: list[EventResult] = field(default_factory=list)
    counted_by_standing: bool = True
    standing_note: str | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accepted": self.count("accepted"),
            "duplicates": self.count("duplicate"),
            "rejected": self.count("rejected"),
            "quarantined": sum(1 for r in self.results if r.quarantined),
            "counted_by_standing": self.counted_by_standing,
            "results": [r.to_json() for r in self.results],
        }
        if self.standing_note:
            out["standing_note"] = self.standing_note
        return out


class Invalid(Exception):
    def __init__(self, field: str | None, reason: str, code: str = "invalid", fix: str = "") -> None:
        super().__init__(reason)
        self.field, self.reason, self.code, self.fix = field, reason, code, fix


@dataclass(frozen=True)
class Limits:
    """The per-event limits of the service settings."""

    max_properties_bytes: int = 4096
    correction_meters: frozenset[str] = frozenset()


def _parse_int(text: str) -> int | Oversize:
    return int(text) if len(text) <= MAX_NUMBER_TEXT else Oversize(text)


def _parse_float(text: str) -> Decimal | Oversize:
    return Decimal(text) if len(text) <= MAX_NUMBER_TEXT else Oversize(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def parse_body(raw: bytes) -> Any:
    """The request body as JSON, with every decimal number kept exact.

    NaN and Infinity are not JSON and refuse the body; a number literal longer than
    :data:`MAX_NUMBER_TEXT` characters is kept unparsed (:class:`Oversize`) so that only
    its event is refused.
    """
    return json.loads(raw, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_no_constant)


def safe_name(value: str, limit: int = 64) -> str:
    """A field name fit to echo back: cut to ``limit`` characters, surrogates escaped."""
    cut = value[:limit] + ("..." if len(value) > limit else "")
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(name, f"{name} must be a non-empty string", fix=f"send {name} as a string")
    if len(value) > limit:
        raise Invalid(name, f"{name} is {len(value)} characters long; at most {limit} are allowed", "too_long",
                      fix=f"shorten {name} to {limit} characters")
    if _ID_BAD.search(value):
        raise Invalid(name, f"{name} holds a NUL, another control character or an unpaired surrogate",
                      fix=f"send {name} as printable UTF-8 text")
    return value


def quantity_of(value: Any) -> Decimal:
    """An event's quantity as an exact, bounded decimal; :class:`Invalid` says why not."""
    fix = 'send a decimal such as 12.5 or "12.5"'
    if isinstance(value, bool):
        raise Invalid("quantity", "quantity must be a number or a decimal string, not a boolean", fix=fix)
    if isinstance(value, Oversize):
        value = value.text
    if isinstance(value, int):
        q = Decimal(value)
    elif isinstance(value, Decimal):
        q = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) <= _PLAIN_DIGITS and _PLAIN.fullmatch(text):
            q = Decimal(text)  # at most 30 characters without an exponent: within the bounds
            return Decimal(0) if q.is_zero() else q
        if len(text) > MAX_NUMBER_TEXT:
            raise Invalid("quantity", f"quantity is {len(text)} characters long; at most {MAX_NUMBER_TEXT} are "
                          "allowed", "out_of_range", fix=fix)
        if not _DECIMAL_TEXT.fullmatch(text):
            raise Invalid("quantity", f"quantity {value[:40]!r} is not a decimal number", fix=fix)
        try:
            q = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid text
            raise Invalid("quantity", f"quantity {value[:40]!r} is not a decimal number", fix=fix) from None
    else:
        raise Invalid("quantity", "quantity must be a number or a decimal string such as \"12.5\"", fix=fix)
    if not q.is_finite():  # pragma: no cover - neither the parser nor the pattern yields one
        raise Invalid("quantity", "quantity must be finite", fix=fix)
    if q.is_zero():
        return Decimal(0)
    # Read from the exponent and the digit tuple: 1e999999 is refused without ever expanding it.
    problem = number_problem(q)
    if problem:
        raise Invalid("quantity", f"quantity {problem}", "out_of_range",
                      fix=f"send at most {MAX_DIGITS} significant digits, below 10^{MAX_DIGITS}, in a larger or "
                      "smaller unit if need be")
    return q


def timestamp_of(value: Any) -> datetime:
    """An event's timestamp as an aware UTC instant in :data:`EARLIEST`..:data:`LATEST`."""
    fix = "send ISO 8601 with a timezone (2026-03-01T12:00:00Z) or Unix seconds"
    if isinstance(value, bool | Oversize):
        raise Invalid("timestamp", "timestamp must be an ISO 8601 string with a timezone or Unix seconds", fix=fix)
    if isinstance(value, int | Decimal):
        if not (int(EARLIEST.timestamp()) <= value < int(LATEST.timestamp())):
            raise Invalid("timestamp", f"timestamp in Unix seconds is outside {SPAN}", "out_of_range", fix=fix)
        seconds = Decimal(value)
        whole = int(seconds)
        micros = int((seconds - whole) * 1_000_000)
        return _EPOCH + timedelta(seconds=whole, microseconds=micros)
    if not isinstance(value, str):
        raise Invalid("timestamp", "timestamp must be an ISO 8601 string with a timezone or Unix seconds", fix=fix)
    if len(value) > MAX_TIMESTAMP_TEXT:
        raise Invalid("timestamp", f"timestamp is {len(value)} characters long; at most {MAX_TIMESTAMP_TEXT} are "
                      "allowed", "too_long", fix=fix)
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Invalid("timestamp", f"timestamp {value[:40]!r} is not ISO 8601 (e.g. 2026-03-01T12:00:00Z)",
                      fix=fix) from None
    if at.tzinfo is None:
        raise Invalid("timestamp", "timestamp has no timezone; add Z or an offset such as +00:00", fix=fix)
    try:
        at = at.astimezone(UTC)
    except (OverflowError, ValueError):
        at = EARLIEST - timedelta(days=1)  # 0001-01-01T00:00+14:00 and the like: out of range below
    if not EARLIEST <= at < LATEST:
        raise Invalid("timestamp", f"timestamp is outside {SPAN}", "out_of_range", fix=fix)
    return at


def _check_json(value: Any, depth: int) -> None:
    """Properties hold JSON values only, nest at most :data:`MAX_DEPTH` deep, and carry no NUL."""
    fix = "send properties as a flat JSON object of short names and values"
    if depth > MAX_DEPTH:
        raise Invalid("properties", f"properties nest deeper than {MAX_DEPTH} levels", "too_large", fix=fix)
    if isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_KEY:
                raise Invalid("properties", f"a property name is {len(key)} characters long; at most {MAX_KEY} "
                              "are allowed", "too_long", fix=fix)
            if _TEXT_BAD.search(key):
                raise Invalid("properties", "a property name holds a NUL or an unpaired surrogate", fix=fix)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, str):
        if _TEXT_BAD.search(value):
            raise Invalid("properties", "a property value holds a NUL or an unpaired surrogate", fix=fix)
    elif isinstance(value, Oversize):
        raise Invalid("properties", f"a property holds a number literal longer than {MAX_NUMBER_TEXT} characters",
                      "out_of_range", fix="send it as a string")
    elif isinstance(value, Decimal):
        problem = number_problem(value)
        if problem:
            raise Invalid("properties", f"a property holds a number that {problem}", "out_of_range",
                          fix="send it as a string")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise Invalid("properties", "a property holds an integer beyond 64 bits", "out_of_range",
                          fix="send it as a string")
    elif not (value is None or isinstance(value, bool)):
        raise Invalid("properties", "properties must hold JSON values only", fix=fix)


class _Unbounded(Exception):
    """A property number the fast path will not write out (the walk names it)."""


def _props_default(value: Any) -> Any:
    if isinstance(value, Decimal) and number_problem(value) is None:
        return decimal_text(value)
    raise _Unbounded


def _properties(value: Any, limit: int) -> tuple[dict[str, Any], bytes]:
    """The properties and their canonical JSON (sorted keys), once they are known to be within bounds."""
    if value is None:
        return {}, b"{}"
    if not isinstance(value, dict):
        raise Invalid("properties", "properties must be a JSON object", fix="send properties as a JSON object")
    if not value:
        return value, b"{}"
    try:
        # orjson refuses unpaired surrogates, integers beyond 64 bits and unbounded numbers (the
        # default above) by itself; the walk then says which.
        dumped = orjson.dumps(value, default=_props_default, option=orjson.OPT_SORT_KEYS)
    except (TypeError, _Unbounded):
        _check_json(value, 1)
        raise Invalid("properties", "properties must hold JSON values only",
                      fix="send properties as a JSON object") from None
    # Small and flat (the common case) needs no walk: no name can be too long, nothing nests.
    if b"\\u0000" in dumped or len(dumped) > MAX_KEY or dumped.count(b"{") + dumped.count(b"[") > 1:
        _check_json(value, 1)
    if len(dumped) > limit:
        raise Invalid("properties", f"properties are {len(dumped)} bytes as JSON; at most {limit} are allowed",
                      "too_large", fix="send fewer or shorter properties (max_properties_bytes in the service "
                      "settings)")
    return value, dumped


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    raise TypeError


def validate_event(raw: Any, limits: Limits = Limits()) -> UsageEventIn:
    """One event of a batch as a :class:`UsageEventIn`; :class:`Invalid` names the field at fault."""
    if not isinstance(raw, dict):
        raise Invalid(None, "each event must be a JSON object", fix="send each event as a JSON object")
    extra = raw.keys() - FIELDS
    if extra:
        name = safe_name(sorted(extra)[0])
        raise Invalid(name, f"unknown field {name!r}; an event has {', '.join(sorted(FIELDS))}",
                      fix=f"remove {name!r} (put extra data in properties)")
    event_id = _text(raw.get("id"), "id", MAX_ID)
    customer = raw.get("customer_external_id")
    name = "customer_external_id"
    if customer is None:
        customer, name = raw.get("customer"), "customer"
    elif raw.get("customer") is not None:
        raise Invalid("customer", "give either customer or customer_external_id, not both",
                      fix="drop customer_external_id")
    if customer is None:
        raise Invalid("customer", "customer (or customer_external_id) is required", fix="name the customer")
    customer = _text(customer, name, MAX_ID)
    meter = _text(raw.get("meter"), "meter", MAX_METER)
    if "quantity" not in raw:
        raise Invalid("quantity", "quantity is required", fix="send a quantity such as 12.5")
    quantity = quantity_of(raw["quantity"])
    if quantity < 0 and meter not in limits.correction_meters:
        raise Invalid("quantity", f"quantity {decimal_text(quantity)} is negative, and meter {meter!r} takes no "
                      "corrections", "negative_quantity",
                      fix="send a quantity of 0 or more, or list the meter in correction_meters in the service "
                      "settings if its negative events are corrections")
    if "timestamp" not in raw:
        raise Invalid("timestamp", "timestamp is required", fix="send the instant the usage happened")
    at = timestamp_of(raw["timestamp"])
    props, props_json = _properties(raw.get("properties"), limits.max_properties_bytes)
    # The payload hash decides duplicate (same) vs conflict (different): it is over the
    # canonical content, so 12.50 and "12.5" or two spellings of one instant are the same.
    # It is the SHA-256 of the JSON array [customer, meter, quantity, instant, properties]
    # with sorted keys, assembled from the properties' JSON already written above.
    head = orjson.dumps((customer, meter, decimal_text(quantity.normalize(_WIDE)), at.isoformat()))
    digest = head[:-1] + b"," + props_json + b"]"
    return UsageEventIn(event_id, customer, meter, quantity, at, props, hashlib.sha256(digest).hexdigest())


def event_document(ev: UsageEventIn, customer_field: str = "customer") -> str:
    """An event as JSON that :func:`validate_event` reads back to the same event (the quarantine's ``raw``)."""
    doc = {"id": ev.event_id, customer_field: ev.customer_external_id, "meter": ev.meter,
           "quantity": decimal_text(ev.quantity), "timestamp": ev.occurred_at.isoformat(),
           "properties": ev.properties}
    return orjson.dumps(doc, default=_json_default).decode()


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


@dataclass
class Window:
    """The instants an event may carry: from the oldest open period to a little ahead of the clock."""

    oldest: datetime
    newest: datetime
    max_future_seconds: int

    def check(self, at: datetime) -> None:
        if at < self.oldest:
            raise Invalid(
                "timestamp",
                f"timestamp {at.isoformat()} is before {self.oldest.isoformat()}, the start of the oldest open "
                "period (its grace window has passed, or the period is closed)",
                "too_old", fix="send a correcting event dated in the open period",
            )
        if at > self.newest:
            raise Invalid(
                "timestamp",
                f"timestamp {at.isoformat()} is more than {self.max_future_seconds}s in the future",
                "too_new", fix="check the sender's clock",
            )


def closed_through(session: Session) -> str | None:
    """The latest closed accounting period (``YYYY-MM``), if any."""
    return session.execute(select(func.max(AccountingPeriod.period))).scalar()


def window(session: Session, now: datetime, grace_days: int, max_future_seconds: int) -> Window:
    oldest = earliest_open(now, grace_days, closed_through(session))
    return Window(oldest, now + timedelta(seconds=max_future_seconds), max_future_seconds)


@dataclass
class Pending:
    """A valid event waiting for the known-names check: its result and the field that named its customer."""

    index: int
    event: UsageEventIn
    customer_field: str


def ingest_batch(
    engine: Engine,
    source: str,
    events: list[Any],
    *,
    now: datetime | None = None,
    grace_days: int = 3,
    max_future_seconds: int = 300,
    limits: Limits = Limits(),
    standing: Callable[[Session], tuple[bool, str | None]] | None = None,
) -> BatchResult:
    """Validate and store one batch; every event gets a result.

    Args:
        standing: tells whether standing counts usage stored under ``source`` (and why not).
    """
    now = now or utcnow()
    out = BatchResult([EventResult(i, None, "rejected") for i in range(len(events))])
    with Session(engine) as session, session.begin():
        win = window(session, now, grace_days, max_future_seconds)
        pending: list[Pending] = []
        for i, raw in enumerate(events):
            res = out.results[i]
            if isinstance(raw, dict):
                rid = raw.get("id")
                if isinstance(rid, str) and len(rid) <= MAX_ID and not _ID_BAD.search(rid):
                    res.id = rid
            try:
                ev = validate_event(raw, limits)
                win.check(ev.occurred_at)
            except Invalid as bad:
                _refuse(res, bad)
                continue
            name = "customer_external_id" if raw.get("customer_external_id") is not None else "customer"
            pending.append(Pending(i, ev, name))
        good = sort_known(session, source, pending, out.results, now)
        if good:
            store_events(session, source, good, out.results)
        if standing is not None:
            out.counted_by_standing, out.standing_note = standing(session)
    return out


def _refuse(res: EventResult, bad: Invalid) -> None:
    res.status, res.code, res.field, res.reason, res.fix = "rejected", bad.code, bad.field or None, bad.reason, bad.fix


def sort_known(
    session: Session, source: str, pending: list[Pending], results: Sequence[EventResult], now: datetime
) -> list[Pending]:
    """The events whose customer and meter are known; the others are quarantined (and their results say so)."""
    if not pending:
        return []
    catalog = Catalog(session, source)
    customers = catalog.known_customers({p.event.customer_external_id for p in pending})
    meters = catalog.known_meters({p.event.meter for p in pending})
    good, held = [], []
    for p in pending:
        problem = unknown_problem(p, customers, meters)
        if problem is None:
            good.append(p)
        else:
            held.append((p, problem))
    if not held:
        return good
    # An event stored before (its names were known then) is answered as stored, not quarantined again.
    ids = list({p.event.event_id for p, _ in held})
    stored = dict(session.execute(select(UsageEvent.event_id, UsageEvent.payload_hash).where(
        UsageEvent.system == source, UsageEvent.event_id.in_(ids))).all())
    kept = []
    for p, problem in held:
        res, h = results[p.index], stored.get(p.event.event_id)
        if h == p.event.payload_hash:
            res.status = "duplicate"
        elif h is not None:
            _conflict(res, p.event.event_id, "an event already stored")
        else:
            _refuse(res, problem)
            res.quarantined = True
            kept.append((p, problem))
    if kept:
        quarantine(session, source, kept, now)
    return good


def unknown_problem(p: Pending, customers: Collection[str], meters: Collection[str]) -> Invalid | None:
    """Why ``p`` cannot be stored yet (its customer or meter is unknown), or None."""
    ev = p.event
    customer_ok, meter_ok = ev.customer_external_id in customers, ev.meter in meters
    if customer_ok and meter_ok:
        return None
    release = "then `subledger rejects release` (or POST /v1/usage/quarantine/release) stores it once"
    if not customer_ok:
        also = f"; its meter {ev.meter!r} is not known either" if not meter_ok else ""
        return Invalid(
            p.customer_field,
            f"customer {ev.customer_external_id!r} is not known: no contract names it and the identity map does not "
            f"link it{also}; the event is quarantined, not counted",
            "unknown_customer",
            fix=f"send the customer's canonical id, or make it known (sync the CRM that has it, or `subledger link` "
            f"a record to it); {release}",
        )
    return Invalid(
        "meter",
        f"meter {ev.meter!r} is not known: no metering system defines it and no contract prices it; the event is "
        "quarantined, not counted",
        "unknown_meter",
        fix=f"send a meter a contract prices (check its spelling), or define the meter; {release}",
    )


def reject_fingerprint(ev: UsageEventIn) -> str:
    """One quarantined event: its id and content (another payload under the same id is another reject)."""
    return hashlib.sha256(f"usage\x1f{ev.event_id}\x1f{ev.payload_hash}".encode()).hexdigest()


def quarantine(session: Session, source: str, held: list[tuple[Pending, Invalid]], now: datetime) -> None:
    """Keep quarantined events as rejects, once per id and content: a repeat only moves ``last_seen``."""
    rows: dict[str, dict[str, Any]] = {}
    for p, problem in held:
        fp = reject_fingerprint(p.event)
        rows[fp] = dict(
            connection=source, stream=QUARANTINE_STREAM, location=f"event {p.event.event_id}", line=None,
            field=problem.field, reason=problem.reason[:2048], fix=problem.fix[:2048],
            raw=event_document(p.event, p.customer_field), fingerprint=fp, status="open", first_seen=now,
            last_seen=now,
        )
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Reject).values(list(rows.values()))
    stmt = stmt.on_conflict_do_update(
        index_elements=["connection", "fingerprint"],
        set_={"last_seen": stmt.excluded.last_seen, "reason": stmt.excluded.reason, "fix": stmt.excluded.fix,
              "field": stmt.excluded.field},
    )
    session.execute(stmt)


def store_events(session: Session, source: str, good: list[Pending], results: Sequence[EventResult]) -> None:
    """Store valid, known events exactly once; mark each result accepted, duplicate or conflict."""
    first: dict[str, UsageEventIn] = {}
    for p in good:
        ev, res = p.event, results[p.index]
        seen = first.get(ev.event_id)
        if seen is None:
            first[ev.event_id] = ev
            res.status = "accepted"
        elif seen.payload_hash == ev.payload_hash:
            res.status = "duplicate"
        else:
            _conflict(res, ev.event_id, "an earlier event of this batch")
    stamp = _fetch_stamp()
    result = ingest_usage(session, source, list(first.values()), fetched_at=stamp)
    if result.inserted == len(first):
        return  # fast path: every distinct event was new
    stored = {
        eid: (h, at)
        for eid, h, at in session.execute(
            select(UsageEvent.event_id, UsageEvent.payload_hash, UsageEvent.fetched_at).where(
                UsageEvent.system == source, UsageEvent.event_id.in_(list(first))
            )
        ).all()
    }
    for p in good:
        ev, res = p.event, results[p.index]
        if res.status != "accepted":
            continue
        h, at = stored.get(ev.event_id, (None, None))
        if at == stamp:
            continue  # inserted by this call
        if h == ev.payload_hash:
            res.status = "duplicate"
        else:
            _conflict(res, ev.event_id, "an event already stored")


def _conflict(res: EventResult, event_id: str, against: str) -> None:
    res.status, res.code, res.field = "rejected", "conflict", "id"
    res.reason = f"event id {event_id!r} was already used by {against} with a different payload"
    res.fix = "usage events are immutable: send a correction as a new event with a new id"
