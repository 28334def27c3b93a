"""Database leases that keep two syncs of one connection from overlapping, across processes.

A lease is a row in ``lock``. Taking it is one short transaction: insert, or take over an
expired lease. The primary key makes two simultaneous takers collide, so exactly one wins
on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, delete, update

from subledger.core.db_types import utcnow
from subledger.core.errors import TransientError
from subledger.core.model.schedule import Lock


class LockHeld(TransientError):
    """Someone else holds the lease."""


def process_owner() -> str:
    """An owner id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def acquire(engine: Engine, name: str, owner: str, *, ttl: timedelta, now: datetime | None = None) -> None:
    """Take the lease ``name`` for ``owner``, or raise :class:`LockHeld`."""
    now = now or utcnow()
    try:
        with Session(engine) as session, session.begin():
            row = session.get(Lock, name)
            if row is None:
                session.add(Lock(name=name, owner=owner, acquired_at=now, expires_at=now + ttl))
            elif row.owner == owner or row.expires_at <= now:
                taken = session.exec(
                    update(Lock)
                    .where(Lock.name == name, Lock.owner == row.owner, Lock.expires_at == row.expires_at)
                    .values(owner=owner, acquired_at=now, expires_at=now + ttl)
                )
                if taken.rowcount != 1:
                    raise LockHeld(f"{name} was just taken by another process", fix="try again later")
            else:
                raise LockHeld(
                    f"{name} is held by {row.owner} until {row.expires_at.isoformat()}",
                    fix="wait for the running sync to finish",
                )
    except (IntegrityError, OperationalError) as exc:
        raise LockHeld(f"{name} is being taken by another process", fix="try again later") from exc


def release(engine: Engine, name: str, owner: str) -> None:
    """Give the lease back (only if ``owner`` still holds it)."""
    with Session(engine) as session, session.begin():
        session.exec(delete(Lock).where(Lock.name == name, Lock.owner == owner))


@contextmanager
def held(
    engine: Engine, name: str, owner: str | None = None, *, ttl: timedelta = timedelta(hours=1)
) -> Iterator[str]:
    """Hold the lease ``name`` for the duration of the block."""
    owner = owner or process_owner()
    acquire(engine, name, owner, ttl=ttl)
    try:
        yield owner
    finally:
        release(engine, name, owner)
