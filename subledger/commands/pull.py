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
    failed = [(r.connection, s) for r in reports for s in r.failed]
    if json_out:
        print_json(
            [{"connection": r.connection, "complete": r.complete, "streams": [s.__dict__ for s in r.streams]}
             for r in reports]
        )
        if failed:
            raise typer.Exit(1)
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
    for connection, s in failed:
        console.print(f"[red]failed[/] {connection}/{s.stream} ({s.kind}): {s.error}. Fix: {s.fix}", highlight=False)
    if failed:
        raise typer.Exit(1)  # the other streams were read; cron must still see this one did not


rejects_app = typer.Typer(
    help="Rejected records: list them (the default), and release quarantined usage events.",
    invoke_without_command=True,
)


@rejects_app.callback(invoke_without_command=True)
def rejects(
    ctx: typer.Context,
    connection: str | None = typer.Option(None, "--connection", help="Only this connection."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(200, "--limit", help="Show at most this many."),
) -> None:
    """List quarantined records: where they are, what is wrong, and the fix."""
    if ctx.invoked_subcommand is not None:
        return
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
            "id": r.id,
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
    table = Table("id", "where", "field", "reason", "fix", show_lines=True)
    for d in data:
        where = f"{d['connection']}: {d['location']}" + (f":{d['line']}" if d["line"] else "")
        table.add_row(str(d["id"]), where, d["field"] or "", d["reason"], d["fix"])
    console.print(table)


@rejects_app.command("release")
def release_command(
    ids: list[int] = typer.Option([], "--id", help="Only these quarantined events (ids from `subledger rejects`)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be released; store nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Store quarantined usage events whose customer and meter are now known, each exactly once.

    Usage pushed to `subledger serve` for an unknown customer or meter is quarantined; link the customer (or
    define the meter), then release. The others stay quarantined.
    """
    try:
        from subledger.api.ingest import Limits
        from subledger.api.quarantine import release
        from subledger.api.settings import load_service_settings
    except ImportError as exc:  # pragma: no cover - only without the server extra
        raise ConfigError(f"releasing needs the service: {exc}", fix="pip install 'subledger[server]'") from None
    from subledger.commands.sync import actor

    engine = open_store()
    settings = load_service_settings()
    limits = Limits(max_properties_bytes=settings.max_properties_bytes,
                    correction_meters=frozenset(settings.correction_meters))
    report = release(engine, settings.usage_source, ids=ids or None, grace_days=settings.grace_days,
                     max_future_seconds=settings.max_future_seconds, limits=limits, actor=actor(), dry_run=dry_run)
    if json_out:
        print_json({"dry_run": dry_run, **report.to_json()})
        return
    if report.results:
        table = Table("id", "event", "status", "reason")
        for r in report.results:
            table.add_row(str(r.reject), r.event or "", r.status, r.reason or "")
        console.print(table)
    verb = "would be released" if dry_run else "released"
    console.print(
        f"{report.count('released')} {verb}, {report.count('duplicate')} already stored ({verb}), "
        f"{report.count('unknown')} still unknown, {report.count('refused')} refused"
    )


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_command)
    app.add_typer(rejects_app, name="rejects")
