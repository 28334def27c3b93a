"""The in-memory rollup index answers day-aligned questions exactly as the store does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.connector import UsageEventIn
from subledger.core.rating import UsageQuery
from subledger.core.store.rating_inputs import RollupIndex, indexed_usage, store_usage
from subledger.core.store.usage import ingest_usage

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_index_and_store_agree(engine: Engine) -> None:
    rnd = random.Random(7)
    events = [
        UsageEventIn(
            f"e{i}",
            rnd.choice(["a", "b"]),
            rnd.choice(["calls", "gb"]),
            Decimal(rnd.randint(0, 999)) / 10,
            T0 + timedelta(minutes=rnd.randint(0, 60 * 24 * 90)),
            {},
            f"h{i}",
        )
        for i in range(500)
    ]
    with Session(engine) as s, s.begin():
        ingest_usage(s, "files", events)
    queries = [
        UsageQuery(meter, how, T0 + timedelta(days=d), T0 + timedelta(days=d + n))
        for meter in ("calls", "gb", "none")
        for how in ("sum", "count", "max", "latest")
        for d, n in ((0, 31), (10, 1), (45, 40), (200, 5))
    ]
    partial = UsageQuery("calls", "sum", T0 + timedelta(hours=5), T0 + timedelta(days=3, hours=2))
    with Session(engine) as s:
        index = RollupIndex(s, "files")
        assert index.answer("a", partial) is None  # partial days go to the store
        for customer in ("a", "b"):
            fast = indexed_usage(s, index, customer, [*queries, partial])
            slow = store_usage(s, customer, [*queries, partial], "files")
            assert {q: a[0].quantity for q, a in fast.items()} == {q: a[0].quantity for q, a in slow.items()}
