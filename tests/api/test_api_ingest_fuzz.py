"""Fuzzing API ingest bodies (bounded): no 5xx, and every event is accounted for.

Batches mix plausible events with hostile ones (huge and over-precise numbers written as
raw JSON literals, NUL bytes, unpaired surrogates, over-long and unknown fields, deep
properties, unknown customers and meters, repeated ids with other content) and arbitrary
JSON. Every answer must be 200 with one result per event, ``accepted + duplicates +
rejected`` equal to the events sent, a code, reason and fix on every rejection, and every
accepted event in the store. Arbitrary bytes as a body get a 4xx, never a 5xx.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from api_support import auth
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.api.routes.usage import REJECT_CODES
from subledger.core.model import UsageEvent

CODES = set(get_args(REJECT_CODES))
NOW = datetime.now(UTC)


class Raw:
    """A JSON literal written into the body as is (1e999999, 5,000 digits...)."""

    def __init__(self, text: str) -> None:
        self.text = text


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value)


hostile_text = st.sampled_from(["", " ", "a\x00b", "\ud800", "x" * 300, "\x07", "é", "🙂", "null"])
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=20), hostile_text,
                      st.floats(allow_nan=False, allow_infinity=False))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8) | hostile_text, inner, max_size=3), max_leaves=12)
raw_numbers = st.sampled_from(["1e999999", "-1e999999", "1e-999999", "9" * 5000, "0." + "1" * 5000, "-0", "1E+29",
                               "1e30", "0.000000000000000000000000000001", "123456789012345678901234567890",
                               "1.5", "-2", "0"]).map(Raw)
quantities = st.one_of(
    st.decimals(min_value=-5, max_value=10**6, places=4, allow_nan=False).map(str), st.integers(-5, 10**9),
    raw_numbers, json_leaf, st.sampled_from(["1e999999", "NaN", "Infinity", " 12.5 ", "1_000", "0x10"]),
)
timestamps = st.one_of(
    st.integers(-3 * 24 * 60, 10).map(lambda m: (NOW + timedelta(minutes=m)).isoformat()),
    st.integers(-10**6, 10**12), st.sampled_from(["1999-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                                                  "9999-12-31T23:59:59Z", "2026-03-01T12:00:00", "yesterday"]),
    raw_numbers, json_leaf,
)
events = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 15).map(lambda i: f"fz{i}"), hostile_text, json_leaf)},
    optional={
        "customer": st.one_of(st.sampled_from(["acme", "globex", "initech"]), hostile_text, json_leaf),
        "customer_external_id": st.sampled_from(["acme", "hooli"]),
        "meter": st.one_of(st.sampled_from(["api_calls", "storage", "tokens"]), hostile_text, json_leaf),
        "quantity": quantities,
        "timestamp": timestamps,
        "properties": st.one_of(st.dictionaries(st.text(max_size=8), json_value, max_size=4), json_value),
        "colour": json_leaf,
    },
)
batches = st.lists(st.one_of(events, events, events, json_value), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=batches)
def test_every_event_is_accounted_for(client: TestClient, keys: dict, engine: Engine, known: None,
                                      batch: list) -> None:
    body = ('{"events": ' + dump(batch) + "}").encode("utf-8", "surrogatepass")
    r = client.post("/v1/usage/events", content=body,
                    headers={**auth(keys["ingest"]), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    answer = r.json()
    results = answer["results"]
    assert [x["index"] for x in results] == list(range(len(batch)))
    assert answer["accepted"] + answer["duplicates"] + answer["rejected"] == len(batch)
    for x in results:
        assert x["status"] in ("accepted", "duplicate", "rejected")
        if x["status"] == "rejected":
            assert x["code"] in CODES and x["reason"] and x["fix"], x
    accepted = {x["id"] for x in results if x["status"] == "accepted"}
    with Session(engine) as s:
        found = set(s.exec(select(UsageEvent.event_id).where(UsageEvent.event_id.in_(accepted))).all())
    assert found == accepted


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.one_of(st.binary(max_size=200), json_value.map(lambda v: dump(v).encode("utf-8", "surrogatepass")),
                      st.dictionaries(st.sampled_from(["events", "extra"]), json_value, max_size=2)
                      .map(lambda v: dump(v).encode("utf-8", "surrogatepass"))))
def test_any_body_gets_an_answer_never_a_server_error(client: TestClient, keys: dict, body: bytes) -> None:
    r = client.post("/v1/usage/events", content=body,
                    headers={**auth(keys["ingest"]), "Content-Type": "application/json"})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["error"]["code"] in ("invalid_json", "bad_request")
