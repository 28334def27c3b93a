"""The shipped migrations build exactly the schema the model declares, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel

from subledger.core.store.migrate import current_revision, head_revision, upgrade


def test_upgrade_builds_the_model_schema_and_is_idempotent(empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None
    upgrade(empty_engine)
    upgrade(empty_engine)  # running it again changes nothing
    assert current_revision(empty_engine) == head_revision()
    with empty_engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == [], f"the model changed without a migration: {diff}\nrun `subledger db revision -m ...`"
