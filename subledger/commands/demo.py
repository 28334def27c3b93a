"""``subledger demo``: the whole product on built-in sandboxes, in one command, offline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from subledger.commands._output import console, print_json
from subledger.core.money import to_major


def _usd(minor: int) -> str:
    return f"{to_major(minor, 'USD'):,}"


def _print_findings(result: Any) -> None:
    from subledger.demo.run import CONNECTIONS

    first = result.rounds[0]
    leaks = [f for f in first.open_findings if f["rule"] != "crm_usage_fields"]
    total = first.leakage.totals.get("USD", {}).get("unbilled_minor", 0) if first.leakage else 0
    console.print(f"\n[bold]Sync 1[/bold] through {', '.join(CONNECTIONS)}: "
                  f"[bold red]{_usd(total)} USD unbilled[/bold red], {len(leaks)} findings")
    by_rule = Table(title="Findings by rule")
    by_rule.add_column("rule")
    by_rule.add_column("findings", justify="right")
    by_rule.add_column("at stake (USD)", justify="right")
    rules: dict[str, list[int]] = {}
    for f in leaks:
        rules.setdefault(f["rule"], []).append(f["amount_minor"])
    for rule, amounts in sorted(rules.items()):
        by_rule.add_row(rule, str(len(amounts)), _usd(sum(a for a in amounts if a > 0)))
    console.print(by_rule)
    if first.leakage and first.leakage.offenders:
        top = Table(title="Unbilled by customer (largest first)")
        top.add_column("customer")
        top.add_column("unbilled (USD)", justify="right")
        for customer, _cur, minor in first.leakage.offenders:
            top.add_row(customer, _usd(minor))
        console.print(top)


def _print_summary(result: Any, report_path: Path | None) -> None:
    rounds = Table(title="What each step did")
    for col in ("step", "findings opened", "actions applied", "open afterwards", "seconds"):
        rounds.add_column(col, justify="left" if col == "step" else "right")
    for r in result.rounds:
        rounds.add_row(r.label, str(r.reconcile.opened), str(len(r.applied.done)),
                       str(len([f for f in r.open_findings if f["rule"] not in ("crm_usage_fields",
                                                                                  "journal_not_in_erp")])),
                       f"{r.seconds:.1f}")
    console.print(rounds)
    run = result.revrec.get("run", {})
    console.print(f"Revenue recognized through {run.get('through')}: {run.get('entries_posted', 0)} journal entries "
                  f"({run.get('entries_by_kind', {})}); {len(result.revrec.get('posted', []))} posted to NetSuite "
                  f"for {', '.join(result.revrec.get('journal_months') or ['every month'])}; "
                  f"periods closed: {', '.join(result.closed) or 'none'}.")
    console.print(f"[bold]Done in {result.timings.get('total', 0):.1f} s[/bold] "
                  f"(seed {result.timings.get('seed', 0):.1f} s, sync {result.timings.get('sync', 0):.1f} s, "
                  f"revenue + journal {result.timings.get('revrec', 0):.1f} s)")
    if report_path:
        console.print(f"Report: [link=file://{report_path}]{report_path}[/link]")


def demo_command(
    customers: int = typer.Option(200, "--customers", min=14, help="How many customers the company has."),
    keep: bool = typer.Option(False, "--keep", help="Keep the sandboxes and the database running until Ctrl-C."),
    report: Path | None = typer.Option(None, "--report", help="Where to write the HTML report."),
    journal_months: int = typer.Option(1, "--journal-months", min=0,
                                       help="Post the journal of the year's last N months to NetSuite (0: all)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary instead of tables."),
) -> None:
    """Run the whole product on built-in sandboxes: find leaks, fix them, recognize revenue, close the books."""
    from subledger.core.paths import data_dir
    from subledger.demo.report import render_report
    from subledger.demo.run import PROGRESS_STEPS, report_data, run_demo

    workdir = data_dir() / "demo" if keep else None
    database_url = f"sqlite:///{workdir / 'demo.sqlite'}" if workdir else None
    if workdir and (workdir / "demo.sqlite").exists():
        (workdir / "demo.sqlite").unlink()  # the demo always starts from a fresh company
    written: dict[str, Path] = {}

    def finish(result: Any) -> None:
        path = report or ((workdir or Path.cwd()) / "subledger-demo-report.html")
        path.write_text(render_report(report_data(result)))
        written["report"] = path.resolve()
        if keep and not json_out:
            _print_findings(result)
            _print_summary(result, written["report"])
            console.print("\n[bold]Sandboxes still serving[/bold] (Ctrl-C to stop):")
            for name, url in result.urls.items():
                console.print(f"  {name:<11} {url}")
            console.print(f"  database    {result.database_url}\n"
                          f"  try: SUBLEDGER_DATABASE_URL={result.database_url} subledger findings list")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("stopping")

    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                   TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(), console=console,
                   disable=json_out)
    task = bar.add_task("starting", total=PROGRESS_STEPS)
    step: dict[str, Any] = {}

    def progress(message: str) -> None:
        now = time.perf_counter()
        if step:
            bar.console.print(f"[green]✓[/green] {step['message']} [dim]({now - step['at']:.1f} s)[/dim]")
            bar.advance(task)
        step.update(message=message, at=now)
        bar.update(task, description=message)

    def done() -> None:
        if step:
            progress("done")
            step.clear()
        bar.stop()

    def finish_after_progress(result: Any) -> None:
        done()
        finish(result)

    with bar:
        result = run_demo(customers, database_url=database_url, workdir=workdir,
                          progress=None if json_out else progress, journal_months=journal_months or None,
                          keep=finish_after_progress)
    if json_out:
        print_json(summary_json(result, written.get("report")))
    elif not keep:
        _print_findings(result)
        _print_summary(result, written.get("report"))


def summary_json(result: Any, report_path: Path | None) -> dict[str, Any]:
    """What the demo did, for scripts."""
    first = result.rounds[0]
    return {
        "customers": len(result.company.customers),
        "unbilled_minor": first.leakage.totals.get("USD", {}).get("unbilled_minor", 0) if first.leakage else 0,
        "findings": [{k: f[k] for k in ("rule", "customer", "period", "amount_minor", "summary")}
                     for f in first.open_findings if f["rule"] != "crm_usage_fields"],
        "rounds": [{"step": r.label, "opened": r.reconcile.opened, "applied": len(r.applied.done),
                    "failed": len(r.applied.failed), "seconds": round(r.seconds, 2)} for r in result.rounds],
        "revrec": result.revrec.get("run"),
        "journal_posted": len(result.revrec.get("posted", [])),
        "closed": result.closed,
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "report": str(report_path) if report_path else None,
        "database_url": result.database_url,
    }


def register(app: typer.Typer) -> None:
    """Add ``subledger demo``."""
    app.command("demo")(demo_command)
