"""Pull: the read side of a sync. Reads each stream of a connection incrementally.

The engine owns incremental state. Everything a connector yields before a
:class:`~subledger.core.connector.Checkpoint` is written in one transaction together
with that checkpoint, so a crash mid-read resumes from the last committed checkpoint:
nothing is lost, and (because records are upserted by key and usage events are unique
per ``(system, event_id)``) nothing is duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, inspect
from sqlmodel import Session

from subledger.core.connector import Checkpoint, Connector, RecordGroup, Rejected, UsageCoverage, UsageEventIn
from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError, SystemFailure
from subledger.core.model.sync_state import Connection, StreamState
from subledger.core.store.coverage import record_coverage
from subledger.core.store.records import save_rejects, upsert_batch
from subledger.core.store.usage import UsageOutOfBounds, ingest_usage
from subledger.core.terms.bounds import unstorable_text

log = logging.getLogger(__name__)

# Usage arrives in millions; flush it in batches even between checkpoints' commits.
USAGE_BATCH = 50_000


@dataclass
class StreamReport:
    """What pulling one stream did; ``error`` (with its ``kind`` and ``fix``) when it failed.

    A failed stream keeps what it committed up to its last checkpoint; the next pull
    resumes from there.
    """

    stream: str
    records: int = 0
    changed: int = 0
    usage_inserted: int = 0
    usage_duplicates: int = 0
    rejected: int = 0
    checkpoints: int = 0
    error: str | None = None
    kind: str | None = None
    fix: str | None = None


@dataclass
class PullReport:
    """What pulling one connection did, stream by stream."""

    connection: str
    streams: list[StreamReport] = field(default_factory=list)
    error: str | None = None  # the connection could not be read at all (config, connector)
    fix: str | None = None

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.streams)

    @property
    def failed(self) -> list[StreamReport]:
        """The streams that did not finish."""
        return [s for s in self.streams if s.error is not None]

    @property
    def complete(self) -> bool:
        """Every stream was read to its end."""
        return self.error is None and not self.failed


ProgressFn = Callable[[str, StreamReport], None]


def load_connector(session: Session, name: str) -> Connector:
    """Build the connector of a configured connection, through the plugin registry."""
    from subledger.core.plugins import get_connector_class
    from subledger.core.secrets import load_config

    conn = session.get(Connection, name)
    if conn is None:
        raise ConfigError(
            f"no connection named {name!r}",
            fix="list them with `subledger connections list` or add one with `subledger connections add`",
        )
    cls = get_connector_class(conn.plugin)
    config = load_config(cls.config_model, conn.config)
    return cls(config, connection=name)


def read_state(session: Session, connection: str, stream: str) -> dict[str, Any] | None:
    """The last committed checkpoint of a stream, or None before its first read."""
    row = session.get(StreamState, (connection, stream))
    return dict(row.state) if row is not None else None


def has_key(record: Any) -> bool:
    """True when the record's primary key is set (sourced records have deterministic ids)."""
    return all(getattr(record, c.key) is not None for c in inspect(type(record)).primary_key)


def is_child_of(record: Any, parent: Any) -> bool:
    """True when ``record`` has no key of its own and references ``parent``'s table."""
    head = parent.record if isinstance(parent, RecordGroup) else parent
    table = getattr(type(head), "__table__", None)
    if table is None or has_key(record):
        return False
    for fk in type(record).__table__.foreign_keys:
        if fk.column.table is table and getattr(record, fk.parent.key) == getattr(head, fk.column.key):
            return True
    return False


