"""Usage ingest and aggregation: immutable events, exactly once, and daily rollups.

Ingest runs inside the caller's transaction (the pull engine commits events with the
stream checkpoint that covers them). It is the hot path of the product, so it talks to
the database driver directly:

* Fast path: insert the batch with ``ON CONFLICT DO NOTHING`` inside a savepoint. When
  every row was inserted, roll all of them up.
* Slow path (the batch holds ids already stored): roll the savepoint back, look up the
  stored ids, report same-id-different-payload as conflicts, and insert only new events.

Rollups keep, per (system, customer, meter, UTC day), the exact sum, count, max and the
latest quantity. Sums are exact: PostgreSQL adds ``NUMERIC``; on SQLite the store
registers ``dec_add``/``dec_max`` SQL functions that add decimal text with Python's
``Decimal``. "Latest" is the quantity with the latest timestamp; ties go to the larger
quantity, so the result does not depend on arrival order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, and_, func, select
from sqlmodel import Session
from sqlmodel import select as sm_select

from subledger.core.config_files import MAX_DEPTH
from subledger.core.connector import UsageEventIn
from subledger.core.db_types import decimal_text, utcnow
from subledger.core.errors import ConfigError
from subledger.core.model.usage import UsageEvent, UsageRollup
from subledger.core.terms.bounds import (
    END_INSTANT,
    FIRST_INSTANT,
    NUMBER_FIX,
    instant_problem,
    number_problem,
    too_deep,
    unstorable_text,
)

AGGREGATIONS = ("sum", "count", "max", "unique_count", "latest")


@dataclass(frozen=True)
class UsageConflict:
    """An event id already stored with a different payload. The stored event wins."""

    event_id: str
    stored_hash: str
    incoming_hash: str


@dataclass(frozen=True)
class RefusedEvent:
    """An event the store will not hold, with the field, the reason and the fix."""

    event_id: str
    field: str
    reason: str
    fix: str


class UsageOutOfBounds(ConfigError):
    """Events outside the bounds every path must enforce reached the store; none of the batch was stored.

    ``events`` names each one. The caller (a pull) turns each into a reject and ingests the
    rest; a connector or ingest path that lets one through has a bug to fix.
    """

    def __init__(self, events: list[RefusedEvent]) -> None:
        first = events[0]
        more = f" (and {len(events) - 1} more)" if len(events) > 1 else ""
        super().__init__(
            f"usage event {_cut(first.event_id)!r}: {first.field} {first.reason}{more}; no event of the batch "
            "was stored", fix=first.fix,
        )
        self.events = events


_ID_LIMITS = (("event_id", 255), ("customer_external_id", 255), ("meter", 128))


def _cut(text: str, limit: int = 80) -> str:
    text = text.replace("\x00", "\\0")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_event(e: UsageEventIn) -> RefusedEvent | None:
    """Why the store must not hold ``e``, or None. Cheap: the bounds are checked on the
    exponent and digit count, never by arithmetic on the quantity.

    The store's own guard (defence in depth): every reader refuses such events first, with
    the file and line (docs/formats.md#bounds).
    """
    q = e.quantity
    if type(q) is not Decimal:
        return RefusedEvent(str(e.event_id), "quantity", f"is a {type(q).__name__}, not a Decimal",
                            "map quantities to exact Decimals")
    if not q.is_finite():
        return RefusedEvent(e.event_id, "quantity", "is not a finite number", NUMBER_FIX)
    problem = number_problem(q)
    if problem:
        return RefusedEvent(e.event_id, "quantity", problem, NUMBER_FIX)
    for name, limit in _ID_LIMITS:
        value = getattr(e, name)
        if type(value) is not str or not value or len(value) > limit:
            return RefusedEvent(_cut(str(e.event_id)), name, f"must be text of 1 to {limit} characters",
                                f"shorten {name} to {limit} characters")
        found = unstorable_text(value)
        if found is not None:
            return RefusedEvent(_cut(e.event_id), name, f"holds {found[1]}", "remove the character")
    at = e.occurred_at
    if not isinstance(at, datetime) or at.tzinfo is None:
        return RefusedEvent(e.event_id, "occurred_at", "is not an aware datetime", "give the instant a UTC offset")
    problem = instant_problem(at)
    if problem:
        return RefusedEvent(e.event_id, "occurred_at", problem, "send events dated 2000-01-01 to 2100-12-31")
    props = e.properties
    if props:
        if not isinstance(props, dict):
            return RefusedEvent(e.event_id, "properties", "is not a mapping", "send properties as an object")
        found = unstorable_text(props)
        if found is not None:
            return RefusedEvent(_cut(e.event_id), f"properties.{found[0]}", f"holds {found[1]}",
                                "remove the character")
        if too_deep(props, MAX_DEPTH - 2):
            return RefusedEvent(e.event_id, "properties", f"nests more than {MAX_DEPTH - 2} levels deep",
                                "flatten the properties")
    return None


def _flat_properties(props: dict[str, Any]) -> bool:
    """True for the common properties: plain text keys and flat, plain values (no walk needed)."""
    for key, value in props.items():
        if type(key) is not str or not key.isascii() or "\x00" in key:
            return False
        kind = type(value)
        if kind is str:
            if not value.isascii() or "\x00" in value:
                return False
        elif kind is not int and kind is not bool and value is not None:
            return False
    return True


@dataclass
class IngestResult:
    """What one :func:`ingest_usage` call did."""

    inserted: int = 0
    duplicates: int = 0
    conflicts: list[UsageConflict] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.conflicts.extend(other.conflicts)


# --- SQLite helpers -----------------------------------------------------------------


def _dec_add(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return decimal_text(Decimal(a) + Decimal(b))


def _dec_max(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if Decimal(a) >= Decimal(b) else b


def _dec_ge(a: str | None, b: str | None) -> int:
    return int(a is not None and b is not None and Decimal(a) >= Decimal(b))


def register_sqlite_functions(dbapi_conn: Any) -> None:
    """Give a sqlite3 connection the exact-decimal SQL functions rollups need."""
    dbapi_conn.create_function("dec_add", 2, _dec_add, deterministic=True)
    dbapi_conn.create_function("dec_max", 2, _dec_max, deterministic=True)
    dbapi_conn.create_function("dec_ge", 2, _dec_ge, deterministic=True)


def _sqlite_ts(value: datetime) -> str:
    # SQLAlchemy's own SQLite DATETIME storage format ("2026-03-01 12:00:00.000000"), so
    # ORM reads see the same value. isoformat is C code: this runs once per event.
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # drop the "+00:00"


def _text(value: Decimal) -> str:
    # str() is several times faster than format(); only exponent forms need the slow path.
    text = str(value)
    return decimal_text(value) if "E" in text else text


def _json(value: dict[str, Any]) -> str:
    if not value:
        return "{}"
    return orjson.dumps(value, default=str).decode()


# --- Ingest ---------------------------------------------------------------------------


_INSERT_COLUMNS = (
    "system, event_id, customer_external_id, meter, quantity, occurred_at, properties, payload_hash, fetched_at"
)


def _rows(system: str, events: Sequence[UsageEventIn], fetched_at: datetime, sqlite: bool) -> list[tuple]:
    """The rows to insert, checking each event's bounds on the way (one pass over the events).

    Raises:
        UsageOutOfBounds: naming every event outside the bounds (see :func:`check_event`).
    """
    first, end, dec, dt, text = FIRST_INSTANT, END_INSTANT, Decimal, datetime, str
    ts, js = _sqlite_ts, _json
    fetched: Any = _sqlite_ts(fetched_at) if sqlite else fetched_at
    rows: list[tuple] = []
    append = rows.append
    refused: list[RefusedEvent] = []
    for e in events:
        q, at, props, event_id, customer, meter = (e.quantity, e.occurred_at, e.properties, e.event_id,
                                                   e.customer_external_id, e.meter)
        # The common case in a few cheap tests. A quantity written plainly (no exponent: str()
        # uses one for NaN, Infinity and very small or large values) in at most 30 characters
        # has at most 30 digits, below 10^30 and no finer than 10^-30.
        shown = str(q) if type(q) is dec else ""
        if not (0 < len(shown) <= 30 and "E" not in shown and "N" not in shown and "I" not in shown
                and type(at) is dt and at.tzinfo is not None and first <= at < end
                and type(event_id) is text and type(customer) is text and type(meter) is text
                and 0 < len(event_id) <= 255 and 0 < len(customer) <= 255 and 0 < len(meter) <= 128
                and (ids := event_id + customer + meter).isascii() and "\x00" not in ids
                and (not props or _flat_properties(props))):
            found = check_event(e)
            if found is not None:
                refused.append(found)
                continue
            shown = _text(q)
        if sqlite:
            append((system, event_id, customer, meter, shown, ts(at), js(props), e.payload_hash, fetched))
        else:
            append((system, event_id, customer, meter, q, at, js(props), e.payload_hash, fetched))
    if refused:
        raise UsageOutOfBounds(refused)
    return rows


def _insert(dbapi: Any, sqlite: bool, rows: list[tuple]) -> int:
    if sqlite:
        sql = (
            f"INSERT INTO usage_event ({_INSERT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (system, event_id) DO NOTHING"
        )
        cur = dbapi.executemany(sql, rows)
        return cur.rowcount
    # PostgreSQL: COPY into a session-local staging table, then one INSERT ... SELECT.
    # COPY is several times faster than executemany, and the INSERT keeps the
    # ON CONFLICT semantics of the SQLite path.
    with dbapi.cursor() as cur:
        cur.execute(_PG_STAGE_DDL)
        cur.execute("TRUNCATE _usage_stage")
        with cur.copy(f"COPY _usage_stage ({_INSERT_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO usage_event ({_INSERT_COLUMNS}) SELECT {_INSERT_COLUMNS} FROM _usage_stage "
            "ON CONFLICT (system, event_id) DO NOTHING"
        )
        return cur.rowcount


_PG_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS _usage_stage ("
    "system text, event_id text, customer_external_id text, meter text, quantity numeric, "
    "occurred_at timestamptz, properties jsonb, payload_hash text, fetched_at timestamptz)"
)


def ingest_usage(
    conn: Connection | Session,
    system: str,
    events: Sequence[UsageEventIn],
    *,
    fetched_at: datetime | None = None,
) -> IngestResult:
    """Store new usage events exactly once and roll them up, in the caller's transaction.

    Args:
        conn: a SQLAlchemy connection or session (its current transaction is used).
        system: the connection the events came from.
        events: the events; ids repeated within the batch count once.
        fetched_at: when they were read (default now).

    Returns:
        How many were inserted, how many were already stored with the same payload, and
        the conflicts (same id, different payload), which are not stored.

    Raises:
        UsageOutOfBounds: an event is outside the bounds (a quantity of more than 30
            digits, a NUL character, a date outside 2000-2100, ...); nothing is stored, and
            the error names every such event so the caller can reject them and retry.
    """
    if isinstance(conn, Session):
        conn = conn.connection()
    result = IngestResult()
    if not events:
        return result
    fetched_at = fetched_at or utcnow()
    sqlite = conn.dialect.name == "sqlite"

    unique: dict[str, UsageEventIn] = {}
    for e in events:
        seen = unique.get(e.event_id)
        if seen is None:
            unique[e.event_id] = e
        elif seen.payload_hash != e.payload_hash:
            result.conflicts.append(UsageConflict(e.event_id, seen.payload_hash, e.payload_hash))
        else:
            result.duplicates += 1
    batch = list(unique.values())
    rows = _rows(system, batch, fetched_at, sqlite)  # refuses out-of-bounds events before any write

    dbapi = conn.connection.driver_connection
    savepoint = conn.begin_nested()
    inserted = _insert(dbapi, sqlite, rows)
    if inserted == len(batch):
        savepoint.commit()
        new = batch
        del rows  # no longer needed: keep the peak memory of a batch down
    else:
        savepoint.rollback()
        stored = _stored_hashes(conn, system, [e.event_id for e in batch])
        new = []
        for e in batch:
            stored_hash = stored.get(e.event_id)
            if stored_hash is None:
                new.append(e)
            elif stored_hash == e.payload_hash:
                result.duplicates += 1
            else:
                result.conflicts.append(UsageConflict(e.event_id, stored_hash, e.payload_hash))
        if new:
            keep = {e.event_id for e in new}
            _insert(dbapi, sqlite, [row for row in rows if row[1] in keep])
    result.inserted = len(new)
    _roll_up(conn, sqlite, system, new)
    return result


def _stored_hashes(conn: Connection, system: str, event_ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for i in range(0, len(event_ids), 5000):
        chunk = event_ids[i : i + 5000]
        stmt = select(UsageEvent.event_id, UsageEvent.payload_hash).where(
            UsageEvent.system == system, UsageEvent.event_id.in_(chunk)
        )
        found.update(dict(conn.execute(stmt).all()))
    return found


@dataclass(slots=True)
class _Bucket:
    total: Decimal
    count: int
    maximum: Decimal
    latest_at: datetime
    latest: Decimal


def rollup_buckets(events: Sequence[UsageEventIn]) -> dict[tuple[str, str, date], _Bucket]:
    """Aggregate events per (customer, meter, UTC day). Pure; order-independent."""
    buckets: dict[tuple[str, str, date], _Bucket] = {}
    for e in events:
        at = e.occurred_at
        key = (e.customer_external_id, e.meter, at.astimezone(UTC).date())
        q = e.quantity
        b = buckets.get(key)
        if b is None:
            buckets[key] = _Bucket(q, 1, q, at, q)
            continue
        b.total += q
        b.count += 1
        if q > b.maximum:
            b.maximum = q
        if at > b.latest_at or (at == b.latest_at and q > b.latest):
            b.latest_at = at
            b.latest = q
    return buckets


def _roll_up(conn: Connection, sqlite: bool, system: str, events: Sequence[UsageEventIn]) -> None:
    if not events:
        return
    buckets = rollup_buckets(events)
    dbapi = conn.connection.driver_connection
    cols = (
        "system, customer_external_id, meter, day, quantity_sum, event_count, quantity_max, latest_at, latest_quantity"
    )
    if sqlite:
        rows = [
            (
                system,
                c,
                m,
                d.isoformat(),
                _text(b.total),
                b.count,
                _text(b.maximum),
                _sqlite_ts(b.latest_at),
                _text(b.latest),
            )
            for (c, m, d), b in buckets.items()
        ]
        dbapi.executemany(
            f"INSERT INTO usage_rollup ({cols}) VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (system, customer_external_id, meter, day) DO UPDATE SET "
            "quantity_sum = dec_add(usage_rollup.quantity_sum, excluded.quantity_sum), "
            "event_count = usage_rollup.event_count + excluded.event_count, "
            "quantity_max = dec_max(usage_rollup.quantity_max, excluded.quantity_max), "
            "latest_quantity = CASE "
            "  WHEN excluded.latest_at > usage_rollup.latest_at THEN excluded.latest_quantity "
            "  WHEN excluded.latest_at = usage_rollup.latest_at "
            "    THEN dec_max(usage_rollup.latest_quantity, excluded.latest_quantity) "
            "  ELSE usage_rollup.latest_quantity END, "
            "latest_at = max(usage_rollup.latest_at, excluded.latest_at)",
            rows,
        )
        return
    rows = [(system, c, m, d, b.total, b.count, b.maximum, b.latest_at, b.latest) for (c, m, d), b in buckets.items()]
    # COPY the buckets into a staging table, then one INSERT ... ON CONFLICT merges them:
    # far cheaper than an executemany of upserts.
    with dbapi.cursor() as cur:
        cur.execute(_PG_ROLLUP_STAGE_DDL)
        cur.execute("TRUNCATE _rollup_stage")
        with cur.copy(f"COPY _rollup_stage ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(
            f"INSERT INTO usage_rollup ({cols}) SELECT {cols} FROM _rollup_stage "
            "ON CONFLICT (system, customer_external_id, meter, day) DO UPDATE SET "
            "quantity_sum = usage_rollup.quantity_sum + excluded.quantity_sum, "
            "event_count = usage_rollup.event_count + excluded.event_count, "
            "quantity_max = GREATEST(usage_rollup.quantity_max, excluded.quantity_max), "
            "latest_quantity = CASE "
            "  WHEN excluded.latest_at > usage_rollup.latest_at THEN excluded.latest_quantity "
            "  WHEN excluded.latest_at = usage_rollup.latest_at "
            "    THEN GREATEST(usage_rollup.latest_quantity, excluded.latest_quantity) "
            "  ELSE usage_rollup.latest_quantity END, "
            "latest_at = GREATEST(usage_rollup.latest_at, excluded.latest_at)"
        )


_PG_ROLLUP_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS _rollup_stage ("
    "system text, customer_external_id text, meter text, day date, quantity_sum numeric, event_count bigint, "
    "quantity_max numeric, latest_at timestamptz, latest_quantity numeric)"
)


# --- Aggregation ----------------------------------------------------------------------


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time(0), tzinfo=UTC)


def aggregate_usage(
    session: Session | Connection,
    *,
    customer_external_id: str,
    meter: str,
    start: datetime,
    end: datetime,
    aggregation: str,
    system: str | None = None,
    unique_property: str | None = None,
) -> Decimal:
    """Aggregate a customer's usage of a meter over ``[start, end)``.

    Whole UTC days are read from the rollup; partial days at either edge, and unique
    counts, are read from the raw events. ``system`` limits the sources read (default:
    every source, so name the metering system when two sources carry the same usage).

    Returns:
        The aggregate as a Decimal (``0`` when there is no usage; ``latest`` with no
        usage is also ``0``).
    """
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"unknown usage aggregation {aggregation!r}", fix=f"use one of {', '.join(AGGREGATIONS)}")
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise ConfigError(f"{name} {value.isoformat()} has no timezone", fix="pass an aware UTC datetime")
    if end <= start:
        return Decimal(0)
    conn = session.connection() if isinstance(session, Session) else session

    if aggregation == "unique_count":
        if not unique_property:
            raise ConfigError(
                f"meter {meter!r} aggregates unique_count but names no property",
                fix="set the meter's unique_property to the event property to count",
            )
        values = set()
        stmt = _raw_select(UsageEvent.properties, customer_external_id, meter, start, end, system)
        for (props,) in conn.execute(stmt):
            if isinstance(props, str):
                props = json.loads(props)
            if unique_property in props:
                values.add(json.dumps(props[unique_property], sort_keys=True, default=str))
        return Decimal(len(values))

    first_full = start.astimezone(UTC).date()
    if _day_start(first_full) < start:
        first_full += timedelta(days=1)
    end_day = end.astimezone(UTC).date()  # full days are [first_full, end_day)
    parts: list[tuple[Decimal, int, Decimal | None, datetime | None, Decimal | None]] = []

    if first_full < end_day:
        stmt = select(
            UsageRollup.quantity_sum,
            UsageRollup.event_count,
            UsageRollup.quantity_max,
            UsageRollup.latest_at,
            UsageRollup.latest_quantity,
        ).where(
            UsageRollup.customer_external_id == customer_external_id,
            UsageRollup.meter == meter,
            UsageRollup.day >= first_full,
            UsageRollup.day < end_day,
        )
        if system is not None:
            stmt = stmt.where(UsageRollup.system == system)
        parts.extend(conn.execute(stmt).all())
        edges = [(start, _day_start(first_full)), (_day_start(end_day), end)]
    else:
        edges = [(start, end)]

    for lo, hi in edges:
        if hi <= lo:
            continue
        stmt = _raw_select((UsageEvent.quantity, UsageEvent.occurred_at), customer_external_id, meter, lo, hi, system)
        for q, at in conn.execute(stmt):
            parts.append((q, 1, q, at, q))

    if aggregation == "sum":
        return sum((p[0] for p in parts), Decimal(0))
    if aggregation == "count":
        return Decimal(sum(p[1] for p in parts))
    if aggregation == "max":
        return max((p[2] for p in parts), default=Decimal(0))
    best: tuple[datetime, Decimal] | None = None
    for p in parts:
        cand = (p[3], p[4])
        if best is None or cand > best:
            best = cand
    return best[1] if best else Decimal(0)


def _raw_select(columns: Any, customer: str, meter: str, lo: datetime, hi: datetime, system: str | None) -> Any:
    cols = columns if isinstance(columns, tuple) else (columns,)
    cond = and_(
        UsageEvent.customer_external_id == customer,
        UsageEvent.meter == meter,
        UsageEvent.occurred_at >= lo,
        UsageEvent.occurred_at < hi,
    )
    if system is not None:
        cond = and_(cond, UsageEvent.system == system)
    return select(*cols).where(cond)


def count_events(session: Session, system: str | None = None) -> int:
    """How many usage events are stored (for one system, or all)."""
    stmt = sm_select(func.count()).select_from(UsageEvent)
    if system is not None:
        stmt = stmt.where(UsageEvent.system == system)
    return int(session.exec(stmt).one())
