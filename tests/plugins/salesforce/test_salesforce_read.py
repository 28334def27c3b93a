"""Reading an org: paging, incremental reads on SystemModstamp, Bulk API 2.0, rejects, the mapping file."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sf_testkit import ACME, ACME_CONTRACT, ACME_OPP, GLOBEX_OPP, INITECH_OPP, PLATFORM_PRODUCT

from subledger.core.connector import Checkpoint, Rejected, WriteAction
from subledger.core.errors import ConfigError
from subledger.core.model import Contract, Customer
from subledger.core.terms import load_terms
from subledger.plugins.salesforce.config import SalesforceConfig
from subledger.plugins.salesforce.connector import SalesforceConnector
from subledger.plugins.salesforce.sandbox import SalesforceSandbox
from subledger.testing import FakeClock


def read(connector: SalesforceConnector, stream: str, state: dict[str, Any] | None = None
         ) -> tuple[list[Any], dict[str, Any]]:
    items = list(connector.read(stream, state))
    checkpoints = [i for i in items if isinstance(i, Checkpoint)]
    return [i for i in items if not isinstance(i, Checkpoint)], checkpoints[-1].state


def paths(sandbox: SalesforceSandbox) -> list[str]:
    return [f"{ex.request.method} {ex.request.path}" for ex in sandbox.exchanges]


def test_a_full_read_pages_through_next_records_urls_and_rejects_the_unreadable_deal(
    connector: SalesforceConnector, sandbox: SalesforceSandbox
) -> None:
    items, state = read(connector, "contracts")
    contracts = {c.external_id: c for c in items if isinstance(c, Contract)}
    [rejected] = [r for r in items if isinstance(r, Rejected)]
    assert sorted(contracts) == [ACME_OPP, GLOBEX_OPP]  # the closed-lost upsell is not a contract
    assert (rejected.location, rejected.field) == (f"salesforce:Opportunity/{INITECH_OPP}",
                                                  "OpportunityLineItem.Pricing_Tiers__c")
    assert "not valid JSON" in rejected.reason and "JSON" in rejected.fix
    acme = contracts[ACME_OPP]
    assert (acme.customer_external_id, acme.status, str(acme.end_date)) == (ACME, "active", "2026-12-31")
    assert load_terms(acme.terms).components[0].price.unit_price == Decimal("0.02")
    assert any("/query/01g" in p for p in paths(sandbox)), "pages of 2 are read through nextRecordsUrl"
    assert "since" in state


def test_an_incremental_read_picks_up_changes_to_line_items_products_and_contracts_only(
    connector: SalesforceConnector, sandbox: SalesforceSandbox
) -> None:
    _, state = read(connector, "contracts")
    again, state = read(connector, "contracts", state)
    assert [i for i in again if isinstance(i, Contract)] == []  # nothing changed: nothing re-sent

    sandbox.modify("OpportunityLineItem", "00k5g00000ACM1AAA", {"Overage_Rate__c": "0.025"})
    changed, state = read(connector, "contracts", state)
    [acme] = [c for c in changed if isinstance(c, Contract)]
    assert acme.external_id == ACME_OPP
    assert load_terms(acme.terms).components[0].price.unit_price == Decimal("0.025")

    sandbox.modify("Contract", ACME_CONTRACT, {"Minimum_Commitment__c": "250.00"})
    changed, state = read(connector, "contracts", state)
    [acme] = [c for c in changed if isinstance(c, Contract)]
    assert load_terms(acme.terms).commitments[0].amount == Decimal("250.00")

    sandbox.modify("Product2", PLATFORM_PRODUCT, {"Name": "Platform (2026)"})
    changed, _ = read(connector, "contracts", state)
    assert [c.external_id for c in changed if isinstance(c, Contract)] == [ACME_OPP]


def test_a_large_read_runs_as_a_bulk_query_job_with_the_same_records(
    config: SalesforceConfig, sandbox: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    rest, _ = read(SalesforceConnector(config, connection="salesforce"), "contracts")
    sandbox.bulk_polls = 1  # the job is still InProgress at the first poll
    bulk_config = config.model_copy(update={"bulk_threshold": 3, "bulk_page_records": 2, "bulk_poll_seconds": 5})
    sandbox.exchanges.clear()
    bulk, _ = read(SalesforceConnector(bulk_config, connection="salesforce"), "contracts")
    assert [(c.external_id, c.terms_hash) for c in bulk if isinstance(c, Contract)] == [
        (c.external_id, c.terms_hash) for c in rest if isinstance(c, Contract)]
    done = paths(sandbox)
    assert any(p.endswith("/jobs/query") for p in done)
    assert sum(p.endswith("/results") for p in done) == 2  # 4 opportunities: two pages of 2 (Sforce-Locator)
    assert fake_clock.sleeps == [5]


def test_customers_carry_the_canonical_link_the_domain_and_the_write_back_fields(
    connector: SalesforceConnector, sandbox: SalesforceSandbox
) -> None:
    sandbox.modify("Account", ACME, {"Usage_To_Date__c": "api_calls: 900", "Open_Findings__c": "2"})
    items, _ = read(connector, "customers")
    acme = next(c for c in items if isinstance(c, Customer) and c.external_id == ACME)
    assert (acme.canonical_hint, acme.email_domain, acme.country, acme.currency) == ("acme", "acme.example", "US",
                                                                                     "USD")
    assert acme.attributes == {"usage_to_date": "api_calls: 900", "open_findings": "2"}


def test_write_back_can_go_to_the_accounts_activated_contract(
    config: SalesforceConfig, sandbox: SalesforceSandbox, tmp_path: Path
) -> None:
    mapping = tmp_path / "salesforce.yaml"
    mapping.write_text("write_back:\n  object: Contract\n")
    connector = SalesforceConnector(config.model_copy(update={"mapping": str(mapping)}), connection="salesforce")
    action = WriteAction("update_customer_fields", "k1", {"overage_to_date": "50.00"}, target_external_id=ACME,
                         base_version={"overage_to_date": None})
    result = connector.write(action)
    assert (result.external_id, result.created, result.record) == (ACME, True, {"overage_to_date": "50.00"})
    assert sandbox.store.get("Contract", ACME_CONTRACT)["Overage_To_Date__c"] == "50.00"
    assert sandbox.store.get("Account", ACME)["Overage_To_Date__c"] is None
    items, _ = read(connector, "customers")
    acme = next(c for c in items if isinstance(c, Customer) and c.external_id == ACME)
    assert acme.attributes == {"overage_to_date": "50.00"}
    assert connector.write(action).created is False


def test_a_mapped_field_the_org_lacks_fails_check_and_read_with_the_fix(
    config: SalesforceConfig, tmp_path: Path
) -> None:
    mapping = tmp_path / "salesforce.yaml"
    mapping.write_text("terms:\n  overage_rate: [OpportunityLineItem.Overage_Price__c]\n")
    connector = SalesforceConnector(config.model_copy(update={"mapping": str(mapping)}), connection="salesforce")
    result = connector.check()
    assert not result.ok
    assert result.details["missing_fields"] == ["OpportunityLineItem.Overage_Price__c"]
    with pytest.raises(ConfigError, match="INVALID_FIELD") as raised:
        list(connector.read("contracts", None))
    assert "create the field" in (raised.value.fix or "")
