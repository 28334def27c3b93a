"""The store's own guards: usage ingest never takes an unbounded event, and any reject can be saved.

Defence in depth behind the readers (docs/formats.md#bounds): an event a connector let
through with a quantity of 1e999999, a NUL character or a date in year 9999 is refused by
``ingest_usage`` with a clear error naming it, before anything is written; and a reject
holding NUL characters, bytes that were not UTF-8 or a 300-character field name is saved
on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from subledger.core.connector import Rejected, UsageEventIn
from subledger.core.model import Reject, UsageEvent
from subledger.core.store.records import clean_text, save_rejects
from subledger.core.store.usage import UsageOutOfBounds, check_event, ingest_usage

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ev(event_id: str = "e1", quantity: Decimal | int | str = Decimal(1), **changes: object) -> UsageEventIn:
    values: dict[str, object] = {
        "event_id": event_id, "customer_external_id": "acme", "meter": "api_calls",
        "quantity": Decimal(quantity) if isinstance(quantity, str | int) else quantity,
        "occurred_at": T0, "properties": {}, "payload_hash": f"h-{event_id}",
    }
    values.update(changes)
    return UsageEventIn(**values)  # type: ignore[arg-type]


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


BAD = [
    ("quantity", ev("q1", "1e999999")),
    ("quantity", ev("q2", "1e30")),
    ("quantity", ev("q3", "1e-31")),
    ("quantity", ev("q4", "1234567890123456789012345678901")),
    ("quantity", ev("q5", Decimal("NaN"))),
    ("quantity", ev("q6", quantity=1.5)),
    ("event_id", ev("e\x00")),
    ("event_id", ev("x" * 256)),
    ("customer_external_id", ev("c1", customer_external_id="a\x00")),
    ("meter", ev("m1", meter="m" * 129)),
    ("occurred_at", ev("t1", occurred_at=datetime(9999, 12, 31, tzinfo=UTC))),
    ("occurred_at", ev("t2", occurred_at=datetime(1999, 12, 31, tzinfo=UTC))),
    ("occurred_at", ev("t3", occurred_at=datetime(2026, 3, 1))),
    ("properties.k", ev("p1", properties={"k": "v\x00"})),
    ("properties", ev("p2", properties=nested(100))),
]


@pytest.mark.parametrize(("field", "event"), BAD, ids=[e.event_id[:8] for _, e in BAD])
def test_ingest_refuses_an_unbounded_event_and_stores_nothing_of_the_batch(
        engine: Engine, field: str, event: UsageEventIn) -> None:
    problem = check_event(event)
    assert problem is not None and problem.field == field
    with Session(engine) as session, session.begin(), pytest.raises(UsageOutOfBounds) as err:
        ingest_usage(session, "files", [ev("fine"), event])
    assert [r.field for r in err.value.events] == [field]
    assert err.value.fix and "\x00" not in err.value.message
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(UsageEvent)).one() == 0


def test_ingest_names_every_refused_event_and_takes_the_rest_on_retry(engine: Engine) -> None:
    events = [ev("ok-1"), ev("bad-1", "1e999999"), ev("ok-2", "999999999999999999999999999999"),
              ev("bad-2", properties={"\x00": 1})]
    with Session(engine) as session, session.begin(), pytest.raises(UsageOutOfBounds) as err:
        ingest_usage(session, "files", events)
    refused = {r.event_id for r in err.value.events}
    assert refused == {"bad-1", "bad-2"} and "1 more" in err.value.message
    with Session(engine) as session, session.begin():
        result = ingest_usage(session, "files", [e for e in events if e.event_id not in refused])
    assert result.inserted == 2


def test_bounded_events_at_the_edges_are_stored_exactly(engine: Engine) -> None:
    edge = [ev("max", "999999999999999999999999999999"), ev("min", "-999999999999999999999999999999"),
            ev("fine", "0.000000000000000000000000000001"), ev("zero", "0E-50"),
            ev("first", occurred_at=datetime(2000, 1, 1, tzinfo=UTC)),
            ev("last", occurred_at=datetime(2100, 12, 31, 18, 59, tzinfo=timezone(timedelta(hours=-5)))),
            ev("deep", properties=nested(60))]
    with Session(engine) as session, session.begin():
        assert ingest_usage(session, "files", edge).inserted == len(edge)
    with Session(engine) as session:
        stored = dict(session.exec(select(UsageEvent.event_id, UsageEvent.quantity)).all())
    assert stored["max"] == Decimal("999999999999999999999999999999")
    assert stored["fine"] == Decimal("1E-30")


def test_any_reject_can_be_saved(engine: Engine) -> None:
    rejects = [
        Rejected(stream="usage_events", reason="bad \x00 reason", fix="fix \x00", location="u\x00.jsonl", line=2,
                 field="f" * 300, raw="raw \x00 \udcff bytes"),
        Rejected(stream="customers", reason="r" * 5000, fix="x", location="l" * 2000, line=3, field="\x00" * 10,
                 raw="y" * 50_000),
    ]
    with Session(engine) as session, session.begin():
        assert save_rejects(session, "files", rejects) == 2
    with Session(engine) as session:
        stored = session.exec(select(Reject).order_by(Reject.line)).all()
    assert len(stored[0].field) == 255 and stored[0].field.endswith("...")
    assert stored[0].reason == "bad \\0 reason" and "\ufffd" in stored[0].raw
    assert len(stored[1].reason) == 2048 and len(stored[1].location) == 1024 and len(stored[1].raw) == 10_000
    with Session(engine) as session, session.begin():  # seen again: bumped, not added
        assert save_rejects(session, "files", rejects) == 0


def test_the_same_reject_twice_in_one_batch_is_two_rejects_once_each(engine: Engine) -> None:
    twice = [Rejected(stream="usage_events", reason="usage event 'e1' was already loaded with a different payload",
                      fix="use a new id", field="event_id", raw="e1")] * 2
    with Session(engine) as session, session.begin():
        assert save_rejects(session, "files", twice) == 2
    with Session(engine) as session, session.begin():
        assert save_rejects(session, "files", twice) == 0
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Reject)).one() == 2


def test_clean_text_keeps_clean_text_as_it_is() -> None:
    assert clean_text("naïve — ok", 255) == "naïve — ok"
    assert clean_text("a\x00b", 255) == "a\\0b"
    assert clean_text("\udcff", 255) == "\ufffd"
    assert clean_text("x" * 10, 5) == "xx..."
