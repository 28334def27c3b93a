"""``subledger leakage``: unbilled and over-billed amounts by customer and period."""

from __future__ import annotations

import csv
import sys

import typer
from rich.table import Table
from sqlmodel import Session

from subledger.commands._as_of import parse_as_of
from subledger.commands._output import console, print_json
from subledger.commands._store import open_store
from subledger.core.db_types import decimal_text, utcnow
from subledger.core.money import to_major
from subledger.sync.leakage import leakage, leakage_as_of
from subledger.sync.settings import load_settings


def _major(minor: int, currency: str) -> str:
    return decimal_text(to_major(minor, currency)) if currency != "-" else str(minor)


def leakage_command(
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    csv_out: bool = typer.Option(False, "--csv", help="Print CSV (one row per customer, period and currency)."),
    top: int = typer.Option(10, "--top", help="How many of the largest offenders to show."),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="DATE|TIMESTAMP",
        help="Judge afresh as of this instant (a date means the end of that day, UTC) instead of reading the "
        "open findings: the same rules over the contract read model, nothing stored.",
    ),
) -> None:
    """Unbilled and over-billed amounts by customer and period, totals, and the largest offenders.

    Also lists ended periods that were not judged because their usage was not read.
    """
    engine = open_store()
    with Session(engine) as session:
        if as_of is not None:
            report = leakage_as_of(session, load_settings(), parse_as_of(as_of), top=top)
        else:
            report = leakage(session, top=top)
            report.not_covered = leakage_as_of(session, load_settings(), utcnow(), top=0).not_covered
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
                "as_of": report.as_of.isoformat() if report.as_of else None,
                "not_covered": [gap.to_json() for gap in report.not_covered],
            }
        )
        return
    for gap in report.not_covered:
        console.print(f"[yellow]{gap.text()}[/]", highlight=False)
    if not report.rows:
        judged = "in every judged period" if report.not_covered else ""
        console.print(f"no leakage: every expected charge is invoiced {judged}".rstrip())
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
