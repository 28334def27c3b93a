"""Upserting sourced records and keeping rejected ones for review.

Sourced records have deterministic primary keys (``record_id(prefix, system,
external_id)``), so storing a record read twice updates one row. A record whose
``payload_hash`` has not changed is left alone, so re-reads write nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import UniqueConstraint, delete, inspect
from sqlmodel import Session, SQLModel, select

from subledger.core.connector import RecordGroup, Rejected
from subledger.core.db_types import utcnow
from subledger.core.errors import SystemFailure
from subledger.core.model.base import is_append_only
from subledger.core.model.sync_state import Reject


def upsert_record(session: Session, record: SQLModel, *, system: str) -> bool:
    """Insert or update one sourced record. Returns True when anything changed.

    Raises:
        SystemFailure: the record claims to come from another system than ``system``.
    """
    _check_system(record, system)
    model = type(record)
    pk = inspect(model).primary_key
    key = tuple(getattr(record, c.key) for c in pk)
    existing = session.get(model, key if len(key) > 1 else key[0])
    if existing is not None and getattr(existing, "payload_hash", None) == getattr(
        record, "payload_hash", object()
    ):
        return False
    session.merge(record)
    return True


def upsert_group(session: Session, group: RecordGroup, *, system: str) -> bool:
    """Upsert a parent and replace its children with exactly ``group.children``.

    Children of an append-only table (a credit grant's ledger entries) are never deleted
    or replaced: the ones not stored yet are added, identified by their unique key.
    """
    changed = upsert_record(session, group.record, system=system)
    if not changed:
        return False
    session.flush()
    parent_table = type(group.record).__table__
    parent_id = inspect(type(group.record)).primary_key[0]
    parent_key = getattr(group.record, parent_id.key)
    kept: dict[type[Any], set[tuple[Any, ...]]] = {}
    for child_model in {type(c) for c in group.children} | set(_child_models(parent_table)):
        fk_col = _fk_to(child_model.__table__, parent_table)
        if is_append_only(child_model):
            unique = _unique_columns(child_model)
            rows = session.execute(select(*[getattr(child_model, c) for c in unique]).where(fk_col == parent_key))
            kept[child_model] = {tuple(r) for r in rows}
            continue
        session.execute(delete(child_model).where(fk_col == parent_key))
    for child in group.children:
        model = type(child)
        if model in kept and tuple(getattr(child, c) for c in _unique_columns(model)) in kept[model]:
            continue  # already in the ledger: an append-only row is never written twice
        session.add(child)
    return True


def _unique_columns(model: type[Any]) -> tuple[str, ...]:
    """The columns of an append-only child's unique constraint (its natural key)."""
    for constraint in model.__table__.constraints:
        if isinstance(constraint, UniqueConstraint):
            return tuple(c.name for c in constraint.columns)
    raise TypeError(f"append-only table {model.__tablename__} has no unique key to tell its rows apart")


def upsert_batch(session: Session, records: list[Any], *, system: str) -> int:
    """Upsert records and record groups, with one lookup per table instead of one per record.

    New records are inserted, changed ones merged (their children replaced), unchanged
    ones (same ``payload_hash``) left alone. Returns how many changed.
    """
    parents = [r.record if isinstance(r, RecordGroup) else r for r in records]
    for parent in parents:
        _check_system(parent, system)
    known: dict[type[Any], dict[Any, str]] = {}
    by_model: dict[type[Any], list[Any]] = {}
    for parent in parents:
        by_model.setdefault(type(parent), []).append(parent)
    for model, rows in by_model.items():
        pk = inspect(model).primary_key
        if len(pk) != 1 or "payload_hash" not in model.model_fields:
            continue
        col = pk[0]
        ids = [getattr(r, col.key) for r in rows]
        found: dict[Any, str] = {}
        for i in range(0, len(ids), 500):
            stmt = select(col, model.payload_hash).where(col.in_(ids[i : i + 500]))
            found.update({k: h for k, h in session.exec(stmt).all()})
        known[model] = found
    changed = 0
    for item, parent in zip(records, parents, strict=True):
        model = type(parent)
        if model not in known:  # a table without a single key or payload hash: the careful path
            changed += int(
                upsert_group(session, item, system=system)
                if isinstance(item, RecordGroup)
                else upsert_record(session, item, system=system)
            )
            continue
        key = getattr(parent, inspect(model).primary_key[0].key)
        stored = known[model].get(key)
        if stored is not None and stored == parent.payload_hash:
            continue
        changed += 1
        if stored is None:
            session.add(parent)
            if isinstance(item, RecordGroup):
                session.add_all(item.children)
        elif isinstance(item, RecordGroup):
            upsert_group(session, item, system=system)
        else:
            session.merge(parent)
        known[model][key] = parent.payload_hash
    return changed


def _child_models(parent_table: Any) -> Iterable[type[SQLModel]]:
    for mapper in SQLModel._sa_registry.mappers:  # type: ignore[attr-defined]
        table = mapper.local_table
        if any(fk.column.table is parent_table for fk in table.foreign_keys):
            yield mapper.class_


def _fk_to(child_table: Any, parent_table: Any) -> Any:
    for fk in child_table.foreign_keys:
        if fk.column.table is parent_table:
            return fk.parent
    raise SystemFailure(
        f"{child_table.name} has no foreign key to {parent_table.name}",
        fix="yield children whose table references the parent's table",
    )


def _check_system(record: SQLModel, system: str) -> None:
    got = getattr(record, "system", system)
    if got != system:
        raise SystemFailure(
            f"connector yielded a {type(record).__name__} from system {got!r} while reading {system!r}",
            fix="set each record's provenance system to the connection being read",
        )


_SURROGATE = re.compile("[\ud800-\udfff]")

# The reject table's column sizes (subledger.core.model.sync_state.Reject).
REJECT_LIMITS = {"stream": 64, "location": 1024, "field": 255, "reason": 2048, "fix": 2048, "raw": 10_000}


def clean_text(value: str, limit: int) -> str:
    """Text any database column can hold: no NUL (shown as ``\\0``), no lone surrogate
    (bytes that were not UTF-8, shown as U+FFFD), at most ``limit`` characters (cut with ``...``)."""
    if "\x00" in value:
        value = value.replace("\x00", "\\0")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)
    if len(value) > limit:
        value = value[: limit - 3] + "..."
    return value


