"""``subledger status``: what the store holds and how fresh each connection is."""

from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy import func
from sqlmodel import Session, select

from subledger.commands._output import console, print_json
from subledger.commands._store import open_store, safe_url
from subledger.core import model
from subledger.core.store.migrate import current_revision

COUNTED = {
    "customers": model.Customer,
    "contracts": model.Contract,
    "meters": model.Meter,
    "usage events": model.UsageEvent,
    "invoices": model.Invoice,
    "invoice lines": model.InvoiceLine,
    "credit notes": model.CreditNote,
    "payments": model.Payment,
    "credit grants": model.CreditGrant,
    "revenue schedule lines": model.RevenueScheduleLine,
    "journal entries": model.JournalEntry,
    "open rejects": model.Reject,
}


def status(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the store, its record counts, and each connection's streams."""
    engine = open_store()
    with Session(engine) as session:
        counts = {}
        for label, table in COUNTED.items():
            stmt = select(func.count()).select_from(table)
            if table is model.Reject:
                stmt = stmt.where(model.Reject.status == "open")
            counts[label] = int(session.exec(stmt).one())
        states = session.exec(select(model.StreamState).order_by(model.StreamState.connection)).all()
        conns = session.exec(select(model.Connection).order_by(model.Connection.name)).all()
    info = {
        "database": safe_url(engine),
        "schema": current_revision(engine),
        "counts": counts,
        "connections": [
            {
                "name": c.name,
                "plugin": c.plugin,
                "streams": {s.stream: s.updated_at.isoformat() for s in states if s.connection == c.name},
            }
            for c in conns
        ],
    }
    if json_out:
        print_json(info)
        return
    console.print(f"store: {info['database']} (schema {info['schema']})")
    table = Table("records", "count")
    for label, n in counts.items():
        table.add_row(label, f"{n:,}")
    console.print(table)
    ct = Table("connection", "plugin", "stream", "last checkpoint")
    for c in info["connections"]:
        if not c["streams"]:
            ct.add_row(c["name"], c["plugin"], "-", "never pulled")
        for stream, at in c["streams"].items():
            ct.add_row(c["name"], c["plugin"], stream, at)
    console.print(ct)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
