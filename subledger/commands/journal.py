"""``subledger journal export``: the posted journal as CSV or JSON, for an ERP."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlmodel import Session

from subledger.commands._output import console
from subledger.commands._store import open_store
from subledger.core.errors import ConfigError
from subledger.core.revrec import reports
from subledger.core.revrec.calendar import Month

journal_app = typer.Typer(help="The revenue journal.", no_args_is_help=True)


@journal_app.command("export")
def export(
    fmt: str = typer.Option("csv", "--format", help="csv (one row per line) or json (entries with lines)."),
    period: str = typer.Option(None, "--period", help="Only entries posted in this month (YYYY-MM)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Export journal entries; each carries a stable external id an ERP can upsert on."""
    if fmt not in ("csv", "json"):
        raise ConfigError(f"unknown format {fmt!r}", fix="use --format csv or --format json")
    month = Month.parse(period) if period else None
    with Session(open_store()) as session:
        if fmt == "csv":
            text = reports.journal_rows(session, period=month).to_csv()
        else:
            text = json.dumps({"entries": reports.journal_entries_json(session, period=month)}, indent=2) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(journal_app, name="journal")
