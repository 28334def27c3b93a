"""The official SDK deserializes every answer the HubSpot sandbox serves, without loss.

HubSpot's OpenAPI documents may not be redistributed, so the sandbox takes its shapes from the
SDK's own models. For each endpoint the sandbox serves, the SDK's model of the answer is
serialized back (``ApiClient.sanitize_for_serialization``) and compared with the JSON the
sandbox sent: a field the model does not know would be dropped, and one it requires would
fail deserialization, so equality means nothing was lost or missing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import hubspot
import hubspot.crm.associations.v4 as v4
import hubspot.crm.objects as objects
import pytest
from hubspot.crm.objects.exceptions import ApiException

from subledger.plugins.hubspot.sandbox import HubSpotSandbox

DATETIME_KEYS = {"createdAt", "updatedAt", "archivedAt", "startedAt", "completedAt", "requestedAt"}


def normalized(value: Any, key: str = "") -> Any:
    """JSON with unset model fields (None) dropped and datetimes parsed; property values kept as sent."""
    if isinstance(value, dict):
        keep_nulls = key == "properties"
        return {k: normalized(v, k) for k, v in value.items() if keep_nulls or v is not None}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    if key in DATETIME_KEYS and isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def assert_lossless(model: Any, sandbox: HubSpotSandbox, client_module: Any, status: int = 200) -> None:
    exchange = sandbox.exchanges[-1]
    assert exchange.response.status == status
    sent = json.loads(json.dumps(exchange.response.body))
    round_trip = client_module.ApiClient().sanitize_for_serialization(model)
    assert normalized(round_trip) == normalized(sent)


def test_list_with_paging_and_associations(sdk: hubspot.HubSpot, sandbox: HubSpotSandbox) -> None:
    page = sdk.crm.objects.basic_api.get_page("companies", limit=2, properties=["name", "domain", "subledger_id"],
                                              associations=["deals"])
    assert [c.id for c in page.results] == ["101", "102"] and page.paging.next.after
    assert page.results[0].associations["deals"].results[0].id == "9001"
    assert_lossless(page, sandbox, objects)
    rest = sdk.crm.objects.basic_api.get_page("companies", limit=2, after=page.paging.next.after)
    assert [c.id for c in rest.results] == ["103"] and rest.paging is None
    assert_lossless(rest, sandbox, objects)


def test_get_create_and_update(sdk: hubspot.HubSpot, sandbox: HubSpotSandbox) -> None:
    deal = sdk.crm.objects.basic_api.get_by_id("deals", "9001", properties=["dealname", "deal_currency_code"],
                                               associations=["companies", "line_items"])
    assert deal.properties["deal_currency_code"] == "USD"
    assert sorted(a.id for a in deal.associations["line_items"].results) == ["5001", "5002"]
    assert_lossless(deal, sandbox, objects)
    created = sdk.crm.objects.basic_api.create("companies", objects.SimplePublicObjectInputForCreate(
        properties={"name": "Umbrella"}, associations=[]))
    assert_lossless(created, sandbox, objects, status=201)
    updated = sdk.crm.objects.basic_api.update("companies", created.id, objects.SimplePublicObjectInput(
        properties={"domain": "umbrella.example"}))
    assert updated.properties["domain"] == "umbrella.example" and updated.updated_at >= created.updated_at
    assert_lossless(updated, sandbox, objects)


def test_search_pages_and_filters(sdk: hubspot.HubSpot, sandbox: HubSpotSandbox) -> None:
    request = objects.PublicObjectSearchRequest(
        filter_groups=[objects.FilterGroup(filters=[
            objects.Filter(property_name="dealstage", operator="IN", values=["closedwon"]),
            objects.Filter(property_name="hs_lastmodifieddate", operator="GTE", value="1767225600000")])],
        sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}], properties=["dealname"], limit=2)
    found = sdk.crm.objects.search_api.do_search("deals", public_object_search_request=request)
    assert (found.total, [d.id for d in found.results], found.paging.next.after) == (3, ["9004", "9002"], "2")
    assert_lossless(found, sandbox, objects)


def test_batch_read_with_a_missing_id_and_batch_update(sdk: hubspot.HubSpot, sandbox: HubSpotSandbox) -> None:
    read = sdk.crm.objects.batch_api.read("line_items", objects.BatchReadInputSimplePublicObjectId(
        inputs=[objects.SimplePublicObjectId(id=i) for i in ("5001", "404404")], properties=["price"],
        properties_with_history=[]))
    assert [r.id for r in read.results] == ["5001"] and read.num_errors == 1
    assert_lossless(read, sandbox, objects, status=207)
    done = sdk.crm.objects.batch_api.update("companies", objects.BatchInputSimplePublicObjectBatchInput(inputs=[
        objects.SimplePublicObjectBatchInput(id="101", properties={"subledger_last_invoice": "INV-7"})]))
    assert done.results[0].properties["subledger_last_invoice"] == "INV-7"
    assert_lossless(done, sandbox, objects)


def test_associations_v4(sdk: hubspot.HubSpot, sandbox: HubSpotSandbox) -> None:
    listed = sdk.crm.associations.v4.basic_api.get_page("deals", "9001", "line_items", limit=1)
    assert listed.results[0].to_object_id == "5001" and listed.paging.next.after
    assert_lossless(listed, sandbox, v4)
    request = v4.BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[v4.PublicFetchAssociationsBatchRequest(id=i) for i in ("9001", "9002", "123")])
    batch = sdk.crm.associations.v4.batch_api.get_page("deals", "companies", request)
    assert {r._from.id: [t.to_object_id for t in r.to] for r in batch.results} == {"9001": ["101"], "9002": ["102"]}
    assert_lossless(batch, sandbox, v4, status=207)
    made = sdk.crm.associations.v4.basic_api.create_default("deals", "9003", "line_items", "5004")
    assert_lossless(made, sandbox, v4)
    assert sandbox.associations[("line_items", "5004")]["deals"] == ["9004", "9003"]


def test_errors_are_hubspot_error_documents(sdk: hubspot.HubSpot, sandbox: HubSpotSandbox) -> None:
    with pytest.raises(ApiException) as raised:
        sdk.crm.objects.basic_api.get_by_id("deals", "404404")
    assert raised.value.status == 404
    error = objects.ApiClient()._ApiClient__deserialize(json.loads(raised.value.body), "Error")
    assert error.category == "OBJECT_NOT_FOUND" and error.correlation_id and error.message
    past_the_cap = objects.PublicObjectSearchRequest(limit=2, after="9999")
    with pytest.raises(ApiException) as capped:
        sdk.crm.objects.search_api.do_search("deals", public_object_search_request=past_the_cap)
    assert capped.value.status == 400 and "limited to 10000" in capped.value.body
    host = sdk.crm.objects.basic_api.api_client.configuration.host
    bad = hubspot.HubSpot(access_token="pat-na1-wrong-0000", host=host)
    with pytest.raises(ApiException) as refused:
        bad.crm.objects.basic_api.get_page("companies")
    assert refused.value.status == 401 and "INVALID_AUTHENTICATION" in refused.value.body


def test_rate_limit_headers_on_every_answer_and_a_429_past_the_limit(sdk: hubspot.HubSpot,
                                                                     sandbox: HubSpotSandbox) -> None:
    sandbox.rate_limit = 2
    sandbox.clock.freeze(1767225600)
    sdk.crm.objects.basic_api.get_page("companies", limit=1)
    headers = sandbox.exchanges[-1].response.headers
    assert (headers["X-HubSpot-RateLimit-Max"], headers["X-HubSpot-RateLimit-Remaining"]) == ("2", "1")
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    sdk.crm.objects.basic_api.get_page("companies", limit=1)
    with pytest.raises(ApiException) as raised:
        sdk.crm.objects.basic_api.get_page("companies", limit=1)
    assert raised.value.status == 429 and raised.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert json.loads(raised.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"
    sandbox.clock.advance(10)
    assert sdk.crm.objects.basic_api.get_page("companies", limit=1).results


def test_a_yaml_fixture_seeds_the_sandbox_as_documented(tmp_path: Any) -> None:
    from subledger.core.sandbox import SandboxServer
    from subledger.plugins.hubspot.config import HubSpotConfig
    from subledger.plugins.hubspot.connector import HubSpotConnector
    from subledger.plugins.hubspot.sandbox import DEFAULT_TOKEN

    seed = tmp_path / "portal.yaml"
    seed.write_text(
        'companies:\n  - {id: 101, properties: {name: Acme Inc., domain: acme.example}}\n'
        'deals:\n  - id: 9001\n    associations: {companies: [101]}\n'
        '    properties: {dealname: Acme 2026, dealstage: closedwon, deal_currency_code: USD,\n'
        '                 subledger_term_start: 2026-01-01, subledger_billing_interval: monthly}\n'
        'line_items:\n  - {id: 5002, associations: {deals: [9001]}, properties: {subledger_meter: api_calls,\n'
        '     subledger_included_units: 10000, subledger_overage_rate: "0.02"}}\n')
    with SandboxServer(HubSpotSandbox(fixture=seed)) as server:
        connector = HubSpotConnector(HubSpotConfig(access_token=DEFAULT_TOKEN, base_url=server.url))
        [contract] = [r for r in connector.read("contracts", None) if type(r).__name__ == "Contract"]
    assert (contract.external_id, contract.customer_external_id, str(contract.start_date)) == (
        "9001", "101", "2026-01-01")


def test_a_bad_fixture_entry_names_its_kind_and_index() -> None:
    with pytest.raises(ValueError, match=r"fixture deals\[0\]: .*read-only"):
        HubSpotSandbox(fixture={"deals": [{"properties": {"hs_object_id": "1"}}]})
