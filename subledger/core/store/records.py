"""Upserting sourced records and keeping rejected ones for review.

Sourced records have deterministic primary keys (``record_id(prefix, system,
external_id)``), so storing a record read twice updates one row. A record whose
``payload_hash`` has not changed is left alone, so re-reads write nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, inspect
from sqlmodel import Session, SQLModel, select

from subledger.core.connector import RecordGroup, Rejected
from subledger.core.db_types import utcnow
from subledger.core.errors import SystemFailure
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
    """Upsert a parent and replace its children with exactly ``group.children``."""
    changed = upsert_record(session, group.record, system=system)
    if not changed:
        return False
    session.flush()
    parent_table = type(group.record).__table__
    parent_id = inspect(type(group.record)).primary_key[0]
    for child_model in {type(c) for c in group.children} | set(_child_models(parent_table)):
        fk_col = _fk_to(child_model.__table__, parent_table)
        session.execute(delete(child_model).where(fk_col == getattr(group.record, parent_id.key)))
    for child in group.children:
        session.add(child)
    return True


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


def reject_fingerprint(connection: str, r: Rejected) -> str:
    """A stable identity for a rejected record, so re-reads do not duplicate it."""
    parts = [connection, r.stream, r.location, str(r.line), r.field or "", r.reason, r.raw]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def save_rejects(session: Session, connection: str, rejects: Iterable[Rejected]) -> int:
    """Keep rejected records for review; a reject seen again only bumps ``last_seen``.

    Returns:
        How many rejects were new.
    """
    new = 0
    now = utcnow()
    for r in rejects:
        fp = reject_fingerprint(connection, r)
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
                raw=r.raw[:10000],
                fingerprint=fp,
                first_seen=now,
                last_seen=now,
            )
        )
        new += 1
    return new
