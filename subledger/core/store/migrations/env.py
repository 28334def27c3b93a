"""Alembic environment: runs against the connection handed over by subledger.core.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import subledger.core.model  # noqa: F401  (registers every table on SQLModel.metadata)
from subledger.core.store.engine import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        with make_engine(config.get_main_option("sqlalchemy.url") or None).connect() as conn:
            _run(conn)
    else:
        _run(connection)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
