"""Reading HubSpot: companies -> customers, closed-won deals -> contracts with exact terms, rejects that
name the record and the property, incremental search past the 10,000-result cap, and rate limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hubspot_testkit import MINUTE, T0

from subledger.core.connector import Checkpoint, Rejected
from subledger.core.errors import ConfigError, TransientError
from subledger.core.http import use_retry_policy
from subledger.core.model import Contract, Customer
from subledger.core.sandbox import Fault
from subledger.core.terms import load_terms
from subledger.plugins.hubspot.client import rate_limit_wait
from subledger.plugins.hubspot.connector import HubSpotConnector
from subledger.plugins.hubspot.sandbox import HubSpotSandbox
from subledger.testing import FakeClock

Connect = Callable[..., HubSpotConnector]


def records(items: list[Any], kind: type) -> dict[str, Any]:
    return {r.external_id: r for r in items if isinstance(r, kind)}


def test_companies_become_customers_with_their_link_and_write_back_fields(connect: Connect,
                                                                         sandbox: HubSpotSandbox) -> None:
    sandbox.store.get("companies", "101")["properties"]["subledger_overage_to_date"] = "12.50"
    customers = records(list(connect().read("customers", None)), Customer)
    acme, globex = customers["101"], customers["102"]
    assert (acme.name, acme.email_domain, acme.canonical_hint) == ("Acme Inc.", "acme.example", "acme")
    assert (globex.email_domain, globex.canonical_hint) == ("globex.example", None)
    assert acme.attributes["overage_to_date"] == "12.50" and acme.attributes["usage_to_date"] is None


def test_a_closed_won_deal_becomes_a_contract_with_exact_terms(connect: Connect) -> None:
    items = list(connect().read("contracts", None))
    contracts = records(items, Contract)
    assert sorted(contracts) == ["9001", "9002"]  # 9003 is not closed won; 9004 is rejected
    acme = contracts["9001"]
    assert (acme.customer_external_id, acme.currency, str(acme.start_date), str(acme.end_date)) == (
        "101", "USD", "2026-01-01", "2026-12-31")
    terms = load_terms(acme.terms)
    fee, api = terms.components
    assert (fee.type, fee.amount, fee.quantity) == ("flat_fee", 1000, 1)
    assert (api.meter, api.allotment.quantity, str(api.price.unit_price)) == ("api_calls", 10000, "0.02")
    globex = load_terms(contracts["9002"].terms)
    [storage] = globex.components  # its meter and tiers come from product 701
    assert storage.meter == "storage_gb" and storage.price.model == "graduated"
    assert [(t.up_to, str(t.unit_price)) for t in storage.price.tiers] == [(100, "0"), (1000, "0.10"), (None, "0.05")]
    assert (globex.currency, globex.billing.interval, str(globex.commitments[0].amount)) == ("EUR", "quarter", "500.00")


def test_terms_the_mapping_cannot_read_are_rejected_naming_record_and_property(
    connect: Connect, sandbox: HubSpotSandbox
) -> None:
    sandbox.store.get("deals", "9002")["properties"]["deal_currency_code"] = None
    rejects = [r for r in connect().read("contracts", None) if isinstance(r, Rejected)]
    by_field = {r.field: r for r in rejects}
    assert set(by_field) == {"subledger_tiers", "deal_currency_code"}
    tiers = by_field["subledger_tiers"]
    assert tiers.location == "HubSpot line_item 5004" and "deal 9004" in tiers.reason
    assert "'1000-0.02'" in tiers.reason and "up_to:unit_price" in tiers.fix
    currency = by_field["deal_currency_code"]
    assert currency.location == "HubSpot deal 9002" and "never assumes" in currency.fix


def test_a_deal_without_a_company_is_rejected(connect: Connect, sandbox: HubSpotSandbox) -> None:
    sandbox.associations[("deals", "9001")]["companies"] = []
    [reject] = [r for r in connect().read("contracts", None) if isinstance(r, Rejected) and r.raw == "9001"]
    assert "no company" in reject.reason and reject.field == "associations.companies"


def test_incremental_search_pages_past_the_result_cap_without_losing_or_repeating(
    connect: Connect, sandbox: HubSpotSandbox
) -> None:
    # 12 more companies, three sharing each minute; the search may page through 4 results only.
    for n in range(12):
        sandbox.new_object("companies", {"name": f"Co {n}"}, modified_ms=T0 + (10 + n // 3) * MINUTE)
    sandbox.search_cap = 4
    connector = connect(page_size=2, search_result_cap=4)
    items = list(connector.read("customers", None))
    ids = [r.external_id for r in items if isinstance(r, Customer)]
    assert len(ids) == len(set(ids)) == 15
    searches = [e for e in sandbox.exchanges if e.request.path.endswith("/search")]
    lower_bounds = {e.request.json["filterGroups"][0]["filters"][0]["value"] for e in searches}
    assert len(lower_bounds) > 1  # it searched again from a later lower bound
    assert all(int(e.request.json.get("after") or 0) + 2 <= 4 for e in searches)
    state = [i for i in items if isinstance(i, Checkpoint)][-1].state
    assert [r for r in connector.read("customers", state) if not isinstance(r, Checkpoint)] == []
    sandbox.new_object("companies", {"name": "Late Co"}, modified_ms=T0 + 13 * MINUTE)  # same ms as the cursor
    again = [r.name for r in connector.read("customers", state) if isinstance(r, Customer)]
    assert again == ["Late Co"]


def test_a_429_waits_for_the_rate_limit_window_hubspot_names(connect: Connect, sandbox: HubSpotSandbox) -> None:
    sandbox.faults.add(Fault(kind="rate_limit", retry_after=None, path="/crm/v3/objects/companies/search",
                             headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}))
    clock = FakeClock()
    with use_retry_policy(clock.policy()):
        customers = records(list(connect().read("customers", None)), Customer)
    assert len(customers) == 3 and clock.sleeps == [10.0]


def test_rate_limit_waits() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 3, 20, 18, 0, tzinfo=UTC)
    assert rate_limit_wait({"Retry-After": "3"}, "", now=now) == 3
    assert rate_limit_wait({"X-HubSpot-RateLimit-Interval-Milliseconds": "1000"}, "{}", now=now) == 1
    daily = rate_limit_wait({}, '{"policyName": "DAILY"}', now=now)
    assert daily == 6 * 3600  # until midnight UTC: longer than a sync sleeps, so the scheduler returns
    assert rate_limit_wait({}, "", now=now) is None


def test_a_daily_limit_is_not_slept_in_process(connect: Connect, sandbox: HubSpotSandbox) -> None:
    sandbox.faults.add(Fault(kind="rate_limit", retry_after=None, times=1,
                             headers={"X-HubSpot-RateLimit-Daily-Remaining": "0"}))
    with use_retry_policy(FakeClock().policy()), pytest.raises(TransientError) as raised:
        list(connect().read("customers", None))
    assert raised.value.retry_after and raised.value.retry_after > 300


def test_a_mapping_file_overrides_the_defaults(connect: Connect, sandbox: HubSpotSandbox, tmp_path: Path) -> None:
    sandbox.store.get("line_items", "5002")["properties"]["api_overage"] = "0.03"
    path = tmp_path / "hubspot-mapping.yaml"
    path.write_text("line_item:\n  overage_rate: api_overage\ncompany:\n  canonical_id: null\n")
    connector = connect(mapping_file=str(path))
    acme = records(list(connector.read("contracts", None)), Contract)["9001"]
    assert load_terms(acme.terms).components[1].price.unit_price == load_terms(
        {"currency": "USD", "start_date": "2026-01-01", "components": [
            {"type": "usage", "id": "x", "meter": "m", "price": {"model": "per_unit", "unit_price": "0.03"}}]}
    ).components[0].price.unit_price
    assert records(list(connector.read("customers", None)), Customer)["101"].canonical_hint is None


def test_a_bad_mapping_is_a_config_error_naming_the_key(connect: Connect, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("deal:\n  minimum_per: fortnight\n  colsed_won_stages: [won]\n")
    with pytest.raises(ConfigError) as raised:
        connect(mapping_file=str(path))
    assert "deal.minimum_per" in str(raised.value) and "deal.colsed_won_stages" in str(raised.value)
    with pytest.raises(ConfigError, match="does not exist"):
        connect(mapping_file=str(tmp_path / "missing.yaml"))


def test_when_no_request_is_left_in_the_window_the_next_call_waits_for_it(
    connect: Connect, sandbox: HubSpotSandbox
) -> None:
    """Two requests per ten seconds: the connector reads X-HubSpot-RateLimit-Remaining: 0 and
    waits the window out instead of drawing a 429."""
    sandbox.rate_limit = 2
    sandbox.clock.freeze(T0 / 1000)
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        sandbox.clock.advance(seconds)

    with use_retry_policy(clock.policy(sleep=sleep)):
        items = list(connect(page_size=1).read("customers", None))
    assert len(records(items, Customer)) == 3
    assert all(e.response.status == 200 for e in sandbox.exchanges)
    assert clock.sleeps == [10.0]  # 3 searches: the second answer said 0 left


def test_the_documented_default_mapping_is_the_default() -> None:
    import yaml

    from subledger.plugins.hubspot.mapping import DEFAULT_MAPPING_YAML, HubSpotMapping, load_mapping

    assert load_mapping(yaml.safe_load(DEFAULT_MAPPING_YAML)) == HubSpotMapping() == load_mapping()


def test_a_line_item_edit_alone_brings_its_deal_back_on_the_next_read(connect: Connect,
                                                                     sandbox: HubSpotSandbox) -> None:
    """HubSpot does not move a deal's hs_lastmodifieddate when a line item changes; the terms do."""
    connector = connect()
    state = [i for i in connector.read("contracts", None) if isinstance(i, Checkpoint)][-1].state
    assert [r for r in connector.read("contracts", state) if not isinstance(r, Checkpoint)] == []
    sandbox.modify("line_items", "5002", {"subledger_overage_rate": "0.025"})
    sandbox.modify("line_items", "5003", {"name": "Storage (renamed)"})
    changed = records(list(connector.read("contracts", state)), Contract)
    assert sorted(changed) == ["9001", "9002"]
    assert str(load_terms(changed["9001"].terms).components[1].price.unit_price) == "0.025"


