"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

from subledger.core.paths import database_url
from subledger.core.store.usage import register_sqlite_functions


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (default :func:`~subledger.core.paths.database_url`).

    SQLite gets WAL journaling, foreign keys, recursive triggers (so a REPLACE fires the
    ledger's delete guards) and a busy timeout, and its transactions begin IMMEDIATE so two
    writers never interleave a read-then-write.
    """
    url = url or database_url()
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None}, **kwargs)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # INSERT OR REPLACE then fires delete triggers, which refuse replacing ledger rows.
        cur.execute("PRAGMA recursive_triggers=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()
        register_sqlite_functions(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "handle_error")
    def _end_a_refused_commit(ctx: Any) -> None:
        # SQLite checks deferred foreign keys (a journal line's entry) at COMMIT, and a
        # refused COMMIT leaves its transaction open while SQLAlchemy has ended it: roll it
        # back, or the pooled connection could never begin again.
        if ctx.statement is not None or ctx.connection is None or ctx.connection.closed:
            return
        raw = ctx.connection.connection.dbapi_connection
        if raw is not None and raw.in_transaction:
            with suppress(Exception):  # never hide the error being handled
                raw.rollback()


@cache
def get_engine() -> Engine:
    """The process-wide engine for the configured database."""
    return make_engine()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
