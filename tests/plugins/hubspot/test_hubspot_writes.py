"""Write-back: usage figures land on the mapped company properties once, through the batch API,
and a value someone changed in HubSpot since subledger read it is never overwritten."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from subledger.core.connector import WriteAction, WriteConflict
from subledger.core.errors import ConfigError
from subledger.plugins.hubspot.connector import HubSpotConnector
from subledger.plugins.hubspot.sandbox import HubSpotSandbox

Connect = Callable[..., HubSpotConnector]
FIGURES = {"usage_to_date": "api_calls: 12000", "overage_to_date": "40.00", "last_invoice": "INV-0042",
           "open_findings": "1"}


def update(payload: dict[str, str], base: dict[str, str | None] | None = None) -> WriteAction:
    return WriteAction("update_customer_fields", "crm_usage_fields:hubspot:101", payload, target_external_id="101",
                       base_version=base if base is not None else dict.fromkeys(payload))


def writes(sandbox: HubSpotSandbox) -> list[dict]:
    return [e.request.json for e in sandbox.exchanges if e.request.path.endswith("/companies/batch/update")]


def test_the_four_figures_are_written_in_one_batch_request_and_read_back(connect: Connect,
                                                                        sandbox: HubSpotSandbox) -> None:
    result = connect().write(update(FIGURES))
    assert result.created and result.external_id == "101" and result.record == FIGURES
    assert writes(sandbox) == [{"inputs": [{"id": "101", "properties": {
        "subledger_usage_to_date": "api_calls: 12000", "subledger_overage_to_date": "40.00",
        "subledger_last_invoice": "INV-0042", "subledger_open_findings": "1"}}]}]
    customer = next(r for r in connect().read("customers", None) if getattr(r, "external_id", "") == "101")
    assert {k: customer.attributes[k] for k in FIGURES} == FIGURES


def test_a_replay_finds_the_write_done_and_writes_nothing(connect: Connect, sandbox: HubSpotSandbox) -> None:
    action = update(FIGURES)
    assert connect().find(action) is None
    connect().write(action)
    assert connect().find(action).record == FIGURES
    again = connect().write(action)
    assert not again.created and len(writes(sandbox)) == 1


def test_a_value_changed_in_hubspot_is_a_conflict(connect: Connect, sandbox: HubSpotSandbox) -> None:
    sandbox.store.get("companies", "101")["properties"]["subledger_usage_to_date"] = "typed by a person"
    with pytest.raises(WriteConflict, match=r"usage_to_date .*'typed by a person'"):
        connect().write(update(FIGURES))
    assert writes(sandbox) == []


def test_an_empty_property_matches_a_baseline_of_nothing(connect: Connect, sandbox: HubSpotSandbox) -> None:
    sandbox.store.get("companies", "101")["properties"]["subledger_last_invoice"] = ""
    assert connect().write(update({"last_invoice": "INV-1"}, {"last_invoice": None})).created


def test_a_field_without_a_mapped_property_is_refused(connect: Connect) -> None:
    with pytest.raises(ConfigError, match="no HubSpot property is mapped for mrr"):
        connect().write(update({"mrr": "100"}))


def test_the_mapping_names_the_properties_written(connect: Connect, sandbox: HubSpotSandbox) -> None:
    connector = connect(mapping={"write_back": {"usage_to_date": "usage_this_month"}})
    connector.write(update({"usage_to_date": "api_calls: 5"}))
    assert sandbox.store.get("companies", "101")["properties"]["usage_this_month"] == "api_calls: 5"


def test_figures_are_mirrored_on_the_closed_won_deals_in_one_batch(connect: Connect, sandbox: HubSpotSandbox) -> None:
    sandbox.associate("companies", "101", "deals", "9003")  # an open deal: left alone
    connector = connect(mapping={"deal_write_back": {"usage_to_date": "usage_so_far"}})
    connector.write(update(FIGURES))
    deal_writes = [e.request.json for e in sandbox.exchanges if e.request.path.endswith("/deals/batch/update")]
    assert deal_writes == [{"inputs": [{"id": "9001", "properties": {"usage_so_far": "api_calls: 12000"}}]}]
    assert sandbox.store.get("deals", "9003")["properties"].get("usage_so_far") is None
    assert not connector.write(update(FIGURES)).created  # a replay touches neither companies nor deals
    assert len([e for e in sandbox.exchanges if e.request.path.endswith("/batch/update")]) == 2
