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

from subledger.core.connector import UsageEventIn
from subledger.core.db_types import decimal_text, utcnow
from subledger.core.errors import ConfigError
from subledger.core.model.usage import UsageEvent, UsageRollup

AGGREGATIONS = ("sum", "count", "max", "unique_count", "latest")


@dataclass(frozen=True)
class UsageConflict:
    """An event id already stored with a different payload. The stored event wins."""

    event_id: str
    stored_hash: str
    incoming_hash: str


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
    if sqlite:
        fetched = _sqlite_ts(fetched_at)
        ts, text, js = _sqlite_ts, _text, _json
        return [
            (system, e.event_id, e.customer_external_id, e.meter, text(e.quantity), ts(e.occurred_at),
             js(e.properties), e.payload_hash, fetched)
            for e in events
        ]  # fmt: skip
    return [
        (system, e.event_id, e.customer_external_id, e.meter, e.quantity, e.occurred_at, _json(e.properties),
         e.payload_hash, fetched_at)
        for e in events
    ]  # fmt: skip


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

    dbapi = conn.connection.driver_connection
    savepoint = conn.begin_nested()
    inserted = _insert(dbapi, sqlite, _rows(system, batch, fetched_at, sqlite))
    if inserted == len(batch):
        savepoint.commit()
        new = batch
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
            _insert(dbapi, sqlite, _rows(system, new, fetched_at, sqlite))
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
