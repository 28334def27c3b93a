"""``subledger leakage``: unbilled and over-billed amounts by customer and period."""

from __future__ import annotations

import csv
import sys

import typer
from rich.table import Table
from sqlmodel import Session

from subledger.commands._output import console, print_json
from subledger.commands._store import open_store
from subledger.core.db_types import decimal_text
from subledger.core.money import to_major
from subledger.sync.leakage import leakage


def _major(minor: int, currency: str) -> str:
    return decimal_text(to_major(minor, currency)) if currency != "-" else str(minor)


def leakage_command(
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV (one row per customer, period and currency)."),
    top: int = typer.Option(10, "--top", help="How many of the largest offenders to show."),
) -> None:
    """Unbilled and over-billed amounts by customer and period, totals, and the largest offenders."""
    engine = open_store()
    with Session(engine) as session:
        report = leakage(session, top=top)
    if csv_out:
        writer = csv.writer(sys.stdout)
        writer.writerow(["customer", "period", "currency", "unbilled", "over_billed", "findings"])
        for r in report.rows:
            writer.writerow(
                [
                    r.customer,
                    r.period,
                    r.currency,
                    _major(r.unbilled_minor, r.currency),
                    _major(r.over_billed_minor, r.currency),
                    " ".join(r.findings),
                ]
            )
        return
    if json_out:
        print_json(
            {
                "rows": [
                    {
                        "customer": r.customer,
                        "period": r.period,
                        "currency": r.currency,
                        "unbilled": _major(r.unbilled_minor, r.currency),
                        "unbilled_minor": r.unbilled_minor,
                        "over_billed": _major(r.over_billed_minor, r.currency),
                        "over_billed_minor": r.over_billed_minor,
                        "findings": r.findings,
                    }
                    for r in report.rows
                ],
                "totals": {
                    cur: {
                        "unbilled": _major(t["unbilled_minor"], cur),
                        "over_billed": _major(t["over_billed_minor"], cur),
                        **t,
                    }
                    for cur, t in report.totals.items()
                },
                "largest_offenders": [
                    {"customer": c, "currency": cur, "unbilled": _major(v, cur), "unbilled_minor": v}
                    for c, cur, v in report.offenders
                ],
            }
        )
        return
    if not report.rows:
        console.print("no leakage: every expected charge is invoiced")
        return
    table = Table("customer", "period", "unbilled", "over-billed")
    for r in report.rows:
        table.add_row(
            r.customer,
            r.period,
            f"{_major(r.unbilled_minor, r.currency)} {r.currency}",
            f"{_major(r.over_billed_minor, r.currency)} {r.currency}",
        )
    console.print(table)
    for cur, t in sorted(report.totals.items()):
        console.print(
            f"total {cur}: unbilled {_major(t['unbilled_minor'], cur)}, "
            f"over-billed {_major(t['over_billed_minor'], cur)}"
        )
    if report.offenders:
        console.print(
            "largest offenders: " + ", ".join(f"{c} {_major(v, cur)} {cur}" for c, cur, v in report.offenders)
        )


def register(app: typer.Typer) -> None:
    app.command("leakage")(leakage_command)
