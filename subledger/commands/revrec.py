"""``subledger revrec run|report|close``: revenue recognition from the store."""

from __future__ import annotations

import calendar
import os
from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from sqlmodel import Session

from subledger.commands._as_of import as_of_option, parse_as_of
from subledger.commands._output import console, print_json
from subledger.commands._store import open_store
from subledger.core.errors import ConfigError
from subledger.core.revrec import reports
from subledger.core.revrec.accounts import ChartOfAccounts
from subledger.core.revrec.calendar import Month
from subledger.core.revrec.chart import waterfall_svg
from subledger.core.revrec.ledger import close_period
from subledger.sync.recognition import recognize

revrec_app = typer.Typer(help="Revenue recognition: schedules, journal, reports, period close.",
                         no_args_is_help=True)

REPORTS = ("waterfall", "rollforward", "unbilled", "revenue")
FORMATS = ("table", "csv", "json")
CHART_ENV = "SUBLEDGER_CHART_OF_ACCOUNTS"


def parse_through(text: str | None) -> date:
    """``2026-03`` means the end of March 2026; ``2026-03-15`` that day; nothing means today."""
    if not text:
        return date.today()
    raw = text.strip()
    try:
        if len(raw) == 7:
            m = Month.parse(raw)
            return date(m.year, m.month, calendar.monthrange(m.year, m.month)[1])
        return date.fromisoformat(raw)
    except (ValueError, ConfigError):
        raise ConfigError(
            f"--through {text!r} is not a month or a date", fix="write --through 2026-03 or --through 2026-03-15"
        ) from None


def load_chart(path: Path | None) -> ChartOfAccounts:
    """The chart of accounts from ``--chart-of-accounts``, ``$SUBLEDGER_CHART_OF_ACCOUNTS`` or defaults."""
    path = path or (Path(os.environ[CHART_ENV]) if os.environ.get(CHART_ENV) else None)
    return ChartOfAccounts.load(path) if path else ChartOfAccounts()


@revrec_app.command("run")
def run(
    through: str = typer.Option(None, "--through", help="Recognize through this month (2026-03) or day."),
    chart: Path = typer.Option(None, "--chart-of-accounts", help="YAML/JSON account mapping file."),
    as_of: str | None = as_of_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Derive obligations, post the journal and refresh the schedule (safe to re-run).

    Contracts are rated by the contract read model, exactly as reconciliation rates them.
    """
    through_day = parse_through(through)
    accounts = load_chart(chart)
    with Session(open_store(), expire_on_commit=False) as session:
        result = recognize(session, through=through_day, as_of=parse_as_of(as_of), chart=accounts)
        session.commit()
    if json_out:
        print_json(result.to_json())
        return
    info = result.to_json()
    console.print(
        f"recognized through {info['through']}: {info['obligations']} obligations, "
        f"{info['entries_posted']} entries posted ({info['reversals']} reversals, "
        f"{info['late_postings']} late into an open period), {info['schedule_changes']} schedule lines changed"
    )
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)


@revrec_app.command("report")
def report(
    name: str = typer.Argument(..., help="waterfall, rollforward, unbilled or revenue."),
    by: str = typer.Option("contract", "--by", help="Group by contract, customer, product or obligation."),
    start: str = typer.Option(None, "--from", help="First month (YYYY-MM)."),
    end: str = typer.Option(None, "--to", help="Last month (YYYY-MM)."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    chart_file: Path = typer.Option(None, "--chart", help="Waterfall only: also write an SVG chart here."),
    json_out: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    """Print a revenue report as a table, CSV or JSON."""
    if name not in REPORTS:
        raise ConfigError(f"unknown report {name!r}", fix=f"use one of: {', '.join(REPORTS)}")
    fmt = "json" if json_out else fmt
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", fix=f"use one of: {', '.join(FORMATS)}")
    first = Month.parse(start) if start else None
    last = Month.parse(end) if end else None
    with Session(open_store()) as session:
        if name == "waterfall":
            rep = reports.waterfall(session, by=by, start=first, end=last)
        elif name == "rollforward":
            rep = reports.rollforward(session, start=first, end=last)
        elif name == "unbilled":
            rep = reports.positions(session, as_of=last)
        else:
            rep = reports.revenue(session, by=by if by != "contract" else "contract", start=first, end=last)
    if chart_file is not None:
        if name != "waterfall":
            raise ConfigError("--chart draws the waterfall only", fix="use it with `revrec report waterfall`")
        chart_file.write_text(waterfall_svg(rep), encoding="utf-8")
    emit(rep, fmt, output)


def emit(rep: reports.Report, fmt: str, output: Path | None) -> None:
    """Write a report in ``fmt`` to ``output`` or stdout."""
    if fmt == "table" and output is None:
        # Print whole: a cut amount is worse than a wide line (use --from/--to to narrow).
        wide = Console(width=max(console.width, rep.width()), highlight=False)
        wide.print(rep.to_rich())
        return
    text = rep.to_csv() if fmt == "csv" else rep.to_json_text() + "\n"
    if fmt == "table":  # a table written to a file is its CSV
        text = rep.to_csv()
    if output is not None:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


@revrec_app.command("close")
def close(
    period: str = typer.Argument(..., help="The month to close (YYYY-MM); earlier months close with it."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Close an accounting period: its journal never changes again."""
    month = Month.parse(period)
    with Session(open_store()) as session:
        closed = close_period(session, month, closed_by=os.environ.get("USER", "cli"))
        session.commit()
    if json_out:
        print_json({"closed": [str(m) for m in closed], "closed_through": str(month)})
        return
    if closed:
        console.print(f"closed {', '.join(str(m) for m in closed)}; late data now posts in {month.next()}")
    else:
        console.print(f"{month} was already closed")


def register(app: typer.Typer) -> None:
    app.add_typer(revrec_app, name="revrec")