class _Batch:
    """Records yielded since the last commit."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.usage: list[UsageEventIn] = []
        self.rejects: list[Rejected] = []
        self.coverage: list[UsageCoverage] = []

    def __len__(self) -> int:
        return len(self.records) + len(self.usage) + len(self.rejects) + len(self.coverage)

    def add_record(self, record: Any) -> None:
        """Add a record; a child row right after its parent joins the parent's group.

        Connectors may yield an invoice followed by its lines instead of a
        :class:`RecordGroup`; either way the stored children are exactly the ones yielded.
        """
        if not isinstance(record, RecordGroup) and self.records and is_child_of(record, self.records[-1]):
            parent = self.records[-1]
            if not isinstance(parent, RecordGroup):
                parent = self.records[-1] = RecordGroup(parent, [])
            parent.children.append(record)
            return
        if not isinstance(record, RecordGroup) and not has_key(record):
            raise SystemFailure(
                f"connector yielded a {type(record).__name__} with no key and no parent before it",
                fix="yield child rows right after their parent, or inside a RecordGroup",
            )
        self.records.append(record)


def pull_stream(
    engine: Engine, connector: Connector, stream: str, *, progress: ProgressFn | None = None
) -> StreamReport:
    """Read one stream from its last checkpoint and store what it yields."""
    system = connector.connection
    report = StreamReport(stream)
    with Session(engine) as session:
        state = read_state(session, system, stream)
    batch = _Batch()
    for item in connector.read(stream, state):
        if isinstance(item, Checkpoint):
            _commit(engine, system, stream, batch, item.state, report)
            batch = _Batch()
            report.checkpoints += 1
            if progress:
                progress(stream, report)
        elif isinstance(item, UsageEventIn):
            batch.usage.append(item)
        elif isinstance(item, Rejected):
            batch.rejects.append(item)
        elif isinstance(item, UsageCoverage):
            batch.coverage.append(item)
        else:
            batch.add_record(item)
    if len(batch):
        # A stream that ends without a final checkpoint: store what it gave, keep the state.
        _commit(engine, system, stream, batch, None, report)
        if progress:
            progress(stream, report)
    return report


def _commit(
    engine: Engine,
    system: str,
    stream: str,
    batch: _Batch,
    state: dict[str, Any] | None,
    report: StreamReport,
) -> None:
    storable, refused = _storable(batch.records, stream)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        report.records += len(batch.records)
        report.changed += upsert_batch(session, storable, system=system)
        rejects = [*batch.rejects, *refused]
        for i in range(0, len(batch.usage), USAGE_BATCH):
            chunk = batch.usage[i : i + USAGE_BATCH]
            report.records += len(chunk)
            try:
                result = ingest_usage(session, system, chunk)
            except UsageOutOfBounds as exc:
                # The store refuses events no connector should have let through: each becomes a
                # reject, the rest of the chunk is stored (nothing of it was written yet).
                refused = {r.event_id for r in exc.events}
                rejects.extend(Rejected(stream=stream, reason=f"{r.field} {r.reason}", fix=r.fix, field=r.field,
                                        raw=r.event_id) for r in exc.events)
                result = ingest_usage(session, system, [e for e in chunk if e.event_id not in refused])
            report.usage_inserted += result.inserted
            report.usage_duplicates += result.duplicates
            rejects.extend(
                Rejected(
                    stream=stream,
                    reason=f"usage event {c.event_id!r} was already loaded with a different payload",
                    fix="usage events are immutable: send the correction as a new event with a new event_id",
                    field="event_id",
                    raw=f"{c.event_id} {c.incoming_hash}",  # each version its own reject
                )
                for c in result.conflicts
            )
        report.rejected += save_rejects(session, system, rejects)
        if batch.coverage:
            # The windows vouch for the events above: committed with them, or not at all.
            record_coverage(session, system, batch.coverage)
        if state is not None:
            row = session.get(StreamState, (system, stream))
            if row is None:
                session.add(StreamState(connection=system, stream=stream, state=state))
            else:
                row.state = state
                row.updated_at = utcnow()
                session.add(row)


def _storable(records: list[Any], stream: str) -> tuple[list[Any], list[Rejected]]:
    """Records no database can store (a NUL or half a surrogate pair in any text) become rejects.

    The files connector refuses such rows itself; a vendor's API can still send one, and it
    must not fail the whole batch (PostgreSQL refuses NUL in text).
    """
    keep: list[Any] = []
    refused: list[Rejected] = []
    for item in records:
        parts = [item.record, *item.children] if isinstance(item, RecordGroup) else [item]
        problem = next((p for part in parts if (p := unstorable_text(part.model_dump(mode="json"))) is not None),
                       None)
        if problem is None:
            keep.append(item)
            continue
        head = parts[0]
        where, why = problem
        refused.append(Rejected(
            stream=stream, reason=f"{where}: {why}", field=where or None,
            fix="correct the text at the source (no database can store it); the next pull reads it again",
            location=f"{type(head).__name__.lower()} {getattr(head, 'external_id', '')}".strip(),
        ))
    return keep, refused


def pull(
    engine: Engine,
    connection: str,
    *,
    streams: list[str] | None = None,
    progress: ProgressFn | None = None,
) -> PullReport:
    """Pull every stream (or the named ones) of a connection, incrementally.

    A stream that fails is recorded with its error and fix, and the others are still read.
    When every stream of the connection was read to its end, the connection is marked
    completely read (``Connection.last_complete_pull_at``): reconciliation judges nothing
    from a connection that never was.

    Raises:
        ConfigError: the connection does not exist or a stream name is not one of its streams.
    """
    with Session(engine) as session:
        connector = load_connector(session, connection)
    report = PullReport(connection)
    names = streams or [s.name for s in connector.streams()]
    for name in names:
        connector.stream(name)  # validates the name before anything is read
    started = utcnow()
    for name in names:
        try:
            report.streams.append(pull_stream(engine, connector, name, progress=progress))
        except Exception as exc:
            report.streams.append(_failed(name, exc))
            log.warning("pull %s/%s failed: %s", connection, name, report.streams[-1].error)
    if report.complete and not streams:
        with Session(engine) as session, session.begin():
            row = session.get(Connection, connection)
            if row is not None:
                row.last_complete_pull_at = started
                session.add(row)
    return report


def _failed(stream: str, exc: Exception) -> StreamReport:
    from subledger.core.errors import SubledgerError, classify
    from subledger.core.secrets import redact

    fix = exc.fix if isinstance(exc, SubledgerError) else None
    message = exc.message if isinstance(exc, SubledgerError) else f"{type(exc).__name__}: {exc}"
    return StreamReport(
        stream, error=redact(message)[:2000], kind=str(classify(exc)),
        fix=fix or "see the error; the next pull resumes from the stream's last checkpoint",
    )
