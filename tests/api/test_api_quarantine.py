"""Quarantine and release: usage for an unknown customer or meter is kept, never counted, and stored exactly once
when a link or a meter definition makes it known (API route and ``subledger rejects release``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from api_support import auth, make_known
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.api import create_app
from subledger.api.ingest import QUARANTINE_STREAM, ingest_batch
from subledger.api.quarantine import release
from subledger.api.settings import ServiceSettings
from subledger.core.model import AccountingPeriod, AuditEntry, Customer, Meter, Reject, UsageEvent, UsageRollup
from subledger.core.model.identity import ExternalRef
from subledger.core.store.engine import get_engine, make_engine
from subledger.sync.identity import link_manually

NOW = datetime.now(UTC) - timedelta(minutes=1)


def ev(i: int, customer: str = "initech", meter: str = "api_calls", qty: str = "2") -> dict:
    return {"id": f"q{i}", "customer": customer, "meter": meter, "quantity": qty, "timestamp": NOW.isoformat()}


def stored(engine: Engine) -> dict[str, Decimal]:
    with Session(engine) as s:
        return {e.event_id: e.quantity for e in s.exec(select(UsageEvent)).all()}


def rollup_sum(engine: Engine, customer: str) -> Decimal:
    with Session(engine) as s:
        rows = s.exec(select(UsageRollup).where(UsageRollup.customer_external_id == customer)).all()
    return sum((r.quantity_sum for r in rows), Decimal(0))


def link(engine: Engine, canonical: str) -> None:
    """What `subledger link crm <id> <canonical>` does, after a CRM pull brought the record."""
    with Session(engine) as s, s.begin():
        s.add(Customer(id=f"cus_{canonical}", system="crm", external_id=f"crm-{canonical}", name=canonical))
        s.flush()
        link_manually(s, system="crm", external_id=f"crm-{canonical}", canonical_id=canonical, actor="user:test",
                      reason="test")


def test_unknown_usage_is_quarantined_listed_and_released_exactly_once(
    client: TestClient, keys: dict, engine: Engine
) -> None:
    make_known(engine, customers=("acme",), meters=("api_calls",))
    h = auth(keys["ingest"])
    events = [ev(1), ev(2, qty="3"), ev(3, meter="gpu_seconds"), ev(4, customer="acme")]
    answer = client.post("/v1/usage/events", json={"events": events}, headers=h).json()
    assert (answer["accepted"], answer["rejected"], answer["quarantined"]) == (1, 3, 3)
    assert [r.get("code") for r in answer["results"]] == ["unknown_customer", "unknown_customer", "unknown_customer",
                                                          None]
    # Sent again while still unknown: the same three rejects, not three more.
    again = client.post("/v1/usage/events", json={"events": events}, headers=h).json()
    assert (again["duplicates"], again["quarantined"]) == (1, 3)
    assert stored(engine) == {"q4": Decimal("2")} and rollup_sum(engine, "initech") == 0

    page = client.get("/v1/usage/quarantine", headers=auth(keys["read"])).json()
    assert page["total"] == 3 and [e["event"] for e in page["events"]] == ["q1", "q2", "q3"]
    assert page["events"][0]["raw"] == {"id": "q1", "customer": "initech", "meter": "api_calls", "quantity": "2",
                                        "timestamp": NOW.isoformat(), "properties": {}}
    assert client.post("/v1/usage/quarantine/release", headers=auth(keys["read"])).status_code == 403

    link(engine, "initech")  # the customer becomes known; gpu_seconds is still unknown
    w = auth(keys["write"])
    report = client.post("/v1/usage/quarantine/release", headers=w).json()
    assert (report["released"], report["still_unknown"], report["refused"]) == (2, 1, 0)
    assert [r["code"] for r in report["results"] if r["status"] == "unknown"] == ["unknown_meter"]
    assert stored(engine) == {"q1": Decimal("2"), "q2": Decimal("3"), "q4": Decimal("2")}
    assert rollup_sum(engine, "initech") == Decimal("5")

    with Session(engine) as s, s.begin():  # a meter definition arrives (a metering system's pull)
        s.add(Meter(id="m_gpu", system="metering", external_id="gpu", key="gpu_seconds"))
    report = client.post("/v1/usage/quarantine/release", json={"ids": None}, headers=w).json()
    assert (report["released"], report["still_unknown"]) == (1, 0)
    assert client.post("/v1/usage/quarantine/release", headers=w).json()["results"] == []
    # The sender's retry after the release is a duplicate: each event counted once.
    retry = client.post("/v1/usage/events", json={"events": events}, headers=h).json()
    assert retry["duplicates"] == 4 and retry["quarantined"] == 0
    assert rollup_sum(engine, "initech") == Decimal("7")
    assert client.get("/v1/usage/quarantine", headers=auth(keys["read"])).json()["total"] == 0
    with Session(engine) as s:
        assert {r.status for r in s.exec(select(Reject)).all()} == {"released"}
        audit = s.exec(select(AuditEntry).where(AuditEntry.verb == "usage.release")).all()
    assert [a.details["released"] for a in audit] == [2, 1] and audit[0].actor.startswith("api:key_")


def test_release_never_reopens_a_closed_period_nor_overwrites_a_stored_id(engine: Engine) -> None:
    make_known(engine, customers=("acme",), meters=("api_calls",))
    arrived = datetime(2026, 4, 2, 12, tzinfo=UTC)  # March is open for 3 days' grace
    late_march = {**ev(1), "timestamp": "2026-03-30T10:00:00Z"}
    reused = {**ev(3), "timestamp": "2026-04-01T10:00:00Z"}
    res = ingest_batch(engine, "api", [late_march, reused], now=arrived).results
    assert [r.code for r in res] == ["unknown_customer"] * 2
    # Meanwhile the sender reused q3 for other content, which was stored; and March was closed.
    ingest_batch(engine, "api", [{**reused, "customer": "acme", "quantity": "9"}], now=arrived)
    with Session(engine) as s, s.begin():
        s.add(AccountingPeriod(period="2026-03", closed_by="user:test"))
    link(engine, "initech")
    report = release(engine, "api", now=datetime(2026, 4, 20, tzinfo=UTC), actor="user:test")
    assert {r.event: (r.status, r.code) for r in report.results} == {
        "q1": ("refused", "too_old"), "q3": ("refused", "conflict")}
    assert stored(engine) == {"q3": Decimal("9")}
    with Session(engine) as s:  # kept open, with the new reason, for a person to see
        rows = {r.location: r for r in s.exec(select(Reject)).all()}
    assert rows["event q1"].status == "open" and "oldest open period" in rows["event q1"].reason
    assert rows["event q3"].status == "open" and "new id" in rows["event q3"].fix


def test_release_after_grace_but_before_close(engine: Engine) -> None:
    make_known(engine, customers=(), meters=("api_calls",))
    arrived = datetime(2026, 4, 2, 12, tzinfo=UTC)
    res = ingest_batch(engine, "api", [{**ev(1), "timestamp": "2026-03-30T10:00:00Z"}], now=arrived).results
    assert res[0].code == "unknown_customer"
    later = datetime(2026, 4, 20, tzinfo=UTC)
    assert ingest_batch(engine, "api", [{**ev(9), "customer": "x", "timestamp": "2026-03-30T10:00:00Z"}],
                        now=later).results[0].code == "too_old"
    link(engine, "initech")
    dry = release(engine, "api", now=later, dry_run=True)
    assert dry.count("released") == 1 and stored(engine) == {}
    report = release(engine, "api", now=later)
    assert report.count("released") == 1 and stored(engine) == {"q1": Decimal("2")}
    with Session(engine) as s:
        row = s.exec(select(Reject)).one()
    assert (row.stream, row.status, row.location) == (QUARANTINE_STREAM, "released", "event q1")


def test_rejects_release_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from subledger.cli import app

    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    monkeypatch.setenv("SUBLEDGER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SUBLEDGER_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("SUBLEDGER_SERVICE_CONFIG", raising=False)

    def run(*args: str) -> str:
        get_engine.cache_clear()  # the process-wide engine is cached: open this store's own
        try:
            result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        finally:
            get_engine().dispose()
            get_engine.cache_clear()
        assert result.exit_code == 0, result.output
        return result.stdout

    run("init")
    engine = make_engine(url)
    make_known(engine, customers=("acme",), meters=("api_calls",))
    ingest_batch(engine, "api", [ev(1), ev(2, customer="acme")])
    listed = json.loads(run("rejects", "--json"))
    assert [(r["connection"], r["stream"], r["location"], r["field"]) for r in listed] == [
        ("api", QUARANTINE_STREAM, "event q1", "customer")]
    assert "subledger rejects release" in listed[0]["fix"]
    assert "api: event q1" in run("rejects")
    with Session(engine) as s, s.begin():
        s.add(ExternalRef(entity_type="customer", canonical_id="initech", system="crm", object_type="customer",
                          external_id="crm-9"))
    dry = json.loads(run("rejects", "release", "--dry-run", "--json"))
    assert dry["dry_run"] and dry["released"] == 1 and stored(engine) == {"q2": Decimal("2")}
    out = run("rejects", "release")
    assert "1 released, 0 already stored (released), 0 still unknown, 0 refused" in out
    assert stored(engine) == {"q1": Decimal("2"), "q2": Decimal("2")}
    assert json.loads(run("rejects", "--json")) == []
    assert json.loads(run("rejects", "release", "--json"))["released"] == 0
    engine.dispose()


def test_an_app_with_a_usage_source_of_its_own(engine: Engine, keys: dict) -> None:
    make_known(engine, customers=("acme",), meters=("api_calls",))
    app = create_app(engine, ServiceSettings(usage_source="pipeline"))
    with TestClient(app) as client:
        answer = client.post("/v1/usage/events", json={"events": [ev(1)]}, headers=auth(keys["ingest"])).json()
        assert answer["quarantined"] == 1
        link(engine, "initech")
        assert client.post("/v1/usage/quarantine/release", headers=auth(keys["write"])).json()["released"] == 1
    with Session(engine) as s:
        assert s.exec(select(UsageEvent.system)).all() == ["pipeline"]
        assert s.exec(select(Reject.connection)).all() == ["pipeline"]


def test_an_event_stored_while_known_is_a_duplicate_not_quarantined(engine: Engine) -> None:
    from subledger.sync.identity import unlink

    make_known(engine, customers=("acme",), meters=("api_calls",))
    first = ingest_batch(engine, "api", [ev(1, customer="acme")]).results
    assert first[0].status == "accepted"
    with Session(engine) as s, s.begin():
        unlink(s, system="crm", external_id="crm-acme", actor="user:test", reason="test")
    again = ingest_batch(engine, "api", [ev(1, customer="acme"), ev(1, customer="acme", qty="5"),
                                         ev(2, customer="acme")]).results
    assert [(r.status, r.code, r.quarantined) for r in again] == [
        ("duplicate", None, False), ("rejected", "conflict", False), ("rejected", "unknown_customer", True)]
