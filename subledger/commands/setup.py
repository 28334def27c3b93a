"""``subledger init`` and ``subledger db upgrade|current|revision``."""

from __future__ import annotations

import typer

from subledger.commands._output import console, print_json
from subledger.commands._store import safe_url
from subledger.core.paths import data_dir
from subledger.core.store.engine import get_engine
from subledger.core.store.migrate import current_revision, head_revision, make_revision, upgrade

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


def init(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create the data directory and the store, and bring its schema up to date."""
    engine = get_engine()
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    info = {
        "data_dir": str(data_dir()),
        "database": safe_url(engine),
        "schema": after,
        "upgraded_from": before,
    }
    if json_out:
        print_json(info)
        return
    verb = "created" if before is None else ("upgraded" if before != after else "already current")
    console.print(f"store {verb}: {info['database']} (schema {after})")
    console.print(f"data directory: {info['data_dir']}")


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply schema migrations."""
    engine = get_engine()
    upgrade(engine, revision)
    console.print(f"schema at {current_revision(engine)}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the store and of this subledger."""
    engine = get_engine()
    console.print(f"store: {current_revision(engine)}  shipped head: {head_revision()}")


@db_app.command("revision", hidden=True)
def db_revision(message: str = typer.Option(..., "-m", help="What the migration does.")) -> None:
    """Autogenerate a migration from the model (for subledger developers)."""
    make_revision(get_engine(), message)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(db_app, name="db")
