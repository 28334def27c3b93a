"""Regenerate the example company's usage, invoices and payments (deterministic).

The hand-written files (customers.csv, meters.yaml, contracts/) are the inputs. This
script writes a quarter of usage (January to March 2026), then prices every contract's
months with subledger's own rating engine and writes the invoices that should have been
sent, and the payments of the paid ones. So the shipped invoices agree with the usage
and the terms to the cent::

    .venv/bin/python examples/generate.py          # rewrite the generated files
    .venv/bin/python examples/generate.py --check  # fail if they are out of date

Usage is read back through the files connector before it is rated, so the invoices are
priced on exactly what a pull loads.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from subledger.core.connector import Rejected, UsageEventIn
from subledger.core.db_types import decimal_text
from subledger.core.money import to_major
from subledger.core.rating import aggregate_events, compile_terms, rate_periods, usage_queries
from subledger.core.terms import UsageComponent, load_document, parse_yaml
from subledger.plugins.files import FilesConfig, FilesConnector

HERE = Path(__file__).resolve().parent
START, END = date(2026, 1, 1), date(2026, 4, 1)  # usage and invoices for [START, END)
SEED = 2026
EASTERN = timezone(timedelta(hours=-5))

# customer -> meter -> (first day, daily quantity range, events a day, decimal places)
PROFILES: dict[str, dict[str, tuple[date, tuple[int, int], int, int]]] = {
    "acme": {"api_calls": (START, (3900, 5100), 2, 0)},
    "globex": {"api_calls": (START, (2000, 3000), 2, 0)},
    "initech": {"compute_hours": (START, (2600, 3400), 1, 2), "storage_gb": (START, (24000, 41000), 1, 2)},
    "umbrella": {"api_calls": (date(2026, 1, 15), (1000, 1400), 2, 0)},
    "hooli": {"compute_hours": (START, (58000, 72000), 1, 2)},
    "soylent": {"api_calls": (START, (4600, 5400), 2, 0), "storage_gb": (START, (10000, 13000), 1, 2)},
}
CSV_CUSTOMERS = {"globex"}  # their usage ships as CSV, to show that format
JSON_INVOICES = {"globex"}  # their invoices ship as JSON
PROPERTIES = {
    "api_calls": [{"region": "us-east-1", "endpoint": "/v2/search"}, {"region": "eu-west-1", "endpoint": "/v2/ingest"}],
    "compute_hours": [{"region": "us-east-1", "instance": "m7i.large"}],
    "storage_gb": [{"region": "us-east-1", "bucket": "primary"}],
}
LINE_KINDS = {
    "flat_fee": "recurring", "usage": "usage", "minimum_true_up": "true_up", "maximum_cap": "discount",
    "credit": "credit", "discount": "discount",
}
PAY_METHODS = {"acme": "ach", "globex": "sepa_credit_transfer", "initech": "card", "umbrella": "ach",
               "hooli": "wire", "soylent": "card"}


def days(start: date, end: date) -> Iterator[date]:
    day = start
    while day < end:
        yield day
        day += timedelta(days=1)


def usage_rows() -> dict[str, list[dict[str, Any]]]:
    """Usage events by file name: one JSONL file a month, CSV for the CSV customers."""
    rnd = random.Random(SEED)
    files: dict[str, list[dict[str, Any]]] = {}
    for customer, meters in PROFILES.items():
        for meter, (first, (low, high), per_day, places) in meters.items():
            for day in days(first, END):
                daily = rnd.randint(low, high)
                for batch in range(per_day):
                    # Split the day's quantity into batches that add up to it exactly.
                    part = daily // per_day + (daily % per_day if batch == 0 else 0)
                    quantity = Decimal(part).scaleb(-places)
                    hour = 6 + batch * 12
                    at = datetime(day.year, day.month, day.day, hour, 0, tzinfo=UTC)
                    if customer == "umbrella":  # their collector stamps local (US Eastern) time
                        at = at.astimezone(EASTERN)
                    stamp = at.isoformat().replace("+00:00", "Z")
                    props = PROPERTIES[meter][batch % len(PROPERTIES[meter])]
                    row = {
                        "event_id": f"evt_{customer}_{meter}_{day:%Y%m%d}_{batch}",
                        "customer": customer, "meter": meter, "quantity": quantity,
                        "timestamp": stamp, "properties": props,
                    }
                    name = (f"usage/{customer}-2026-q1.csv" if customer in CSV_CUSTOMERS
                            else f"usage/{day:%Y-%m}.jsonl")
                    files.setdefault(name, []).append(row)
    for rows in files.values():
        rows.sort(key=lambda r: (r["timestamp"][:10], r["customer"], r["meter"], r["event_id"]))
    return files


def render_usage(name: str, rows: list[dict[str, Any]]) -> str:
    if name.endswith(".jsonl"):
        # The quantity is written as a bare JSON number with its exact digits (12.25, not "12.25").
        return "".join(
            "{" + ", ".join(
                f"{json.dumps(key)}: {decimal_text(value) if key == 'quantity' else json.dumps(value)}"
                for key, value in row.items()
            ) + "}\n"
            for row in rows
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["event_id", "customer", "meter", "quantity", "timestamp", "properties"])
    for row in rows:
        writer.writerow([row["event_id"], row["customer"], row["meter"], decimal_text(row["quantity"]),
                         row["timestamp"], json.dumps(row["properties"])])
    return out.getvalue()


def load_events(folder: Path) -> list[UsageEventIn]:
    connector = FilesConnector(FilesConfig(path=folder), connection="files")
    events, rejects = [], []
    for item in connector.read("usage_events", None):
        if isinstance(item, UsageEventIn):
            events.append(item)
        elif isinstance(item, Rejected):
            rejects.append(item)
    if rejects:
        raise SystemExit(f"generated usage does not load cleanly: {rejects[:3]}")
    return events


def invoices(events: list[UsageEventIn]) -> list[dict[str, Any]]:
    """The invoice each contract should have sent for each month, priced by the rating engine."""
    out: list[dict[str, Any]] = []
    by_customer: dict[str, list[UsageEventIn]] = {}
    for event in events:
        by_customer.setdefault(event.customer_external_id, []).append(event)
    number = 1000
    for path in sorted((HERE / "contracts").glob("*.yaml")):
        document = load_document(parse_yaml(path.read_text(), source=str(path)))
        plan = compile_terms(document, contract_id=document.id, system="files")
        periods = [p for p in plan.periods(until=END) if p.start < END]
        queries = [q for period in periods for q in usage_queries(plan, period)]
        usage = aggregate_events(by_customer.get(document.customer, []), queries, system="files")
        meters = {c.id: c.meter for c in document.components if isinstance(c, UsageComponent)}
        for rated in rate_periods(plan, usage, periods=periods):
            number += 1
            period = rated.period
            issued = period.end
            lines = [{
                "id": line.key,
                "kind": LINE_KINDS[line.kind],
                "description": line.name,
                "component": line.component,
                "meter": meters.get(line.component) if line.kind == "usage" else None,
                "quantity": decimal_text(line.quantity),
                "unit_price": None if line.unit_price is None else decimal_text(line.unit_price),
                "amount": decimal_text(to_major(line.amount, rated.currency)),
                "service_start": line.service_start.isoformat(),
                "service_end": (line.service_end - timedelta(days=1)).isoformat(),
                "proration": line.proration is not None,
            } for line in rated.lines]
            out.append({
                "id": f"in_{document.customer}_{period.start:%Y_%m}",
                "number": f"SKY-{number}",
                "customer": document.customer,
                "contract": document.id,
                "currency": rated.currency,
                "status": "open" if period.start.month == 3 and rated.total > 0 else "paid",
                "issued_at": issued.isoformat(),
                "due_at": (issued + timedelta(days=30)).isoformat(),
                "period_start": period.start.isoformat(),
                "period_end": (period.end - timedelta(days=1)).isoformat(),
                "total": decimal_text(to_major(rated.total, rated.currency)),
                "lines": lines,
            })
    return out


# The leaks planted for the reconciliation walkthrough (README: "Planted leaks").
LEAKS = (
    ("in_acme_2026_03", "drop", "usage", "Acme's March API overage was never billed"),
    ("in_hooli_2026_02", "drop", "true_up", "Hooli's February minimum-commitment true-up is missing"),
    ("in_initech_2026_01", "short", "storage", "Initech was billed 4 storage blocks instead of 5 in January"),
    ("in_globex_2026_02", "over", "usage", "Globex was billed 10% too much for February API calls"),
)
UNAPPLIED_PAYMENT = "py_umbrella_2026_02"  # received, but applied to no invoice


def plant_leaks(invoice_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Edit the rated invoices to plant the documented billing mistakes in :data:`LEAKS`.

    Keeping planted leaks in the generator, rather than in hand-edited output, keeps
    ``--check`` meaningful and documents each leak next to the code that makes it.
    """
    by_id = {inv["id"]: inv for inv in invoice_list}
    for invoice_id, how, what, _why in LEAKS:
        inv = by_id[invoice_id]
        if how == "drop":
            inv["lines"] = [ln for ln in inv["lines"] if ln["kind"] != what]
        elif how == "short":
            (line,) = [ln for ln in inv["lines"] if ln["component"] == what]
            line["amount"] = decimal_text(Decimal(line["amount"]) - Decimal("25.00"))
            line["quantity"] = decimal_text(Decimal(line["quantity"]) - 1)
        else:
            (line,) = [ln for ln in inv["lines"] if ln["kind"] == what]
            line["amount"] = decimal_text((Decimal(line["amount"]) * Decimal("1.1")).quantize(Decimal("0.01")))
        inv["total"] = decimal_text(sum((Decimal(ln["amount"]) for ln in inv["lines"]), Decimal(0)))
    return invoice_list


