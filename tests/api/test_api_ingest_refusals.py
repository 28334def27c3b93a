"""Ingest refuses what it cannot trust, per event, with a code, the field, the reason and the fix.

Every case of issue 15 (item 4, and item 12 for API ingest) is here: negative quantities on
meters without corrections, huge and over-precise quantities in every spelling (refused
from their exponent, not by expanding them), timestamps out of range, NUL bytes, unpaired
surrogates and over-long fields, oversized properties and bodies. Then the rule that says
which customers and meters are known, and whether standing counts what was accepted.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from api_support import auth, make_known
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from subledger.api import create_app
from subledger.api.known import Catalog
from subledger.api.settings import ServiceSettings
from subledger.core.model import Connection, Contract, ExternalRef, Meter, UsageEvent, record_id
from subledger.sync.settings import SyncSettings

NOW = datetime.now(UTC) - timedelta(minutes=1)
STAMP = NOW.isoformat()


def event_text(i: int, *, quantity: str = '"1"', timestamp: str | None = None, **fields: str) -> str:
    """One event as JSON text, so literals (1e999999, 5,000 digits) reach the parser as written."""
    parts = {"id": json.dumps(f"r{i}"), "customer": '"acme"', "meter": '"api_calls"', "quantity": quantity,
             "timestamp": timestamp or json.dumps(STAMP), **fields}
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in parts.items()) + "}"


def post_raw(client: TestClient, token: str, events: list[str]) -> dict:
    body = ('{"events": [' + ", ".join(events) + "]}").encode()
    r = client.post("/v1/usage/events", content=body,
                    headers={**auth(token), "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    return r.json()


# (what, event JSON, code, field)
CASES = [
    ("negative quantity", event_text(1, quantity="-3"), "negative_quantity", "quantity"),
    ("negative quantity as text", event_text(2, quantity='"-0.5"'), "negative_quantity", "quantity"),
    ("1e999999 as a JSON number", event_text(3, quantity="1e999999"), "out_of_range", "quantity"),
    ("1e99999999999 as text", event_text(4, quantity='"1e99999999999"'), "out_of_range", "quantity"),
    ("1e30, too large", event_text(5, quantity='"1e30"'), "out_of_range", "quantity"),
    ("a digit below 10^-30", event_text(6, quantity='"1e-31"'), "out_of_range", "quantity"),
    ("31 significant digits", event_text(7, quantity='"1.' + "1" * 30 + '"'), "out_of_range", "quantity"),
    ("a 5,000-digit integer literal", event_text(8, quantity="9" * 5000), "out_of_range", "quantity"),
    ("a 5,000-digit decimal literal", event_text(9, quantity="0." + "1" * 5000), "out_of_range", "quantity"),
    ("Unicode digits", event_text(10, quantity='"\\u0661\\u0662"'), "invalid", "quantity"),
    ("a boolean quantity", event_text(11, quantity="true"), "invalid", "quantity"),
    ("year 1999", event_text(12, timestamp='"1999-12-31T23:00:00Z"'), "out_of_range", "timestamp"),
    ("year 9999", event_text(13, timestamp='"9999-12-31T23:59:59+00:00"'), "out_of_range", "timestamp"),
    ("year 1 east of UTC", event_text(14, timestamp='"0001-01-01T00:00:00+14:00"'), "out_of_range", "timestamp"),
    ("Unix seconds 1e20", event_text(15, timestamp="1e20"), "out_of_range", "timestamp"),
    ("Unix seconds as a 400-digit integer", event_text(16, timestamp="1" * 400), "invalid", "timestamp"),
    ("an over-long timestamp", event_text(17, timestamp=json.dumps("2026-01-01T00:00:00" + "0" * 100 + "Z")),
     "too_long", "timestamp"),
    ("NUL in the id", event_text(18, id='"r\\u0000x"'), "invalid", "id"),
    ("NUL in the customer", event_text(19, customer='"ac\\u0000me"'), "invalid", "customer"),
    ("a control character in the meter", event_text(20, meter='"api\\u0007calls"'), "invalid", "meter"),
    ("an unpaired surrogate in the id", event_text(21, id='"r\\ud800"'), "invalid", "id"),
    ("NUL in a property value", event_text(22, properties='{"region": "e\\u0000u"}'), "invalid", "properties"),
    ("NUL in a property name", event_text(23, properties='{"re\\u0000gion": "eu"}'), "invalid", "properties"),
    ("a surrogate in a property", event_text(24, properties='{"region": "\\udfff"}'), "invalid", "properties"),
    ("a 256-character id", event_text(25, id=json.dumps("x" * 256)), "too_long", "id"),
    ("a 129-character meter", event_text(26, meter=json.dumps("m" * 129)), "too_long", "meter"),
    ("a 300-character property name", event_text(27, properties=json.dumps({"k" * 300: 1})), "too_long",
     "properties"),
    ("5 KB of properties", event_text(28, properties=json.dumps({"blob": "x" * 5000})), "too_large", "properties"),
    ("properties nested 50 deep", event_text(29, properties='{"a": ' + "[" * 50 + "]" * 50 + "}"), "too_large",
     "properties"),
    ("a 70-bit integer property", event_text(30, properties='{"n": ' + str(2**70) + "}"), "out_of_range",
     "properties"),
    ("1e999999 in a property", event_text(31, properties='{"n": 1e999999}'), "out_of_range", "properties"),
    ("a 10,000-character field name", '{"' + "f" * 10_000 + '": 1}', "invalid", None),
]


def test_each_untrustworthy_event_is_refused_with_code_field_reason_and_fix(
    client: TestClient, keys: dict, engine: Engine, known: None
) -> None:
    t0 = time.perf_counter()
    answer = post_raw(client, keys["ingest"], [text for _, text, _, _ in CASES] + [event_text(99)])
    assert time.perf_counter() - t0 < 5  # huge literals cost nothing
    assert (answer["accepted"], answer["rejected"]) == (1, len(CASES))
    for (what, _, code, field), res in zip(CASES, answer["results"], strict=False):
        assert res["status"] == "rejected", what
        assert (res["code"], res["field"] if field else None) == (code, field), (what, res)
        assert res["reason"] and res["fix"], what
    long_field = answer["results"][len(CASES) - 1]
    assert len(long_field["field"]) < 100  # an over-long name is cut before it is echoed
    with Session(engine) as s:
        assert s.exec(select(UsageEvent.event_id)).all() == ["r99"]


def test_nan_and_infinity_are_not_json(client: TestClient, keys: dict, known: None) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        r = client.post("/v1/usage/events", content=('{"events": [' + event_text(1, quantity=literal) + "]}").encode(),
                        headers={**auth(keys["ingest"]), "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_a_meter_listed_for_corrections_takes_negative_quantities(engine: Engine, keys: dict, known: None) -> None:
    app = create_app(engine, ServiceSettings(correction_meters=["api_calls"]))
    with TestClient(app) as client:
        answer = post_raw(client, keys["ingest"], [event_text(1, quantity='"-2.5"'),
                                                   event_text(2, quantity="-1", meter='"storage"')])
    assert [r["status"] for r in answer["results"]] == ["accepted", "rejected"]
    assert answer["results"][1]["code"] == "negative_quantity"
    assert "correction_meters" in answer["results"][1]["fix"]


def test_bodies_over_the_limit_are_refused_before_they_are_read(engine: Engine, keys: dict, known: None) -> None:
    app = create_app(engine, ServiceSettings(max_body_bytes=4096, max_batch=5, max_properties_bytes=64))
    h = {**auth(keys["ingest"]), "Content-Type": "application/json"}
    big = ('{"events": [' + ", ".join(event_text(i) for i in range(60)) + "]}").encode()
    assert len(big) > 4096
    with TestClient(app) as client:
        r = client.post("/v1/usage/events", content=big, headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert "4,096 bytes" in r.json()["error"]["message"]

        # No Content-Length (chunked): counted as it arrives, refused once past the limit.
        def chunks():  # type: ignore[no-untyped-def]
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        r = client.post("/v1/usage/events", content=chunks(), headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        r = client.post("/v1/usage/events", json={"events": [json.loads(event_text(i)) for i in range(6)]}, headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"
        props = json.loads(event_text(1, properties=json.dumps({"note": "x" * 80})))
        r = client.post("/v1/usage/events", json={"events": [props]}, headers=h)
        assert r.json()["results"][0]["code"] == "too_large"
        # Other routes share the limit; webhook deliveries have their own 1 MB.
        r = client.post("/v1/findings/f/resolve", content=b"{" + b" " * 5000 + b"}", headers=h)
        assert r.status_code == 413
        r = client.post("/v1/webhooks/stripe", content=b"x" * 1_000_001, headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_the_known_rule(engine: Engine) -> None:
    """Customers: a canonical id, an id the identity map links in the usage source, or a contract's customer.
    Meters: a metering system's meter, or one a contract's terms name (a usage component or a units grant)."""
    with Session(engine) as s, s.begin():
        s.add(ExternalRef(entity_type="customer", canonical_id="acme", system="salesforce", object_type="customer",
                          external_id="001A"))
        s.add(ExternalRef(entity_type="customer", canonical_id="acme", system="api", object_type="customer",
                          external_id="acme-eu"))
        s.add(ExternalRef(entity_type="customer", canonical_id="", system="stripe", object_type="customer",
                          external_id="cus_gone", method="unlinked"))
        s.add(Meter(id="m1", system="stripe", external_id="m1", key="api_calls"))
        terms = {"components": [{"type": "usage", "id": "gb", "meter": "storage_gb"}],
                 "credits": [{"id": "free", "units": "10", "meter": "gpu_seconds"}]}
        s.add(Contract(id=record_id("con", "crm", "c1"), system="crm", external_id="c1", customer_external_id="globex",
                       currency="USD", start_date=date(2026, 1, 1), terms=terms, terms_hash="h1"))
    with Session(engine) as s:
        catalog = Catalog(s, "api")
        assert catalog.known_customers({"acme", "acme-eu", "globex", "001A", "cus_gone", "initech"}) == {
            "acme", "acme-eu", "globex"}
        assert catalog.known_meters({"api_calls", "storage_gb", "gpu_seconds", "gb", "tokens"}) == {
            "api_calls", "storage_gb", "gpu_seconds"}


def test_the_answer_says_whether_standing_counts_the_events(engine: Engine, keys: dict, known: None) -> None:
    """Standing reads usage from the first metering connection; pushed usage only when none meters."""
    with Session(engine) as s, s.begin():
        s.add(Connection(name="stripe", plugin="stripe", config={}))
    body = {"events": [json.loads(event_text(1))]}
    with TestClient(create_app(engine, ServiceSettings(), sync_settings=SyncSettings())) as client:
        answer = client.post("/v1/usage/events", json=body, headers=auth(keys["ingest"])).json()
        assert answer["accepted"] == 1 and answer["counted_by_standing"] is False
        assert "'stripe'" in answer["standing_note"] and "roles" in answer["standing_note"]
        page = client.get("/v1/standing", headers=auth(keys["read"])).json()
        assert page["usage_system"] == "stripe"
    settings = SyncSettings(roles={"stripe": ["billing"]})
    with TestClient(create_app(engine, ServiceSettings(), sync_settings=settings)) as client:
        answer = client.post("/v1/usage/events", json=body, headers=auth(keys["ingest"])).json()
        assert answer["duplicates"] == 1 and answer["counted_by_standing"] is True
        assert "standing_note" not in answer
        assert client.get("/v1/standing", headers=auth(keys["read"])).json()["usage_system"] == "api"


@pytest.mark.parametrize("field", ["customer", "customer_external_id"])
def test_unknown_names_are_not_counted(client: TestClient, keys: dict, engine: Engine, field: str) -> None:
    make_known(engine, customers=("acme",), meters=("api_calls",))
    events = [json.loads(event_text(1)), {**json.loads(event_text(2)), "meter": "tokens"}]
    events[1].pop("customer")
    events[1][field] = "initech"
    answer = client.post("/v1/usage/events", json={"events": events}, headers=auth(keys["ingest"])).json()
    assert [r["status"] for r in answer["results"]] == ["accepted", "rejected"]
    res = answer["results"][1]
    assert (res["code"], res["field"], res["quarantined"]) == ("unknown_customer", field, True)
    assert "'tokens' is not known either" in res["reason"] and "subledger rejects release" in res["fix"]
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(UsageEvent)).one() == 1
