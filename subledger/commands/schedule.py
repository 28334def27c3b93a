"""``subledger schedule add|list|pause|resume|remove``, ``subledger worker`` and ``subledger runs``."""

from __future__ import annotations

import getpass
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlmodel import Session, select

from subledger.commands._alerts import send_alerts
from subledger.commands._output import console, err_console, print_json
from subledger.commands._store import open_store
from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError
from subledger.core.model.run import SyncRun
from subledger.core.model.schedule import Schedule
from subledger.sync.schedule import (
    add_schedule,
    describe,
    format_duration,
    new_schedule,
    parse_cron,
    parse_duration,
    remove_schedule,
    set_enabled,
)
from subledger.sync.worker import Outcome, Worker, error_text

schedule_app = typer.Typer(help="Recurring syncs, run by `subledger worker`.", no_args_is_help=True)


def actor() -> str:
    """``user:<login>`` for changes made from this command line."""
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return "user"


def stamp(at: datetime | None) -> str:
    """``2026-03-01 06:00:00Z`` (always UTC, so two machines print the same)."""
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "-"


def relative(at: datetime, now: datetime) -> str:
    """``in 4m10s``, ``1d19h ago`` or ``now``: the two largest units are precise enough to read."""
    seconds = round((at - now).total_seconds())
    if seconds == 0:
        return "now"
    span = "".join(re.findall(r"\d+[a-z]", format_duration(timedelta(seconds=abs(seconds))))[:2])
    return f"in {span}" if seconds > 0 else f"{span} ago"


def schedule_json(row: Schedule) -> dict[str, Any]:
    return {
        "id": row.id,
        "target": row.target,
        "every_seconds": row.every_seconds,
        "cron": row.cron,
        "enabled": row.enabled,
        "next_run_at": row.next_run_at.isoformat(),
        "last_run_at": row.last_run_at.isoformat() if row.last_run_at else None,
        "last_status": row.last_status,
        "consecutive_failures": row.consecutive_failures,
        "created_at": row.created_at.isoformat(),
    }


# -- schedule ---------------------------------------------------------------------------------