def plant_payment_leaks(payment_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leave :data:`UNAPPLIED_PAYMENT` unapplied: the cash arrived, no invoice was marked paid by it."""
    for pay in payment_list:
        if pay["id"] == UNAPPLIED_PAYMENT:
            pay["applications"] = []
    return payment_list


def payments(invoice_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One payment per paid invoice, except Hooli, who pays January and February by one wire."""
    paid = [inv for inv in invoice_list if inv["status"] == "paid" and Decimal(inv["total"]) > 0]
    out: list[dict[str, Any]] = []
    hooli = [inv for inv in paid if inv["customer"] == "hooli"]
    for inv in paid:
        if inv["customer"] == "hooli":
            continue
        received = date.fromisoformat(inv["issued_at"]) + timedelta(days=12 + len(inv["customer"]))
        out.append({
            "id": f"py_{inv['id'][3:]}", "customer": inv["customer"], "currency": inv["currency"],
            "amount": inv["total"], "received_at": f"{received.isoformat()}T15:30:00Z",
            "method": PAY_METHODS[inv["customer"]], "reference": f"REM-{inv['number']}",
            "applications": [{"invoice": inv["id"], "amount": inv["total"]}],
        })
    if hooli:
        total = sum(Decimal(inv["total"]) for inv in hooli)
        out.append({
            "id": "py_hooli_2026_q1", "customer": "hooli", "currency": "USD", "amount": decimal_text(total),
            "received_at": "2026-03-10T17:05:00Z", "method": "wire", "reference": "FW-HOOLI-0310",
            "applications": [{"invoice": inv["id"], "amount": inv["total"]} for inv in hooli],
        })
    out.sort(key=lambda p: (p["received_at"], p["id"]))
    return out


INVOICE_COLUMNS = [
    "id", "number", "customer", "contract", "currency", "status", "issued_at", "due_at", "period_start",
    "period_end", "total", "line_id", "line_kind", "line_description", "line_component", "line_meter",
    "line_quantity", "line_unit_price", "line_amount", "line_service_start", "line_service_end", "line_proration",
]


def render_invoices_csv(invoice_list: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INVOICE_COLUMNS)
    for inv in invoice_list:
        for i, line in enumerate(inv["lines"]):
            head = [inv[c] for c in INVOICE_COLUMNS[:11]] if i == 0 else [inv["id"]] + [""] * 10
            tail = [line[c[5:]] for c in INVOICE_COLUMNS[11:]]
            writer.writerow(head + ["" if v is None else str(v).lower() if isinstance(v, bool) else v
                                    for v in tail])
    return out.getvalue()


def render_json(items: list[dict[str, Any]]) -> str:
    cleaned = [{k: v for k, v in item.items() if v is not None} for item in items]
    for item in cleaned:
        for line in item.get("lines", []):
            for key in [k for k, v in line.items() if v is None]:
                del line[key]
    return json.dumps(cleaned, indent=2) + "\n"


PAYMENT_COLUMNS = ["id", "customer", "currency", "amount", "received_at", "method", "reference", "invoice",
                   "applied_amount"]


def render_payments_csv(payment_list: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(PAYMENT_COLUMNS)
    for pay in payment_list:
        if not pay["applications"]:
            writer.writerow([*(pay[c] for c in PAYMENT_COLUMNS[:7]), "", ""])
        for i, app in enumerate(pay["applications"]):
            head = [pay[c] for c in PAYMENT_COLUMNS[:7]] if i == 0 else [pay["id"]] + [""] * 6
            writer.writerow([*head, app["invoice"], app["amount"]])
    return out.getvalue()


def build() -> dict[str, str]:
    """Every generated file: relative path -> text."""
    files = {name: render_usage(name, rows) for name, rows in usage_rows().items()}
    # Rate what the connector would load from exactly these files.
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)
        events = load_events(staging)
    invoice_list = plant_leaks(invoices(events))
    files["invoices.csv"] = render_invoices_csv([i for i in invoice_list if i["customer"] not in JSON_INVOICES])
    files["invoices/globex.json"] = render_json([i for i in invoice_list if i["customer"] in JSON_INVOICES])
    files["payments.csv"] = render_payments_csv(plant_payment_leaks(payments(invoice_list)))
    return files


def main(argv: list[str]) -> int:
    files = build()
    if "--check" in argv:
        stale = [name for name, text in files.items()
                 if not (HERE / name).exists() or (HERE / name).read_text() != text]
        if stale:
            print("out of date: " + ", ".join(stale) + " (run examples/generate.py)")
            return 1
        print("examples are up to date")
        return 0
    for name, text in files.items():
        (HERE / name).parent.mkdir(parents=True, exist_ok=True)
        (HERE / name).write_text(text)
        print(f"wrote examples/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
