"""Findings, actions, standing, sync control and webhooks over HTTP: scopes, audit, errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, date, datetime, timedelta

from api_support import auth
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.api.keys import revoke_key
from subledger.core.model import Action, AuditEntry, Connection, Contract, Finding, WebhookEvent, record_id
from subledger.core.terms import load_terms, terms_hash, terms_to_document

TODAY = datetime.now(UTC).date()


def add_finding(engine: Engine, fid: str = "fnd_1", amount: int = 12_500) -> None:
    with Session(engine) as s, s.begin():
        s.add(Finding(id=fid, rule="unbilled_usage", key="k", customer="acme", amount_minor=amount, currency="USD",
                      summary="acme: 125.00 USD unbilled",
                      evidence=[{"system": "crm", "object": "contract", "id": "c1"}]))


def test_findings_list_filter_and_status_changes_are_audited(client: TestClient, keys: dict, engine: Engine) -> None:
    add_finding(engine, "fnd_1", 12_500)
    add_finding(engine, "fnd_2", 100)
    r = client.get("/v1/findings", params={"min_amount_minor": 1000}, headers=auth(keys["read"]))
    assert r.status_code == 200 and [f["id"] for f in r.json()["findings"]] == ["fnd_1"]
    assert client.get("/v1/findings", params={"status": "bogus"}, headers=auth(keys["read"])).status_code == 422
    reason = {"reason": "billing will invoice"}
    r = client.post("/v1/findings/fnd_1/acknowledge", json=reason, headers=auth(keys["read"]))
    assert r.status_code == 403
    r = client.post("/v1/findings/fnd_1/acknowledge", json={"reason": "billing will invoice"},
                    headers=auth(keys["write"]))
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    r = client.post("/v1/findings/fnd_1/resolve", json={"reason": ""}, headers=auth(keys["write"]))
    assert r.status_code == 422 and r.json()["error"]["field"] == "reason"
    r = client.post("/v1/findings/nope/ignore", json={"reason": "x"}, headers=auth(keys["write"]))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    detail = client.get("/v1/findings/fnd_1", headers=auth(keys["read"])).json()
    assert [(h["to_status"], h["reason"]) for h in detail["history"]] == [("acknowledged", "billing will invoice")]
    with Session(engine) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.verb == "finding.acknowledged")).one()
    assert entry.actor.startswith("api:key_") and entry.reason == "billing will invoice"


def test_actions_approve_and_apply(client: TestClient, keys: dict, engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.add(Action(id="act_1", idempotency_key="sl_1", kind="create_invoice", connection="billing", amount_minor=500,
                     currency="USD"))
        s.add(Action(id="act_2", idempotency_key="sl_2", kind="create_invoice", connection="billing",
                     status="done"))
    r = client.get("/v1/actions", params={"status": "planned"}, headers=auth(keys["read"]))
    assert [a["id"] for a in r.json()["actions"]] == ["act_1"]
    r = client.post("/v1/actions/approve", json={"ids": ["act_2"]}, headers=auth(keys["write"]))
    assert r.status_code == 409 and "done, not planned" in r.json()["error"]["message"]
    r = client.post("/v1/actions/approve", json={"ids": ["act_1"], "reason": "checked"}, headers=auth(keys["write"]))
    assert r.status_code == 200 and r.json()[0]["status"] == "approved"
    assert r.json()[0]["approved_by"].startswith("api:key_")
    r = client.post("/v1/actions/apply", json={"ids": ["act_9"]}, headers=auth(keys["write"]))
    assert r.status_code == 404
    r = client.post("/v1/actions/apply", json={"ids": ["act_1"]}, headers=auth(keys["write"]))
    assert r.status_code == 202 and r.json() == {"queued": ["act_1"]}
    client.app.state.subledger.drain()
    with Session(engine) as s:
        verbs = [e.verb for e in s.exec(select(AuditEntry).where(AuditEntry.object_id == "act_1")
                                        .order_by(AuditEntry.id)).all()]
    # The billing connection does not exist, so the apply fails before claiming the action, says
    # so in the audit log, and leaves it approved for when the connection is fixed.
    assert verbs == ["action.approve", "action.apply_requested", "action.error"]
    with Session(engine) as s:
        action = s.get(Action, "act_1")
    assert action is not None and (action.status, action.attempts, action.claimed_by) == ("approved", 0, None)
    assert "connection" in (action.error or "")


TERMS = {
    "currency": "USD",
    "start_date": (TODAY.replace(day=1) - timedelta(days=40)).replace(day=1).isoformat(),
    "billing": {"interval": "month"},
    "components": [
        {"type": "flat_fee", "id": "platform", "amount": "100.00"},
        {"type": "usage", "id": "api", "meter": "api_calls", "allotment": {"quantity": 1000},
         "price": {"model": "per_unit", "unit_price": "0.02"}},
    ],
}


def add_contract(engine: Engine, customer: str) -> None:
    t = load_terms(TERMS)
    with Session(engine) as s, s.begin():
        s.add(Contract(id=record_id("con", "crm", f"c-{customer}"), system="crm", external_id=f"c-{customer}",
                       customer_external_id=customer, currency="USD",
                       start_date=date.fromisoformat(TERMS["start_date"]),
                       terms=terms_to_document(t), terms_hash=terms_hash(t)))


def test_standing_prices_the_open_period_with_ingested_usage(client: TestClient, keys: dict, engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.add(Connection(name="crm", plugin="memory"))
    add_contract(engine, "acme")
    add_contract(engine, "globex")
    now = datetime.now(UTC)
    events = [{"id": f"u{i}", "customer": "acme", "meter": "api_calls", "quantity": 300, "timestamp":
               (now - timedelta(seconds=30)).isoformat()} for i in range(5)]
    assert client.post("/v1/usage/events", json={"events": events}, headers=auth(keys["ingest"])).status_code == 200
    r = client.get("/v1/customers/acme/standing", headers=auth(keys["read"]))
    assert r.status_code == 200, r.text
    c = r.json()["contracts"][0]
    # 1,500 calls against 1,000 included: 500 x 0.02 = 10.00, plus the 100.00 platform fee.
    assert c["meters"][0] == {"component": "api", "meter": "api_calls", "usage": "1500", "allotment": "1000",
                              "remaining": "0", "used_fraction": "1.5000"}
    assert c["expected"] == {"amount": "110.00", "amount_minor": 11_000, "currency": "USD"}
    assert c["invoiced"]["amount_minor"] == 0 and c["difference"]["amount_minor"] == 11_000
    page = client.get("/v1/standing", params={"limit": 1}, headers=auth(keys["read"])).json()
    assert page["total"] == 2 and [x["customer"] for x in page["customers"]] == ["acme"]
    page = client.get("/v1/standing", params={"sort": "amount_at_risk"}, headers=auth(keys["read"])).json()
    assert [x["customer"] for x in page["customers"]] == ["globex", "acme"]
    assert client.get("/v1/customers/nobody/standing", headers=auth(keys["read"])).status_code == 404
    assert client.get("/v1/standing", headers=auth(keys["ingest"])).status_code == 403


def test_sync_is_started_in_the_background_and_its_run_read_back(client: TestClient, keys: dict,
                                                                  engine: Engine) -> None:
    r = client.post("/v1/sync", json={"connections": ["nope"]}, headers=auth(keys["write"]))
    assert r.status_code == 404
    r = client.post("/v1/sync", json={}, headers=auth(keys["write"]))
    assert r.status_code == 202, r.text
    run_id = r.json()["run"]
    assert r.headers["location"] == f"/v1/runs/{run_id}"
    client.app.state.subledger.drain()
    run = client.get(f"/v1/runs/{run_id}", headers=auth(keys["read"])).json()
    assert run["status"] == "succeeded" and run["trigger"].startswith("api:key_")
    assert [x["id"] for x in client.get("/v1/runs", headers=auth(keys["read"])).json()] == [run_id]
    assert client.get("/v1/runs/run_x", headers=auth(keys["read"])).status_code == 404
    assert client.get("/v1/connections", headers=auth(keys["read"])).json() == []
    assert client.post("/v1/sync", json={}, headers=auth(keys["read"])).status_code == 403


def test_a_revoked_key_is_refused(client: TestClient, keys: dict, engine: Engine) -> None:
    from subledger.api.keys import parse_key_id

    assert client.get("/v1/runs", headers=auth(keys["read"])).status_code == 200
    revoke_key(engine, parse_key_id(keys["read"]), actor="user:test")
    client.app.state.subledger.keys._entries.clear()  # the 5 s cache, expired
    assert client.get("/v1/runs", headers=auth(keys["read"])).status_code == 401


SECRET = "whsec_test_secret"


def signed(event: dict, *, at: int | None = None, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    t = at if at is not None else int(time.time())
    sig = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={t},v1={sig}", "Content-Type": "application/json"}


def test_stripe_webhooks_are_verified_stored_once_and_replays_refused(client: TestClient, engine: Engine,
                                                                      caplog) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as s, s.begin():
        s.add(Connection(name="stripe", plugin="stripe", config={"api_key": "env:NO_SUCH_KEY_SET"}))
    event = {"id": "evt_1", "object": "event", "type": "test.nothing_to_pull", "data": {"object": {}}}
    body, headers = signed(event)
    r = client.post("/v1/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 200 and r.json() == {"received": True, "status": "queued", "event": "evt_1"}
    # The same bytes again: a replay, refused.
    r = client.post("/v1/webhooks/stripe", content=body, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "webhook_replayed"
    # Stripe's own retry is re-signed: accepted, not processed twice.
    body2, headers2 = signed(event, at=int(time.time()) + 1)
    assert client.post("/v1/webhooks/stripe", content=body2, headers=headers2).json()["status"] == "duplicate"
    # Forged and stale deliveries.
    forged, fh = signed({**event, "id": "evt_2"}, secret="whsec_attacker")
    r = client.post("/v1/webhooks/stripe", content=forged, headers=fh)
    assert r.status_code == 400 and r.json()["error"]["code"] == "webhook_rejected"
    stale, sh = signed({**event, "id": "evt_3"}, at=int(time.time()) - 3600)
    assert client.post("/v1/webhooks/stripe", content=stale, headers=sh).status_code == 400
    assert "refused" in caplog.text
    assert client.post("/v1/webhooks/nope", content=body, headers=headers).status_code == 404
    client.app.state.subledger.drain()
    with Session(engine) as s:
        rows = s.exec(select(WebhookEvent)).all()
    assert [(w.event_id, w.deliveries, w.status) for w in rows] == [("evt_1", 2, "processed")]


def test_a_webhook_names_the_streams_it_changes(client: TestClient, engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        s.add(Connection(name="stripe", plugin="stripe", config={"api_key": "sk_test_x", "api_base": "http://127.0.0.1:9"}))
    body, headers = signed({"id": "evt_9", "object": "event", "type": "customer.created", "data": {"object": {}}})
    assert client.post("/v1/webhooks/stripe", content=body, headers=headers).status_code == 200
    client.app.state.subledger.drain()
    with Session(engine) as s:
        row = s.exec(select(WebhookEvent)).one()
    assert row.streams == ["customers"]
    assert row.status in ("processed", "failed")  # nothing listens on port 9: the pull fails, recorded