@schedule_app.command("add")
def add(
    target: str = typer.Argument(..., help="A connection name, or 'all' for every enabled connection."),
    every: str | None = typer.Option(None, "--every", help="Run at this interval: 30s, 15m, 1h, 1d, 1h30m."),
    cron: str | None = typer.Option(None, "--cron", help='Run on this cron, e.g. "*/15 * * * *" (UTC).'),
    tz: str | None = typer.Option(
        None, "--tz", help="Read --cron in this IANA time zone, e.g. Europe/Paris."
    ),
    schedule_id: str | None = typer.Option(
        None, "--id", help="Name the schedule (default: derived from it)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Schedule a recurring two-way sync of one connection, or of all of them."""
    if (every is None) == (cron is None):
        raise ConfigError(
            "give exactly one of --every and --cron", fix='e.g. --every 15m or --cron "0 * * * *"'
        )
    if tz and every:
        raise ConfigError(
            "--tz applies to --cron only", fix="drop --tz: intervals do not depend on a time zone"
        )
    now = utcnow()
    row = new_schedule(
        target,
        every=parse_duration(every) if every else None,
        cron=parse_cron(cron, zone=tz) if cron else None,
        now=now,
        schedule_id=schedule_id,
    )
    engine = open_store()
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row, created = add_schedule(session, row, actor=actor())
    if json_out:
        print_json({**schedule_json(row), "created": created})
        return
    verb = "added" if created else "already exists, unchanged"
    console.print(f"schedule [bold]{row.id}[/] {verb}: sync {row.target} {describe(row)}")
    console.print(
        f"next run {stamp(row.next_run_at)} ({relative(row.next_run_at, now)}); `subledger worker` runs it"
    )


@schedule_app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List schedules, when each runs next and how its last run went."""
    engine = open_store()
    with Session(engine) as session:
        rows = session.exec(select(Schedule).order_by(Schedule.next_run_at, Schedule.id)).all()
    if json_out:
        print_json([schedule_json(r) for r in rows])
        return
    if not rows:
        console.print("no schedules: add one with `subledger schedule add CONNECTION --every 15m`")
        return
    now = utcnow()
    table = Table("id", "target", "when", "next run", "last run", "last status", "failures")
    table.columns[0].no_wrap = True  # ids are copied into `schedule remove`: keep them whole
    for r in rows:
        next_run = f"{stamp(r.next_run_at)} ({relative(r.next_run_at, now)})" if r.enabled else "paused"
        status = r.last_status or "never run"
        colour = {"succeeded": "green", "failed": "red"}.get(status)
        table.add_row(
            r.id,
            r.target,
            describe(r),
            next_run,
            stamp(r.last_run_at),
            f"[{colour}]{status}[/]" if colour else status,
            str(r.consecutive_failures or ""),
        )
    console.print(table)


@schedule_app.command("remove")
def remove(schedule_id: str = typer.Argument(..., metavar="ID", help="The schedule's id.")) -> None:
    """Delete a schedule. Its past runs stay in `subledger runs`."""
    engine = open_store()
    with Session(engine) as session, session.begin():
        remove_schedule(session, schedule_id, actor=actor())
    console.print(f"schedule {schedule_id} removed")


@schedule_app.command("pause")
def pause(schedule_id: str = typer.Argument(..., metavar="ID", help="The schedule's id.")) -> None:
    """Stop running a schedule until it is resumed."""
    engine = open_store()
    with Session(engine) as session, session.begin():
        set_enabled(session, schedule_id, False, actor=actor(), now=utcnow())
    console.print(f"schedule {schedule_id} paused")


@schedule_app.command("resume")
def resume(schedule_id: str = typer.Argument(..., metavar="ID", help="The schedule's id.")) -> None:
    """Run a paused schedule again (and forget its past failures)."""
    engine = open_store()
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = set_enabled(session, schedule_id, True, actor=actor(), now=utcnow())
    console.print(f"schedule {schedule_id} resumed; next run {stamp(row.next_run_at)}")


# -- worker -----------------------------------------------------------------------------------


def print_outcome(outcome: Outcome) -> None:
    """One line per schedule run, for the worker's log."""
    head = f"{stamp(outcome.started)}  {outcome.schedule_id}"
    if outcome.status == "busy":
        console.print(f"{head}  [yellow]skipped[/]: {escape(outcome.error or '')}; will try again")
        return
    took = format_duration(timedelta(seconds=round(outcome.duration.total_seconds(), 1)))
    run = outcome.run
    counts = ""
    if run is not None:
        counts = (
            f"  read {run.records_read:,} written {run.records_written:,}"
            f"  findings +{run.findings_opened} -{run.findings_resolved}"
            f"  actions {run.actions_applied}/{run.actions_planned}"
        )
    if outcome.status == "succeeded":
        console.print(f"{head}  [green]succeeded[/] in {took}{counts}  next {stamp(outcome.next_run_at)}")
        return
    retry = format_duration(outcome.retry_in) if outcome.retry_in else "?"
    console.print(
        f"{head}  [red]failed[/] after {took} (failure {outcome.consecutive_failures} in a row, "
        f"retry in {retry}): {escape(outcome.error or '')}",
        highlight=False,
    )


@contextmanager
def stop_on_signals(worker: Worker) -> Iterator[None]:
    """First Ctrl-C or SIGTERM: finish the sync in progress, then exit. Second Ctrl-C: abort now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: Any) -> None:
        if worker.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        err_console.print("stopping after the sync in progress (Ctrl-C again to abort it)")
        worker.stop()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def worker(
    once: bool = typer.Option(False, "--once", help="Run the schedules due now, then exit."),
    max_runs: int | None = typer.Option(None, "--max-runs", min=1, help="Exit after this many runs."),
    poll: str = typer.Option("5s", "--poll", help="How often to look for due schedules."),
) -> None:
    """Run due scheduled syncs, one at a time, until stopped.

    Workers may share a store: each schedule and connection syncs in one place at a time.

    With --once or --max-runs, exits 1 if a sync failed (for use from cron or CI).
    """
    interval = parse_duration(poll, option="--poll")
    engine = open_store()
    def outcome(result):  # type: ignore[no-untyped-def]
        print_outcome(result)
        send_alerts(engine)

    runner = Worker(engine, poll=interval, on_outcome=outcome)
    with Session(engine) as session:
        total = len(session.exec(select(Schedule.id).where(Schedule.enabled)).all())
    if not once:
        console.print(
            f"worker {runner.owner}: {total} active schedule(s), polling every {format_duration(interval)}; "
            "Ctrl-C to stop"
        )
    with stop_on_signals(runner):
        report = runner.run(once=once, max_runs=max_runs)
    if once and report.runs == 0 and report.busy == 0:
        console.print("nothing due")
    if report.failed and (once or max_runs is not None):
        raise typer.Exit(1)


# -- runs -------------------------------------------------------------------------------------


def run_json(run: SyncRun) -> dict[str, Any]:
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "id": run.id,
        "trigger": run.trigger,
        "connections": run.connections,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": duration,
        "records_read": run.records_read,
        "records_written": run.records_written,
        "findings_opened": run.findings_opened,
        "findings_resolved": run.findings_resolved,
        "actions_planned": run.actions_planned,
        "actions_applied": run.actions_applied,
        "errors": run.errors,
    }


def runs(
    limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many, newest first."),
    trigger: str | None = typer.Option(
        None, "--trigger", help="Only runs with this trigger, e.g. schedule:ID."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the history of syncs: when, how long, what was read and written, and what went wrong.

    A run left "running" by a process that stopped is marked failed first (abandoned).
    """
    from subledger.sync.locks import close_abandoned_runs

    engine = open_store()
    close_abandoned_runs(engine)
    with Session(engine) as session:
        stmt = select(SyncRun).order_by(SyncRun.started_at.desc(), SyncRun.id.desc())  # type: ignore[attr-defined]
        if trigger:
            stmt = stmt.where(SyncRun.trigger == trigger)
        rows = session.exec(stmt.limit(limit)).all()
    if json_out:
        print_json([run_json(r) for r in rows])
        return
    if not rows:
        console.print("no syncs yet: run `subledger sync`, or schedule one with `subledger schedule add`")
        return
    table = Table(
        "started",
        "took",
        "trigger",
        "connections",
        "status",
        "read",
        "written",
        "findings\n+opened -resolved",
        "actions\napplied/planned",
        "errors",
    )
    for r in rows:
        took = (
            format_duration(timedelta(seconds=round((r.finished_at - r.started_at).total_seconds(), 1)))
            if r.finished_at
            else "running"
        )
        colour = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(r.status, "")
        errors = ""
        if r.errors:
            first = error_text(r.errors[0])
            errors = (first[:80] + "…" if len(first) > 80 else first) + (
                f" (+{len(r.errors) - 1} more)" if len(r.errors) > 1 else ""
            )
        table.add_row(
            stamp(r.started_at),
            took,
            r.trigger,
            ", ".join(r.connections) or "all",
            f"[{colour}]{r.status}[/]" if colour else r.status,
            f"{r.records_read:,}",
            f"{r.records_written:,}",
            f"+{r.findings_opened} -{r.findings_resolved}",
            f"{r.actions_applied}/{r.actions_planned}",
            escape(errors),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")
    app.command("worker")(worker)
    app.command("runs")(runs)