def clean_reject(r: Rejected) -> Rejected:
    """``r`` with every text fit for the reject table (see :func:`clean_text`), the same object when it is."""
    values = {name: getattr(r, name) for name in REJECT_LIMITS}
    cleaned = {name: clean_text(v, REJECT_LIMITS[name]) if v is not None else None for name, v in values.items()}
    if cleaned == values and isinstance(r.line, int | None):
        return r
    line = r.line if isinstance(r.line, int) and -(2**31) < r.line < 2**31 else None
    return Rejected(stream=cleaned["stream"] or "", reason=cleaned["reason"] or "", fix=cleaned["fix"] or "",
                    location=cleaned["location"] or "", line=line, field=cleaned["field"], raw=cleaned["raw"] or "")


def reject_fingerprint(connection: str, r: Rejected) -> str:
    """A stable identity for a rejected record, so re-reads do not duplicate it."""
    parts = [connection, r.stream, r.location, str(r.line), r.field or "", r.reason, r.raw]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", errors="surrogatepass")).hexdigest()


def save_rejects(session: Session, connection: str, rejects: Iterable[Rejected]) -> int:
    """Keep rejected records for review; a reject seen again only bumps ``last_seen``.

    Every text is made fit for its column first (:func:`clean_reject`): a NUL character,
    bytes that were not UTF-8, or a field name longer than the 255 characters the table
    holds never make the save fail. Within one call, the same reject twice is kept twice
    (two bad lines that read the same, such as two versions of one event the engine
    reports by id, are two rejects), and each again once on the next pull.

    Returns:
        How many rejects were new.
    """
    new = 0
    now = utcnow()
    repeats: dict[str, int] = {}
    for r in rejects:
        r = clean_reject(r)
        fp = reject_fingerprint(connection, r)
        count = repeats.get(fp, 0)
        repeats[fp] = count + 1
        if count:  # the same reject again in this batch: a reject of its own
            fp = hashlib.sha256(f"{fp}#{count}".encode()).hexdigest()
        row = session.exec(
            select(Reject).where(Reject.connection == connection, Reject.fingerprint == fp)
        ).first()
        if row is not None:
            row.last_seen = now
            session.add(row)
            continue
        session.add(
            Reject(
                connection=connection,
                stream=r.stream,
                location=r.location,
                line=r.line,
                field=r.field,
                reason=r.reason,
                fix=r.fix,
                raw=r.raw,
                fingerprint=fp,
                first_seen=now,
                last_seen=now,
            )
        )
        new += 1
    return new
