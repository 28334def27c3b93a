"""Usage ingest stores each event exactly once and keeps exact daily rollups."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.connector import UsageEventIn
from subledger.core.model import UsageEvent, UsageRollup
from subledger.core.store.usage import aggregate_usage, ingest_usage

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ev(
    eid: str, qty: str, at: datetime, customer: str = "acme", meter: str = "api_calls", h: str | None = None
):
    return UsageEventIn(eid, customer, meter, Decimal(qty), at, {"region": "eu"}, h or f"h-{eid}-{qty}")


def agg(session: Session, how: str, start: datetime = T0, end: datetime = T0 + timedelta(days=31), **kw):
    return aggregate_usage(
        session,
        customer_external_id=kw.pop("customer", "acme"),
        meter=kw.pop("meter", "api_calls"),
        start=start,
        end=end,
        aggregation=how,
        **kw,
    )


def test_events_are_stored_exactly_once_with_exact_quantities(engine: Engine) -> None:
    events = [
        ev("e1", "0.1", T0),
        ev("e2", "0.2", T0 + timedelta(hours=1)),
        ev("e3", "1E+3", T0 + timedelta(days=1)),
    ]
    with Session(engine) as s, s.begin():
        first = ingest_usage(s, "files", events)
    with Session(engine) as s, s.begin():
        again = ingest_usage(s, "files", events)
    assert (first.inserted, first.duplicates) == (3, 0)
    assert (again.inserted, again.duplicates, again.conflicts) == (0, 3, [])
    with Session(engine) as s:
        assert len(s.exec(select(UsageEvent)).all()) == 3
        # 0.1 + 0.2 is exactly 0.3 here: never a float.
        assert agg(s, "sum", T0, T0 + timedelta(days=1)) == Decimal("0.3")
        assert agg(s, "sum") == Decimal("1000.3")
        assert agg(s, "count") == 3
        assert agg(s, "max") == Decimal("1000")
        assert agg(s, "latest") == Decimal("1000")


def test_same_id_with_another_payload_is_a_conflict_and_the_stored_event_wins(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        ingest_usage(s, "files", [ev("e1", "5", T0)])
    with Session(engine) as s, s.begin():
        result = ingest_usage(s, "files", [ev("e1", "7", T0), ev("e2", "1", T0)])
    assert result.inserted == 1
    assert [c.event_id for c in result.conflicts] == ["e1"]
    with Session(engine) as s:
        assert agg(s, "sum") == Decimal("6")


def test_conflict_within_one_batch_keeps_the_first(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        result = ingest_usage(s, "files", [ev("e1", "5", T0), ev("e1", "9", T0), ev("e1", "5", T0)])
    assert (result.inserted, result.duplicates, len(result.conflicts)) == (1, 1, 1)


def test_same_event_id_from_two_systems_is_two_events(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        ingest_usage(s, "files", [ev("e1", "5", T0)])
        ingest_usage(s, "stripe", [ev("e1", "5", T0)])
    with Session(engine) as s:
        assert agg(s, "sum") == 10
        assert agg(s, "sum", system="stripe") == 5


def test_partial_days_are_read_from_raw_events(engine: Engine) -> None:
    events = [ev(f"e{h}", "1", T0 + timedelta(hours=h)) for h in range(48)]
    with Session(engine) as s, s.begin():
        ingest_usage(s, "files", events)
    with Session(engine) as s:
        # 06:00 on day one up to 18:00 on day two: 18 + 18 hours of one unit each.
        assert agg(s, "sum", T0 + timedelta(hours=6), T0 + timedelta(hours=42)) == 36
        assert agg(s, "count", T0 + timedelta(hours=6), T0 + timedelta(hours=7)) == 1
        assert agg(s, "sum", T0 + timedelta(hours=7), T0 + timedelta(hours=7)) == 0


def test_unique_count_counts_distinct_property_values(engine: Engine) -> None:
    events = [
        UsageEventIn(f"e{i}", "acme", "seats", Decimal(1), T0 + timedelta(hours=i), {"user": u}, f"h{i}")
        for i, u in enumerate(["ann", "bob", "ann", "cy"])
    ]
    with Session(engine) as s, s.begin():
        ingest_usage(s, "files", events)
    with Session(engine) as s:
        assert agg(s, "unique_count", meter="seats", unique_property="user") == 3


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    import pytest

    from subledger.core.errors import ConfigError

    with Session(engine) as s, pytest.raises(ConfigError, match="no timezone"):
        agg(s, "sum", datetime(2026, 3, 1), datetime(2026, 4, 1))


quantities = st.decimals(min_value=0, max_value=10**6, places=4, allow_nan=False, allow_infinity=False)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.lists(st.tuples(quantities, st.integers(0, 24 * 60 * 5)), min_size=1, max_size=40),
    seed=st.integers(0, 10**6),
)
def test_shuffled_duplicated_stream_gives_the_same_rollups(engine: Engine, data, seed: int) -> None:
    """Ingesting a shuffled stream with repeats, in any batches, equals ingesting it once."""
    events = [ev(f"p{i}", str(q), T0 + timedelta(minutes=m), h=f"h{i}") for i, (q, m) in enumerate(data)]
    rnd = random.Random(seed)
    noisy = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(noisy)
    with Session(engine) as s, s.begin():
        s.exec(UsageRollup.__table__.delete())  # type: ignore[call-overload]
        s.exec(UsageEvent.__table__.delete())  # type: ignore[call-overload]
    cut = rnd.randint(0, len(noisy))
    for part in (noisy[:cut], noisy[cut:]):
        with Session(engine) as s, s.begin():
            ingest_usage(s, "files", part)
    with Session(engine) as s:
        rollups = {
            (r.day, r.quantity_sum, r.event_count, r.quantity_max, r.latest_quantity)
            for r in s.exec(select(UsageRollup)).all()
        }
        expected_total = sum((e.quantity for e in events), Decimal(0))
        assert agg(s, "sum", T0, T0 + timedelta(days=10)) == expected_total
        assert agg(s, "count", T0, T0 + timedelta(days=10)) == len(events)
        assert agg(s, "max", T0, T0 + timedelta(days=10)) == max(e.quantity for e in events)
        latest = max(events, key=lambda e: (e.occurred_at, e.quantity))
        assert agg(s, "latest", T0, T0 + timedelta(days=10)) == latest.quantity
    assert sum(r[2] for r in rollups) == len(events)
