"""The Salesforce sandbox speaks the REST, composite and Bulk 2.0 APIs the way simple-salesforce expects."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sf_testkit import ACME, GLOBEX
from simple_salesforce import Salesforce, SalesforceMalformedRequest, SalesforceResourceNotFound

from subledger.core.sandbox import SandboxServer
from subledger.plugins.salesforce.client import SalesforceApi
from subledger.plugins.salesforce.config import SalesforceConfig
from subledger.plugins.salesforce.sandbox import SalesforceSandbox
from subledger.plugins.salesforce.soql import BoolExpr, Condition, SoqlError, parse


@pytest.fixture
def sf(config: SalesforceConfig) -> Salesforce:
    return SalesforceApi(config).sf


def test_soql_subset_parses_conditions_order_and_limits() -> None:
    query = parse("select Id, Name from Account where (IsDeleted = false or Name != 'O\\'Brien') "
                  "and SystemModstamp > 2026-01-01T00:00:00Z and Id IN ('a', 'b') "
                  "order by SystemModstamp desc, Id limit 10 offset 2")
    assert (query.sobject, query.fields, query.limit, query.offset) == ("Account", ["Id", "Name"], 10, 2)
    assert query.order_by == [("SystemModstamp", True), ("Id", False)]
    assert isinstance(query.where, BoolExpr) and query.where.op == "AND"
    first, second, third = query.where.parts
    assert isinstance(first, BoolExpr) and first.parts[1] == Condition("Name", "!=", "O'Brien")
    assert second == Condition("SystemModstamp", ">", datetime(2026, 1, 1, tzinfo=UTC))
    assert third == Condition("Id", "IN", ("a", "b"))
    assert parse("SELECT COUNT() FROM Opportunity WHERE Amount >= 10.5").where == Condition(
        "Amount", ">=", Decimal("10.5"))


@pytest.mark.parametrize("text", ["SELECT FROM Account", "SELECT Id FROM Account WHERE", "SELECT Id, FROM X",
                                  "SELECT Id FROM Account WHERE Name LIKE 'A%'", "SELECT Id FROM Account LIMIT x"])
def test_soql_outside_the_subset_is_refused(text: str) -> None:
    with pytest.raises(SoqlError):
        parse(text)


def test_query_refuses_unknown_fields_and_malformed_soql_like_salesforce(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Id, Discount__c FROM Account")
    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Id FROM Account WHERE Name LIKE 'A%'")
    assert raised.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_sobject_crud_describe_and_query_all_sees_deleted_records(sf: Salesforce) -> None:
    created = sf.Account.create({"Name": "Initrode", "Website": "initrode.example"})
    assert created["success"] and created["id"].startswith("001")
    assert sf.Account.get(created["id"])["Website"] == "initrode.example"
    assert sf.Account.update(created["id"], {"Name": "Initrode Inc"}) == 204
    names = {f["name"]: f["type"] for f in sf.Account.describe()["fields"]}
    assert names["Subledger_Id__c"] == "string" and names["SystemModstamp"] == "datetime"
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(created["id"])
    live = sf.query_all("SELECT Id FROM Account")["records"]
    everything = sf.query_all("SELECT Id, IsDeleted FROM Account", include_deleted=True)["records"]
    assert (len(live), len(everything)) == (3, 4)


def test_composite_all_or_none_rolls_back_every_subrequest(sf: Salesforce, sandbox: SalesforceSandbox) -> None:
    path = "/services/data/v59.0/sobjects/Account"
    result = sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        {"method": "PATCH", "url": f"{path}/{ACME}", "referenceId": "a", "body": {"Last_Invoice__c": "INV-1"}},
        {"method": "PATCH", "url": f"{path}/{GLOBEX}", "referenceId": "b", "body": {"No_Such__c": "x"}},
    ]})
    statuses = [(r["referenceId"], r["httpStatusCode"]) for r in result["compositeResponse"]]
    assert statuses == [("a", 400), ("b", 400)]
    assert sandbox.store.get("Account", ACME)["Last_Invoice__c"] is None


def test_composite_references_an_earlier_subrequests_result(sf: Salesforce) -> None:
    result = sf.restful("composite", method="POST", json={"compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "new",
         "body": {"Name": "Hooli"}},
        {"method": "GET", "url": "/services/data/v59.0/sobjects/Account/@{new.id}?fields=Name", "referenceId": "get"},
    ]})
    assert result["compositeResponse"][1]["body"]["Name"] == "Hooli"


def test_a_patch_with_a_stale_if_unmodified_since_is_refused(sf: Salesforce, sandbox: SalesforceSandbox) -> None:
    stale = email.utils.format_datetime(datetime(2020, 1, 1, tzinfo=UTC), usegmt=True)
    result = sf.restful("composite", method="POST", json={"compositeRequest": [
        {"method": "PATCH", "url": f"/services/data/v59.0/sobjects/Account/{ACME}", "referenceId": "u",
         "body": {"Last_Invoice__c": "INV-9"}, "httpHeaders": {"If-Unmodified-Since": stale}}]})
    assert result["compositeResponse"][0]["httpStatusCode"] == 412
    assert sandbox.store.get("Account", ACME)["Last_Invoice__c"] is None


def test_bulk_query_jobs_page_csv_results_with_sforce_locator(sf: Salesforce) -> None:
    pages: list[Any] = list(sf.bulk2.Account.query("SELECT Id, Name, IsDeleted FROM Account ORDER BY Name",
                                                   max_records=2, wait=0))
    assert len(pages) == 2
    assert pages[0].splitlines() == ['"Id","Name","IsDeleted"', f'"{ACME}","Acme Corp","false"',
                                     f'"{GLOBEX}","Globex","false"']


def test_every_api_answer_reports_api_usage(config: SalesforceConfig, server: SandboxServer) -> None:
    api = SalesforceApi(config)
    list(api.query("SELECT Id FROM Account"))
    used, allowance = api.api_usage or (0, 0)
    assert (used, allowance) == (2, 15000)  # three accounts in pages of two: two requests
