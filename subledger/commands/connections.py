"""``subledger connections add|list|check|remove``: configured connector instances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from sqlmodel import Session, select

from subledger.commands._output import console, print_json
from subledger.commands._store import open_store
from subledger.core.config_files import read_mapping_file
from subledger.core.errors import ConfigError
from subledger.core.model.sync_state import Connection

connections_app = typer.Typer(
    help="Configured connections to billing, CRM and ERP systems.", no_args_is_help=True
)


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["path=examples", "api_key=env:STRIPE_KEY"]`` into a dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r} is not KEY=VALUE", fix="write it as --set path=examples")
        out[key.strip()] = value
    return out


@connections_app.command("add")
def add(
    name: str = typer.Argument(..., help="A name for this connection, e.g. stripe-prod."),
    plugin: str = typer.Argument(..., help="The connector, e.g. files or stripe."),
    settings: list[str] = typer.Option([], "--set", help="A config value, KEY=VALUE (repeatable)."),
    config_file: Path | None = typer.Option(None, "--config", help="A YAML/JSON file of config values."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite an existing connection."),
) -> None:
    """Add a connection. Secrets may be given as env:VARIABLE to keep them out of the store."""
    from subledger.core.plugins import get_connector_class
    from subledger.core.secrets import config_for_storage, load_config

    raw: dict[str, Any] = {}
    if config_file is not None:
        raw.update(read_mapping_file(config_file, what="config file", missing_fix="pass an existing YAML or JSON file",
                                     shape_fix="write KEY: VALUE lines"))
    raw.update(parse_settings(settings))
    cls = get_connector_class(plugin)
    if name == "files" or "path" in raw:
        raw = _absolute_paths(raw)
    config = load_config(cls.config_model, raw)
    engine = open_store()
    with Session(engine) as session, session.begin():
        existing = session.get(Connection, name)
        if existing is not None and not replace:
            raise ConfigError(
                f"connection {name!r} already exists", fix="pass --replace or choose another name"
            )
        row = existing or Connection(name=name, plugin=plugin)
        row.plugin = plugin
        row.config = config_for_storage(config)
        session.add(row)
    console.print(f"connection {name!r} ({plugin}) saved; check it with `subledger connections check {name}`")


def _absolute_paths(raw: dict[str, Any]) -> dict[str, Any]:
    # A relative folder would mean something else when pull runs from another directory.
    out = dict(raw)
    if isinstance(out.get("path"), str):
        out["path"] = str(Path(out["path"]).expanduser().resolve())
    return out


@connections_app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List connections (secrets are shown only as where they come from)."""
    engine = open_store()
    with Session(engine) as session:
        rows = session.exec(select(Connection).order_by(Connection.name)).all()
    data = [
        {"name": r.name, "plugin": r.plugin, "enabled": r.enabled, "config": _display(r.config)} for r in rows
    ]
    if json_out:
        print_json(data)
        return
    table = Table("name", "plugin", "enabled", "config")
    for d in data:
        table.add_row(
            d["name"], d["plugin"], str(d["enabled"]), ", ".join(f"{k}={v}" for k, v in d["config"].items())
        )
    console.print(table)


def _display(config: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and "env" in value:
            out[key] = f"env:{value['env']}"
        elif isinstance(value, dict) and "encrypted" in value:
            out[key] = "**********"
        else:
            out[key] = value
    return out


@connections_app.command("check")
def check(
    name: str = typer.Argument(..., help="The connection to check."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check a connection's config and credentials with one cheap call."""
    from subledger.sync.pull import load_connector

    engine = open_store()
    with Session(engine) as session:
        connector = load_connector(session, name)
    result = connector.check()
    if json_out:
        print_json(
            {"connection": name, "ok": result.ok, "message": result.message, "details": result.details}
        )
    elif result.ok:
        console.print(f"[green]ok[/] {name}: {result.message}")
    else:
        console.print(f"[red]failed[/] {name}: {result.message}")
    if not result.ok:
        raise typer.Exit(2)


@connections_app.command("remove")
def remove(name: str = typer.Argument(..., help="The connection to remove.")) -> None:
    """Remove a connection. Records already pulled from it stay in the store."""
    engine = open_store()
    with Session(engine) as session, session.begin():
        row = session.get(Connection, name)
        if row is None:
            raise ConfigError(f"no connection named {name!r}", fix="see `subledger connections list`")
        session.delete(row)
    console.print(f"connection {name!r} removed")


def register(app: typer.Typer) -> None:
    app.add_typer(connections_app, name="connections")
