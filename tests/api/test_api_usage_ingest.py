"""POST /v1/usage/events: per-event results, exactly once, rollups updated, never all-or-nothing."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from api_support import auth
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.api.ingest import earliest_open, ingest_batch
from subledger.core.model import UsageEvent, UsageRollup

NOW = datetime.now(UTC)


def ev(i: int | str, qty: object = "1.5", at: datetime | None = None, **extra: object) -> dict:
    return {"id": f"e{i}", "customer": "acme", "meter": "api_calls", "quantity": qty,
            "timestamp": (at or NOW - timedelta(minutes=1)).isoformat(), **extra}


def rollup(engine: Engine) -> list[tuple]:
    with Session(engine) as s:
        return sorted((r.customer_external_id, r.meter, r.day, r.quantity_sum, r.event_count)
                      for r in s.exec(select(UsageRollup)).all())


def test_a_batch_is_stored_once_and_rolled_up(client: TestClient, keys: dict, engine: Engine, known: None) -> None:
    body = {"events": [ev(1, "1.5"), ev(2, 2), ev(3, "0.25")]}
    r = client.post("/v1/usage/events", json=body, headers=auth(keys["ingest"]))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3 and r.json()["duplicates"] == 0
    assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 3
    # 1.5 + 2 + 0.25 = 3.75, exactly
    assert [(row[3], row[4]) for row in rollup(engine)] == [(Decimal("3.75"), 3)]
    again = client.post("/v1/usage/events", json=body, headers=auth(keys["ingest"])).json()
    assert again["duplicates"] == 3 and again["accepted"] == 0
    assert [(row[3], row[4]) for row in rollup(engine)] == [(Decimal("3.75"), 3)]


def test_bad_events_are_rejected_one_by_one_and_the_rest_load(client: TestClient, keys: dict, engine: Engine,
                                                                known: None) -> None:
    events = [
        ev(1),
        {"id": "e2", "customer": "acme", "meter": "api_calls", "timestamp": NOW.isoformat()},  # no quantity
        ev(3, qty="lots"),
        ev(4, at=NOW - timedelta(days=70)),
        ev(5, at=NOW + timedelta(minutes=10)),
        {**ev(6), "timestamp": "2026-03-01T12:00:00"},  # no timezone
        {**ev(7), "colour": "blue"},
        "not an object",
        ev(1, qty="99"),  # same id, other payload
        ev(1),  # same id, same payload
    ]
    r = client.post("/v1/usage/events", json={"events": events}, headers=auth(keys["ingest"]))
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["accepted"] + ["rejected"] * 8 + ["duplicate"]
    assert [(x.get("code"), x.get("field")) for x in res[1:9]] == [
        ("invalid", "quantity"), ("invalid", "quantity"), ("too_old", "timestamp"), ("too_new", "timestamp"),
        ("invalid", "timestamp"), ("invalid", "colour"), ("invalid", None), ("conflict", "id"),
    ]
    assert "no timezone" in res[5]["reason"]
    with Session(engine) as s:
        assert [e.event_id for e in s.exec(select(UsageEvent)).all()] == ["e1"]


def test_a_stored_id_sent_with_another_payload_is_a_conflict(client: TestClient, keys: dict, engine: Engine,
                                                              known: None) -> None:
    client.post("/v1/usage/events", json={"events": [ev(1, "5")]}, headers=auth(keys["ingest"]))
    r = client.post("/v1/usage/events", json={"events": [ev(1, "6"), ev(2, "1")]}, headers=auth(keys["ingest"]))
    res = r.json()["results"]
    assert res[0]["status"] == "rejected" and res[0]["code"] == "conflict" and "new id" in res[0]["fix"]
    assert res[1]["status"] == "accepted"
    with Session(engine) as s:
        assert s.exec(select(UsageEvent.quantity).where(UsageEvent.event_id == "e1")).one() == Decimal("5")


def test_equal_payloads_spelled_differently_are_duplicates(client: TestClient, keys: dict, known: None) -> None:
    at = NOW - timedelta(minutes=2)
    first = ev(1, "12.50", at)
    same = {**ev(1, 12.5, None), "timestamp": at.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    client.post("/v1/usage/events", json={"events": [first]}, headers=auth(keys["ingest"]))
    r = client.post("/v1/usage/events", json={"events": [same]}, headers=auth(keys["ingest"]))
    assert r.json()["results"][0]["status"] == "duplicate"


def test_oversize_batches_and_malformed_bodies(client: TestClient, keys: dict) -> None:
    h = auth(keys["ingest"])
    r = client.post("/v1/usage/events", json={"events": [ev(i) for i in range(1001)]}, headers=h)
    assert r.status_code == 413
    assert r.json()["error"] == {"code": "batch_too_large", "message": "1001 events in one batch; send at most 1000",
                                 "field": "events"}
    r = client.post("/v1/usage/events", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = client.post("/v1/usage/events", json=[ev(1)], headers=h)
    assert r.status_code == 400 and r.json()["error"]["field"] == "events"
    r = client.post("/v1/usage/events", content=b"a=b", headers={**h, "Content-Type": "text/plain"})
    assert r.status_code == 415


def test_ingest_needs_the_ingest_scope(client: TestClient, keys: dict, known: None) -> None:
    body = {"events": [ev(1)]}
    assert client.post("/v1/usage/events", json=body).status_code == 401
    r = client.post("/v1/usage/events", json=body, headers=auth(keys["read"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.post("/v1/usage/events", json=body, headers=auth(keys["admin"])).status_code == 200
    bad = client.post("/v1/usage/events", json=body, headers=auth(keys["ingest"] + "x"))
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"


def test_the_oldest_open_instant_follows_the_grace_window() -> None:
    # On 2026-04-02 with 3 days' grace, March is still open; on 2026-04-04 it is not.
    assert earliest_open(datetime(2026, 4, 2, 12, tzinfo=UTC), 3, None) == datetime(2026, 3, 1, tzinfo=UTC)
    assert earliest_open(datetime(2026, 4, 4, 0, tzinfo=UTC), 3, None) == datetime(2026, 4, 1, tzinfo=UTC)
    # A closed accounting period is never open, grace or not.
    assert earliest_open(datetime(2026, 4, 2, tzinfo=UTC), 3, "2026-03") == datetime(2026, 4, 1, tzinfo=UTC)
    assert earliest_open(datetime(2026, 1, 2, tzinfo=UTC), 3, None) == datetime(2025, 12, 1, tzinfo=UTC)


event_strategy = st.tuples(
    st.integers(0, 30),  # id
    st.sampled_from(["acme", "globex"]),
    st.sampled_from(["api_calls", "storage"]),
    st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False),
    st.integers(0, 3 * 24 * 60),  # minutes ago
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.lists(event_strategy, max_size=40), seed=st.integers(0, 1000))
def test_a_shuffled_duplicated_stream_rolls_up_like_the_stream_once(engine: Engine, known: None, raw: list,
                                                                   seed: int) -> None:
    now = datetime(2026, 5, 20, 12, tzinfo=UTC)
    by_id = {}
    for i, cust, meter, qty, ago in raw:
        by_id.setdefault(i, {"id": f"h{i}", "customer": cust, "meter": meter, "quantity": str(qty),
                             "timestamp": (now - timedelta(minutes=ago)).isoformat()})
    once = list(by_id.values())
    rng = random.Random(seed)
    noisy = once + [dict(e) for e in once if rng.random() < 0.5]
    rng.shuffle(noisy)
    expected: dict[tuple, Decimal] = {}
    for e in once:
        day = datetime.fromisoformat(e["timestamp"]).date()
        key = (e["customer"], e["meter"], day)
        expected[key] = expected.get(key, Decimal(0)) + Decimal(e["quantity"])
    source = f"prop_{uuid.uuid4().hex}"  # a fresh source per example: the engine outlives examples
    for i in range(0, len(noisy), 7):
        ingest_batch(engine, source, noisy[i : i + 7], now=now)
    with Session(engine) as s:
        got = {(r.customer_external_id, r.meter, r.day): r.quantity_sum
               for r in s.exec(select(UsageRollup).where(UsageRollup.system == source)).all()}
    assert got == expected
