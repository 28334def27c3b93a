"""The NetSuite sandbox's REST record service and SuiteQL, over signed HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from ns_testkit import tba_config

from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import load_config
from subledger.plugins.netsuite import exact_json
from subledger.plugins.netsuite import sandbox_suiteql as suiteql
from subledger.plugins.netsuite.auth import TokenBasedAuth
from subledger.plugins.netsuite.config import NetSuiteConfig
from subledger.plugins.netsuite.sandbox import NetSuiteSandbox

RECORD = "/services/rest/record/v1"
SUITEQL = "/services/rest/query/v1/suiteql"


@pytest.fixture
def ns(server: SandboxServer) -> Iterator[httpx.Client]:
    config = load_config(NetSuiteConfig, tba_config(server.url))
    with httpx.Client(base_url=server.url, auth=TokenBasedAuth(config)) as client:  # type: ignore[arg-type]
        yield client


def body(response: httpx.Response) -> dict:
    return exact_json.loads(response.content)


def query(ns: httpx.Client, q: str, **params: int) -> httpx.Response:
    return ns.post(SUITEQL, params=params, content=exact_json.dumps({"q": q}),
                   headers={"Prefer": "transient", "Content-Type": "application/json"})


def test_create_answers_204_with_a_location_and_get_patch_upsert_delete_work(ns: httpx.Client) -> None:
    created = ns.post(f"{RECORD}/customer", json={"companyName": "Initech", "subsidiary": {"id": "1"}})
    assert created.status_code == 204 and created.content == b""
    location = created.headers["Location"]
    assert location.startswith("http://127.0.0.1:") and "/services/rest/record/v1/customer/" in location
    cid = location.rsplit("/", 1)[1]
    assert body(ns.get(f"{RECORD}/customer/{cid}"))["companyName"] == "Initech"

    assert ns.patch(f"{RECORD}/customer/{cid}", json={"email": "ap@initech.example"}).status_code == 204
    assert body(ns.get(f"{RECORD}/customer/{cid}"))["email"] == "ap@initech.example"

    first = ns.put(f"{RECORD}/customer/eid:initech", json={"companyName": "Initech LLC", "subsidiary": {"id": "1"}})
    again = ns.put(f"{RECORD}/customer/eid:initech", json={"companyName": "Initech LLC", "subsidiary": {"id": "1"}})
    assert first.status_code == again.status_code == 204
    assert first.headers["Location"] == again.headers["Location"], "an upsert by external id never duplicates"
    by_eid = body(ns.get(f"{RECORD}/customer/eid:initech"))
    assert (by_eid["companyName"], by_eid["externalId"]) == ("Initech LLC", "initech")

    assert ns.delete(f"{RECORD}/customer/{cid}").status_code == 204
    missing = ns.get(f"{RECORD}/customer/{cid}")
    assert missing.status_code == 404 and body(missing)["o:errorDetails"][0]["o:errorCode"] == "NONEXISTENT_ID"


def test_put_needs_an_external_id_and_external_ids_are_unique(ns: httpx.Client) -> None:
    refused = ns.put(f"{RECORD}/customer/1001", json={"companyName": "X", "subsidiary": {"id": "1"}})
    assert refused.status_code == 400 and body(refused)["o:errorDetails"][0]["o:errorCode"] == "INVALID_URL"
    clash = ns.post(f"{RECORD}/customer",
                    json={"companyName": "X", "subsidiary": {"id": "1"}, "externalId": "cus_acme"})
    assert clash.status_code == 400 and body(clash)["o:errorDetails"][0]["o:errorCode"] == "DUP_RCRD"


def test_sublists_are_links_unless_expanded_and_amounts_are_exact(ns: httpx.Client) -> None:
    linked = body(ns.get(f"{RECORD}/invoice/2001"))
    assert set(linked["item"]) == {"links"}
    invoice = body(ns.get(f"{RECORD}/invoice/2001", params={"expandSubResources": "true"}))
    assert [ln["amount"] for ln in invoice["item"]["items"]] == [Decimal("500.00"), Decimal("1.50")]
    assert (invoice["total"], invoice["amountRemaining"], invoice["status"]["refName"]) == (
        Decimal("501.50"), Decimal("201.50"), "Open")


def test_a_payment_applies_to_invoices_and_cannot_overpay_one(ns: httpx.Client) -> None:
    over = ns.post(f"{RECORD}/customerPayment", content=exact_json.dumps(
        {"customer": {"id": "1001"}, "payment": Decimal("500.00"), "tranDate": "2026-01-12",
         "apply": {"items": [{"doc": {"id": "2001"}, "apply": True, "amount": Decimal("201.51")}]}}),
        headers={"Content-Type": "application/json"})
    assert over.status_code == 400 and "exceeds its amount due (201.50)" in over.text
    paid = ns.post(f"{RECORD}/customerPayment", content=exact_json.dumps(
        {"customer": {"id": "1001"}, "payment": Decimal("201.50"), "tranDate": "2026-01-12",
         "apply": {"items": [{"doc": {"id": "2001"}, "apply": True, "amount": Decimal("201.50")}]}}),
        headers={"Content-Type": "application/json"})
    assert paid.status_code == 204
    invoice = body(ns.get(f"{RECORD}/invoice/2001"))
    assert (invoice["amountRemaining"], invoice["status"]["refName"]) == (Decimal("0.00"), "Paid In Full")


def test_suiteql_pages_with_offset_limit_and_has_more(ns: httpx.Client, sandbox: NetSuiteSandbox) -> None:
    q = ("SELECT id, TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS modified FROM transaction "
         "WHERE type = 'CustInvc' AND lastmodifieddate >= TO_TIMESTAMP('2026-01-01 00:00:00', "
         "'YYYY-MM-DD HH24:MI:SS') ORDER BY lastmodifieddate, id")
    first = body(query(ns, q, limit=1, offset=0))
    assert (first["count"], first["hasMore"], first["totalResults"], first["offset"]) == (1, True, 2, 0)
    assert first["items"] == [{"links": [], "id": "2001", "modified": "2026-01-15 00:00:00"}]
    second = body(query(ns, q, limit=1, offset=1))
    assert [i["id"] for i in second["items"]] == ["2002"] and second["hasMore"] is False
    later = body(query(ns, q.replace("2026-01-01 00:00:00", "2026-01-15 00:00:01"), limit=10))
    assert later["items"] == []


def test_suiteql_renders_values_as_netsuite_does(ns: httpx.Client) -> None:
    rows = body(query(ns, "SELECT id, periodname, startdate, closed FROM accountingperiod WHERE id = '201'"))["items"]
    assert rows == [{"links": [], "id": "201", "periodname": "Jan 2026", "startdate": "1/1/2026", "closed": "F"}]


@pytest.mark.parametrize(("q", "message"), [
    ("SELECT id FROM invoices", "Record 'invoices' was not found"),
    ("SELECT id, nosuch FROM customer", "Field 'nosuch' for record 'customer' was not found"),
    ("SELECT id FROM customer WHERE lastmodifieddate >= NOW()", "Unexpected 'NOW'"),
    ("SELECT id FROM customer LIMIT 5", "Unexpected 'LIMIT'"),
    ("DELETE FROM customer", "Expected SELECT"),
    ("SELECT id FROM customer WHERE lastmodifieddate >= TO_TIMESTAMP('2026-01-01', 'DD.MM.YYYY')",
     "Unsupported date format"),
])
def test_suiteql_refuses_what_it_does_not_support(ns: httpx.Client, q: str, message: str) -> None:
    response = query(ns, q)
    assert response.status_code == 400
    [detail] = body(response)["o:errorDetails"]
    assert message in detail["detail"] and detail["o:errorCode"] == "INVALID_PARAMETER"


def test_suiteql_needs_prefer_transient(ns: httpx.Client) -> None:
    response = ns.post(SUITEQL, json={"q": "SELECT id FROM customer"})
    assert response.status_code == 400 and "Prefer: transient" in response.text


def test_the_parser_reads_the_connectors_query() -> None:
    parsed = suiteql.parse(
        "SELECT id, TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS modified FROM transaction "
        "WHERE type = 'CustPymt' AND lastmodifieddate >= TO_TIMESTAMP('2026-01-31 23:59:59', "
        "'YYYY-MM-DD HH24:MI:SS') ORDER BY lastmodifieddate, id DESC")
    assert parsed.table == "transaction"
    assert [(c.name, c.alias, c.to_char) for c in parsed.columns] == [
        ("id", "id", None), ("lastmodifieddate", "modified", "YYYY-MM-DD HH24:MI:SS")]
    assert [(c.column, c.op, c.value) for c in parsed.where] == [
        ("type", "=", "CustPymt"), ("lastmodifieddate", ">=", datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC))]
    assert parsed.order == [("lastmodifieddate", False), ("id", True)]


def test_the_sandbox_refuses_bad_fixture_entries() -> None:
    with pytest.raises(ValueError, match=r"fixture customers\[0\]: Please enter value\(s\) for: Company Name"):
        NetSuiteSandbox(fixture={"customers": [{"email": "x@y.example"}]})
    with pytest.raises(ValueError, match="unknown fixture kinds: vendors"):
        NetSuiteSandbox(fixture={"vendors": []})


def test_the_connection_hint_printed_by_sandbox_serve_connects(server: SandboxServer, sandbox: NetSuiteSandbox) -> None:
    from subledger.plugins.netsuite.connector import NetSuiteConnector

    connector = NetSuiteConnector(load_config(NetSuiteConfig, sandbox.connection_hint(server.url)))  # type: ignore[arg-type]
    assert connector.check().ok
    assert NetSuiteSandbox().store.counts() == {"currency": 4, "subsidiary": 1, "account": 7, "accountingPeriod": 12,
                                                 "nonInventorySaleItem": 1}
