"""Benchmark: revenue recognition of a book of hybrid contracts (pure engine, no I/O).

Each contract has an annual platform fee billed up front (ratable by day) and twelve
monthly usage obligations with daily usage (as incurred, invoiced the next month). The
run builds the whole journal for the year and plans it against an empty journal, then
re-plans it against itself (the idempotent re-run). The baseline, measured in the same
run, only walks the same usage data once, so the ratio shows what recognition adds.

    .venv/bin/python bench/bench_revrec.py [contracts]
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from subledger.core.revrec.amortization import ServicePeriod
from subledger.core.revrec.curves import Ratable
from subledger.core.revrec.journal import build_entries
from subledger.core.revrec.obligation import Billing, LineKind, Obligation, Recognition, Treatment
from subledger.core.revrec.posting import PostedEntry, plan_postings
from subledger.core.revrec.usage import per_unit


def book(contracts: int) -> tuple[list[Obligation], list[list[tuple[date, int]]]]:
    obligations, usage_sets = [], []
    year = ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 12, 31))
    for c in range(contracts):
        obligations.append(Obligation(
            key=f"c{c}:fee", currency="USD", treatment=Treatment.RATABLE, product="platform",
            recognitions=(Recognition(LineKind.REVENUE, Ratable(1200000 + c, year)),),
            billings=(Billing(datetime(2026, 1, 1, tzinfo=UTC), 1200000 + c, f"invoice:b:{c}-fee"),),
            contract_id=f"c{c}",
        ))
        for m in range(1, 13):
            first = date(2026, m, 1)
            days = [(first + timedelta(days=d), 100 + (c * 7 + d) % 50) for d in range(28)]
            usage_sets.append(days)
            curve = per_unit(days, Decimal("0.013"), "USD")
            billed_at = datetime(2026 + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
            amount = round(sum(q for _, q in days) * Decimal("1.3"))
            obligations.append(Obligation(
                key=f"c{c}:usage:{m}", currency="USD", treatment=Treatment.USAGE, product="api_calls",
                recognitions=(Recognition(LineKind.REVENUE, curve),),
                billings=(Billing(billed_at, int(amount), f"invoice:b:{c}-{m}"),), contract_id=f"c{c}",
            ))
    return obligations, usage_sets


def main() -> None:
    contracts = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    obligations, usage_sets = book(contracts)

    t0 = time.perf_counter()
    total = 0
    for days in usage_sets:
        total += sum(q for _, q in days)
    baseline = time.perf_counter() - t0

    t0 = time.perf_counter()
    entries = build_entries(obligations, through=date(2026, 12, 31))
    built = time.perf_counter() - t0

    t0 = time.perf_counter()
    plan = plan_postings(entries, [], through=date(2026, 12, 31), closed_through=None)
    planned = time.perf_counter() - t0
    posted = [PostedEntry(
        id=p.external_id, external_id=p.external_id, key=p.draft.key, kind=p.draft.kind,
        content_hash=p.draft.content_hash(), entry_date=p.entry_date, period=p.period, currency=p.draft.currency,
        reverses_entry_id=None, lines=p.draft.lines,
    ) for p in plan]
    t0 = time.perf_counter()
    again = plan_postings(entries, posted, through=date(2026, 12, 31), closed_through=None)
    replanned = time.perf_counter() - t0
    assert again == []

    lines = sum(len(e.lines) for e in entries)
    print(f"contracts: {contracts:,}  obligations: {len(obligations):,}  entries: {len(entries):,}  lines: {lines:,}")
    print(f"baseline (walk the usage once):      {baseline:8.3f} s")
    print(f"build journal for the year:          {built:8.3f} s  "
          f"({len(obligations) / built:,.0f} obligations/s, {built / baseline:,.0f}x baseline)")
    print(f"plan first posting:                  {planned:8.3f} s  ({len(plan) / planned:,.0f} entries/s)")
    print(f"re-plan (idempotent re-run, 0 new):  {replanned:8.3f} s  ({len(entries) / replanned:,.0f} entries/s)")


if __name__ == "__main__":
    main()