def test_a_change_hubspot_indexed_late_is_still_read_within_the_lookback(connect: Connect,
                                                                        sandbox: HubSpotSandbox) -> None:
    """Search shows a change a little after it happened: a company modified 30 s before the cursor
    but indexed only after the last read is read next time; what was read is not read again."""
    connector = connect(lookback_seconds=120)
    state = [i for i in connector.read("customers", None) if isinstance(i, Checkpoint)][-1].state
    assert state["modified_since"].startswith("2026-01-01T00:02:00")
    sandbox.new_object("companies", {"name": "Late Indexed"}, modified_ms=T0 + 2 * MINUTE - 30_000)
    sandbox.new_object("companies", {"name": "Too Late"}, modified_ms=T0 - 3 * MINUTE)
    again = [r.name for r in connector.read("customers", state) if isinstance(r, Customer)]
    assert again == ["Late Indexed"]


def test_a_deal_moved_out_of_closed_won_comes_back_as_a_draft(connect: Connect, sandbox: HubSpotSandbox) -> None:
    connector = connect()
    state = [i for i in connector.read("contracts", None) if isinstance(i, Checkpoint)][-1].state
    sandbox.modify("deals", "9001", {"dealstage": "contractsent"})
    sandbox.modify("deals", "9003", {"dealname": "Initech pilot, renamed"})  # no terms: not a contract at all
    changed = list(connector.read("contracts", state))
    assert [(c.external_id, c.status) for c in changed if isinstance(c, Contract)] == [("9001", "draft")]
    assert not [r for r in changed if isinstance(r, Rejected)]


def test_check_names_the_missing_scope(server: Any) -> None:
    from subledger.plugins.hubspot.config import HubSpotConfig

    sandbox = server.sandbox
    sandbox.tokens["pat-na1-companies-only-2222"] = {"crm.objects.companies.read"}
    connector = HubSpotConnector(HubSpotConfig(access_token="pat-na1-companies-only-2222", base_url=server.url))
    result = connector.check()
    assert not result.ok
    assert "HTTP 403" in result.message and "crm.objects.deals.read" in result.message
    assert "docs/connectors/hubspot.md" in result.message
