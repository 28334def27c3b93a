"""Schema migrations with Alembic: ``subledger db upgrade`` and ``subledger init`` call these."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
LEDGER_INVARIANTS_REVISION = "e2b3c4d5f6a7"


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at subledger's migrations (and at ``engine``, if given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (idempotent: a current schema is left alone)."""
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest migration shipped with this version of subledger."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def make_revision(engine: Engine, message: str) -> None:
    """Autogenerate a migration from the model (a developer tool: ``subledger db revision``)."""
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)


def stamp(engine: Engine) -> list[Any]:
    """Mark a store built without migrations (``create_all``) as at the shipped head.

    Only when its tables are exactly the model's: returns the differences (and stamps
    nothing) otherwise. The ledger invariants the migrations would have installed are
    installed too, so a stamped store is guarded like a migrated one.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    import subledger.core.model  # noqa: F401  (registers every table)

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), SQLModel.metadata)
    if diff:
        return list(diff)
    install_ledger_invariants(engine)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "head")
    return []


def install_ledger_invariants(bind: Engine | Connection) -> None:
    """Install the ledger's database invariants on a store built by ``create_all``.

    A store built by the migrations has them already (revision ``e2b3c4d5f6a7`` installs
    them, see docs/architecture.md "Invariants"); this runs the same SQL, for stores whose
    tables come from ``SQLModel.metadata.create_all`` (tests, a demo store).
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            install_ledger_invariants(conn)
        return
    for sql in _ledger_invariants().statements(bind.dialect.name):
        bind.execute(text(sql))


@cache
def _ledger_invariants() -> Any:
    """The migration module that holds the invariants' SQL."""
    script = ScriptDirectory.from_config(alembic_config()).get_revision(LEDGER_INVARIANTS_REVISION)
    assert script is not None and script.module is not None
    return script.module
