"""Benchmark: rate 10,000 contracts x 12 monthly periods on one core.

Each contract has a flat fee, a graduated component (4 tiers), a volume component, a
package component, a minimum commitment and a prepaid credit grant. The figure is
component-periods per second, counting the four priced components of each period
(commitment and credits are worked out too, but not counted). Target: >= 100,000/s.

The baseline, measured in the same run on the same inputs, is a straight-line Decimal
loop doing the same arithmetic with none of the engine's structure (no lines, evidence,
state objects or credit ledger). The ratio says what the explained, traceable result costs.

    .venv/bin/python bench/bench_rating.py [--contracts 10000] [--periods 12]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, localcontext

from subledger.core.money import DECIMAL_CONTEXT
from subledger.core.rating import compile_terms, rate_periods, usage_queries
from subledger.core.rating.usage import UsageAggregate
from subledger.core.terms import load_terms

PRICED_COMPONENTS = 4

GRADUATED = [("1000", "0.10", "0"), ("10000", "0.05", "0"), ("100000", "0.01", "0"), (None, "0.005", "0")]
VOLUME = [("10000", "0.0010", "10"), ("50000", "0.0008", "10"), (None, "0.0006", "10")]


def contract_terms(i: int) -> dict:
    return {
        "currency": "USD",
        "start_date": "2026-01-01",
        "end_date": "2026-12-31",
        "components": [
            {"type": "flat_fee", "id": "platform", "amount": f"{50 + i % 50}.00"},
            {"type": "usage", "id": "api", "meter": "api_calls", "price": {
                "model": "graduated",
                "tiers": [{"up_to": u, "unit_price": p, "flat_fee": f} for u, p, f in GRADUATED]}},
            {"type": "usage", "id": "events", "meter": "events", "price": {
                "model": "volume",
                "tiers": [{"up_to": u, "unit_price": p, "flat_fee": f} for u, p, f in VOLUME]}},
            {"type": "usage", "id": "storage", "meter": "storage_gb", "price": {
                "model": "package", "package_size": "100", "package_price": "5", "rounding": "up"}},
        ],
        "commitments": [{"id": "minimum", "kind": "minimum", "amount": "500.00"}],
        "credits": [{"id": "prepaid", "amount": "1000.00", "expires": "2027-01-01"}],
    }


def build(contracts: int, periods: int, seed: int = 7) -> list:
    """Compile every contract and build its usage answers (not timed)."""
    rng = random.Random(seed)
    work = []
    for i in range(contracts):
        terms = load_terms(contract_terms(i))
        plan = compile_terms(terms, contract_id=f"c{i}")
        usage = {}
        raw = []
        for period in plan.periods()[:periods]:
            quantities = (
                Decimal(rng.randrange(0, 200_000)),
                Decimal(rng.randrange(0, 120_000)),
                Decimal(rng.randrange(0, 5_000)) / 10,
            )
            raw.append(quantities)
            for query, quantity in zip(usage_queries(plan, period), quantities, strict=True):
                usage[query] = (UsageAggregate(quantity),)
        work.append((plan, usage, plan.periods()[:periods], raw))
    return work


def engine(work: list) -> int:
    total = 0
    for plan, usage, periods, _raw in work:
        for rated in rate_periods(plan, usage, periods=periods):
            total += rated.total
    return total


def baseline(work: list) -> int:
    """The same arithmetic as plain Decimal statements."""
    q1 = Decimal(1)
    cents = Decimal(100)
    grad = [(None if u is None else Decimal(u), Decimal(p)) for u, p, _f in GRADUATED]
    vol = [(None if u is None else Decimal(u), Decimal(p), Decimal(f)) for u, p, f in VOLUME]
    total = 0
    with localcontext(DECIMAL_CONTEXT):
        for plan, _usage, _periods, raw in work:
            fee = plan.fees[0].amount
            credit = 100_000
            for api, events, storage in raw:
                lines = [int((fee * cents).quantize(q1, ROUND_HALF_UP))]
                amount, below = Decimal(0), Decimal(0)
                for up, price in grad:
                    top = api if up is None or api < up else up
                    amount += (top - below) * price
                    if up is None or api <= up:
                        break
                    below = up
                lines.append(int((amount * cents).quantize(q1, ROUND_HALF_UP)))
                for up, price, flat in vol:
                    if up is None or events <= up:
                        lines.append(int(((events * price + flat) * cents).quantize(q1, ROUND_HALF_UP)))
                        break
                blocks, rest = divmod(storage, Decimal(100))
                lines.append(int(((blocks + (1 if rest else 0)) * 5 * cents).quantize(q1, ROUND_HALF_UP)))
                spend = sum(lines)
                if spend < 50_000:
                    lines.append(50_000 - spend)
                due = sum(lines)
                take = min(credit, due)
                credit -= take
                total += due - take
    return total


def best_of(repeat: int, run: Callable[[list], int], work: list) -> tuple[float, int]:
    """The fastest of ``repeat`` runs (the others measure the machine's noise), and the result."""
    best, result = float("inf"), 0
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        result = run(work)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contracts", type=int, default=10_000)
    parser.add_argument("--periods", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (timeit's convention)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    work = build(args.contracts, args.periods)
    setup = time.perf_counter() - t0
    component_periods = args.contracts * args.periods * PRICED_COMPONENTS

    engine_s, engine_total = best_of(args.repeat, engine, work)
    baseline_s, baseline_total = best_of(args.repeat, baseline, work)

    rate = component_periods / engine_s
    base_rate = component_periods / baseline_s
    print(f"contracts x periods        {args.contracts:,} x {args.periods} "
          f"({component_periods:,} component-periods; setup {setup:.1f}s, not timed; best of {args.repeat})")
    print(f"engine                     {engine_s:8.2f} s  {rate:12,.0f} component-periods/s")
    print(f"baseline (plain Decimal)   {baseline_s:8.2f} s  {base_rate:12,.0f} component-periods/s")
    print(f"engine / baseline          {rate / base_rate:8.2f}")
    print(f"target 100,000/s           {'met' if rate >= 100_000 else 'NOT met'}")
    print(f"totals agree               {engine_total == baseline_total} "
          f"(engine {engine_total:,} / baseline {baseline_total:,} minor units)")


if __name__ == "__main__":
    main()
