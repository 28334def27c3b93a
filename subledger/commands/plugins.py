"""``subledger plugins``: what the plugin host found, loaded, blocked or failed to load."""

from __future__ import annotations

import dataclasses

import typer
from rich.table import Table

from subledger.commands._output import console, print_json


def plugins(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List plugins with their status, what they register, and any load error."""
    from subledger.core.plugins import plugin_report

    report = plugin_report()
    if json_out:
        print_json([dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p.model_dump() for p in report])
        return
    table = Table("plugin", "status", "version", "registers", "error")
    for p in report:
        data = dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p.model_dump()
        registers = ", ".join(
            f"{kind}: {', '.join(names)}"
            for kind in ("connectors", "rules", "notifiers", "sandboxes")
            if (names := data.get(kind))
        )
        table.add_row(
            data.get("name", ""),
            data.get("status", ""),
            str(data.get("version") or ""),
            registers,
            data.get("error") or "",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)
