"""``subledger pull`` (the read side of a sync) and ``subledger rejects``."""

from __future__ import annotations

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlmodel import Session, select

from subledger.commands._output import console, print_json
from subledger.commands._store import open_store
from subledger.core.errors import ConfigError
from subledger.core.model.sync_state import Connection, Reject
from subledger.sync.pull import PullReport, StreamReport, pull


def pull_command(
    connections: list[str] = typer.Argument(None, help="Connections to pull (default: all enabled)."),
    stream: list[str] = typer.Option([], "--stream", help="Only these streams."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Read new and changed records from each connection, incrementally."""
    engine = open_store()
    with Session(engine) as session:
        names = connections or [
            c.name
            for c in session.exec(select(Connection).where(Connection.enabled).order_by(Connection.name))
        ]
    if not names:
        raise ConfigError("there are no connections to pull", fix="add one with `subledger connections add`")
    reports: list[PullReport] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=json_out,
        transient=False,
    ) as progress:
        for name in names:
            task = progress.add_task(f"{name}: starting", total=None)

            def show(stream_name: str, r: StreamReport, task: int = task, name: str = name) -> None:
                progress.update(
                    task, description=f"{name}/{stream_name}: {r.records:,} read, {r.rejected:,} rejected"
                )

            reports.append(pull(engine, name, streams=stream or None, progress=show))
            progress.update(task, description=f"{name}: done")
    if json_out:
        print_json(
            [{"connection": r.connection, "streams": [s.__dict__ for s in r.streams]} for r in reports]
        )
        return
    table = Table("connection", "stream", "read", "changed", "usage new", "usage dup", "rejected")
    for r in reports:
        for s in r.streams:
            table.add_row(
                r.connection,
                s.stream,
                f"{s.records:,}",
                f"{s.changed:,}",
                f"{s.usage_inserted:,}",
                f"{s.usage_duplicates:,}",
                f"{s.rejected:,}",
            )
    console.print(table)
    total_rejected = sum(r.rejected for r in reports)
    if total_rejected:
        console.print(f"[yellow]{total_rejected} new rejected record(s)[/]: see `subledger rejects`")


def rejects(
    connection: str | None = typer.Option(None, "--connection", help="Only this connection."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(200, "--limit", help="Show at most this many."),
) -> None:
    """List quarantined records: where they are, what is wrong, and the fix."""
    engine = open_store()
    with Session(engine) as session:
        stmt = (
            select(Reject)
            .where(Reject.status == "open")
            .order_by(Reject.connection, Reject.location, Reject.line)
        )
        if connection:
            stmt = stmt.where(Reject.connection == connection)
        rows = session.exec(stmt.limit(limit)).all()
    data = [
        {
            "connection": r.connection,
            "stream": r.stream,
            "location": r.location,
            "line": r.line,
            "field": r.field,
            "reason": r.reason,
            "fix": r.fix,
            "raw": r.raw,
            "first_seen": r.first_seen.isoformat(),
        }
        for r in rows
    ]
    if json_out:
        print_json(data)
        return
    if not data:
        console.print("no rejected records")
        return
    table = Table("where", "field", "reason", "fix", show_lines=True)
    for d in data:
        where = f"{d['connection']}: {d['location']}" + (f":{d['line']}" if d["line"] else "")
        table.add_row(where, d["field"] or "", d["reason"], d["fix"])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_command)
    app.command("rejects")(rejects)
