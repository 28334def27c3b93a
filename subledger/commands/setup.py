"""``subledger init`` and ``subledger db upgrade|current|stamp|revision``."""

from __future__ import annotations

import typer

from subledger.commands._output import console, print_json
from subledger.commands._store import safe_url, schema_of, store_engine
from subledger.core.errors import ConfigError
from subledger.core.paths import data_dir
from subledger.core.store.migrate import current_revision, head_revision, make_revision, stamp, upgrade

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


def init(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Create the data directory and the store, and bring its schema up to date."""
    engine = store_engine(create=True)
    before = schema_of(engine)
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
    engine = store_engine(create=True)
    schema_of(engine)  # an unreachable store says which setting to change
    upgrade(engine, revision)
    console.print(f"schema at {current_revision(engine)}")


@db_app.command("current")
def db_current(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the schema revision of the store and of this subledger (creates nothing)."""
    engine = store_engine()
    info = {"database": safe_url(engine), "store": schema_of(engine), "shipped_head": head_revision()}
    if json_out:
        print_json(info)
        return
    console.print(f"store: {info['store']}  shipped head: {info['shipped_head']}")


@db_app.command("stamp")
def db_stamp() -> None:
    """Mark a store built without migrations as current, when its tables are exactly the model's."""
    engine = store_engine()
    if schema_of(engine) is not None:
        raise ConfigError(f"the store at {safe_url(engine)} is already at schema {current_revision(engine)}",
                          fix="run `subledger db upgrade` to bring it up to date")
    diff = stamp(engine)
    if diff:
        shown = "; ".join(str(d) for d in diff[:5]) + (f" (+{len(diff) - 5} more)" if len(diff) > 5 else "")
        raise ConfigError(f"the store's tables are not this subledger's ({len(diff)} differences: {shown})",
                          fix="build the store with `subledger init` (migrations), or upgrade the subledger that "
                          "built it")
    console.print(f"store stamped at {current_revision(engine)}, ledger invariants installed")


@db_app.command("revision", hidden=True)
def db_revision(message: str = typer.Option(..., "-m", help="What the migration does.")) -> None:
    """Autogenerate a migration from the model (for subledger developers)."""
    make_revision(store_engine(create=True), message)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(db_app, name="db")
