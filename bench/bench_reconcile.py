"""Benchmark: reconcile 10,000 customers x 12 monthly periods from the store.

Seeds a store (SQLite by default, or PostgreSQL with --postgres URL) with a CRM system
(customers and contracts) and a billing system (customers linked by metadata, usage
events, and one invoice per customer per month, 5% of them short of the overage), then
runs reconciliation and prints the time of each stage: identity resolution, every rule,
and planning. The baseline, measured in the same run, is one plain SQL scan of the
invoice lines (the floor for any reconciliation that reads what was billed).

    .venv/bin/python bench/bench_reconcile.py [--customers 10000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert, text
from sqlmodel import Session, SQLModel

import subledger.core.model as m
from subledger.core.connector import UsageEventIn
from subledger.core.money import to_minor
from subledger.core.store.engine import make_engine
from subledger.core.store.usage import ingest_usage
from subledger.core.terms import load_terms, terms_hash, terms_to_document
from subledger.sync import engine as sync_engine
from subledger.sync.rules.base import Rule, RuleContext
from subledger.sync.rules.builtin import BUILTIN_RULES
from subledger.sync.settings import SyncSettings

YEAR = 2025
TERMS = load_terms({
    "currency": "USD", "start_date": f"{YEAR}-01-01", "end_date": f"{YEAR}-12-31", "billing": {"interval": "month"},
    "components": [
        {"type": "flat_fee", "id": "platform", "amount": "500.00"},
        {"type": "usage", "id": "api", "meter": "api_calls", "allotment": {"quantity": 10000},
         "price": {"model": "graduated", "tiers": [{"up_to": 100000, "unit_price": "0.002"},
                                                   {"up_to": None, "unit_price": "0.001"}]}},
    ],
    "commitments": [{"id": "min", "kind": "minimum", "amount": "600.00", "per": "period"}],
})
DOC, HASH = terms_to_document(TERMS), terms_hash(TERMS)
SETTINGS = SyncSettings(roles={"crm": ["crm"], "billing": ["billing", "metering"]})


def seed(engine, n: int) -> int:  # type: ignore[no-untyped-def]
    """Bulk-insert the company (Core inserts: the ORM would dominate the bench's set-up)."""
    events = 0
    now = datetime.now(UTC)
    prov = {"fetched_at": now, "payload_hash": "seed"}
    with Session(engine) as s, s.begin():
        for name in ("crm", "billing"):
            s.add(m.Connection(name=name, plugin="memory", config={}))
    for start in range(0, n, 1000):
        customers, contracts, invoices, lines, batch = [], [], [], [], []
        for i in range(start, min(n, start + 1000)):
            cid = f"C{i:05d}"
            customers.append({"id": m.record_id("cus", "crm", cid), "system": "crm", "external_id": cid,
                              "name": f"Co {i}", "attributes": {}, **prov})
            customers.append({"id": m.record_id("cus", "billing", f"cus_{i}"), "system": "billing",
                              "external_id": f"cus_{i}", "name": f"Co {i}", "canonical_hint": cid, "attributes": {},
                              **prov})
            for system, ext, cust in (("crm", f"K{i}", cid), ("billing", f"sub_{i}", f"cus_{i}")):
                contracts.append({"id": m.record_id("con", system, ext), "system": system, "external_id": ext,
                                  "customer_external_id": cust, "currency": "USD", "start_date": date(YEAR, 1, 1),
                                  "end_date": date(YEAR, 12, 31), "terms": DOC, "terms_hash": HASH, "name": "",
                                  "status": "active", **prov})
            for month in range(1, 13):
                calls = 10000 + (i * 7919 + month * 104729) % 50000
                at = datetime(YEAR, month, 10, tzinfo=UTC)
                for k, part in enumerate((calls // 3, calls // 3, calls - 2 * (calls // 3))):
                    batch.append(UsageEventIn(f"e{i}-{month}-{k}", f"cus_{i}", "api_calls", Decimal(part),
                                              at + timedelta(hours=k), {}, f"h{i}-{month}-{k}"))
                overage = to_minor((calls - 10000) * Decimal("0.002"), "USD")
                billed = overage if i % 20 else overage // 2  # every 20th customer is short
                true_up = max(0, 60000 - 50000 - overage)
                inv_id = m.record_id("inv", "billing", f"in_{i}_{month}")
                end = date(YEAR + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
                invoices.append({"id": inv_id, "system": "billing", "external_id": f"in_{i}_{month}",
                                 "customer_external_id": f"cus_{i}", "currency": "USD", "status": "paid",
                                 "period_start": date(YEAR, month, 1), "period_end": end, "attributes": {},
                                 "total_minor": 50000 + billed + true_up, "subtotal_minor": 50000 + billed + true_up,
                                 "tax_minor": 0, "amount_paid_minor": 0, "amount_due_minor": 0, **prov})
                for key, kind, amount, meter in (("fee", "recurring", 50000, None), ("api", "usage", billed,
                                                 "api_calls"), ("min", "true_up", true_up, None)):
                    if amount:
                        lines.append({"invoice_id": inv_id, "line_key": key, "kind": kind, "meter": meter,
                                      "amount_minor": amount, "currency": "USD", "description": "",
                                      "service_start": date(YEAR, month, 1), "service_end": end,
                                      "proration": False, "evidence": []})
        with Session(engine) as s, s.begin():
            for table, rows in ((m.Customer, customers), (m.Contract, contracts), (m.Invoice, invoices),
                                (m.InvoiceLine, lines)):
                s.execute(insert(table), rows)
            ingest_usage(s, "billing", batch)
            events += len(batch)
    return events


class Timed(Rule):
    """Wraps a rule to time it."""

    def __init__(self, rule: Rule, times: dict[str, float]) -> None:
        self.rule, self.times, self.name = rule, times, rule.name

    def evaluate(self, ctx: RuleContext) -> Iterable:
        t = time.perf_counter()
        out = list(self.rule.evaluate(ctx))
        self.times[self.name] = time.perf_counter() - t
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--postgres", default=None, help="run on this PostgreSQL URL instead of SQLite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = make_engine(args.postgres)
            with admin.begin() as c:
                c.execute(text(f"CREATE SCHEMA {schema}"))
            engine = make_engine(args.postgres, connect_args={"options": f"-csearch_path={schema}"})
        else:
            engine = make_engine(f"sqlite:///{tmp}/bench.sqlite")
        SQLModel.metadata.create_all(engine)
        t = time.perf_counter()
        events = seed(engine, args.customers)
        print(f"seeded {args.customers:,} customers x 12 months ({events:,} usage events) in "
              f"{time.perf_counter() - t:.1f}s")

        t = time.perf_counter()
        with engine.connect() as c:
            rows = c.execute(text("SELECT invoice_id, amount_minor FROM invoice_line")).fetchall()
        baseline = time.perf_counter() - t

        times: dict[str, float] = {}
        rules = [Timed(r(), times) for r in BUILTIN_RULES]
        original = sync_engine.resolve_identities

        def timed_identity(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = original(*a, **kw)
            times["_identity_resolution"] = time.perf_counter() - t0
            return out

        sync_engine.resolve_identities = timed_identity  # type: ignore[assignment]
        now = datetime(YEAR + 1, 1, 15, tzinfo=UTC)
        t = time.perf_counter()
        report = sync_engine.reconcile(engine, settings=SETTINGS, actor="bench", now=now, rules=rules)
        total = time.perf_counter() - t
        sync_engine.resolve_identities = original  # type: ignore[assignment]

        print(f"\nreconcile {args.customers:,} customers x 12 periods on {engine.dialect.name}: {total:.1f}s")
        print(f"  {'identity resolution':28s} {times.get('_identity_resolution', 0):7.2f}s")
        for name in [r.name for r in rules]:
            print(f"  rule {name:23s} {times.get(name, 0):7.2f}s")
        rest = total - sum(times.values())
        print(f"  {'findings + plan + commit':28s} {rest:7.2f}s")
        opened = {k: v.opened for k, v in report.findings.items() if v.opened}
        print(f"  findings opened: {opened}; actions planned: {report.plan.planned}")
        print(f"  baseline: one SQL scan of {len(rows):,} invoice lines: {baseline:.2f}s")
        if args.postgres:
            engine.dispose()
            with admin.begin() as c:
                c.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
