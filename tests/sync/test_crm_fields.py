"""crm_usage_fields: usage to date and overage land in the CRM once, and never over a CRM edit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.model import Action, Connection
from subledger.core.secrets import config_for_storage, load_config
from subledger.core.terms import load_terms, terms_to_document
from subledger.sync.apply import apply_actions
from subledger.sync.engine import reconcile
from subledger.sync.pull import pull
from subledger.sync.rules.crm_fields import CrmUsageFieldsRule
from subledger.sync.settings import AutoApproval, SyncSettings
from subledger.testing.memory import (
    DEFAULT_API_KEY,
    MemoryConfig,
    MemoryStore,
    memory_connector,
    memory_store,
    reset_memory_stores,
)

NOW = datetime(2026, 3, 20, tzinfo=UTC)
SETTINGS = SyncSettings(auto_approve=[AutoApproval(rule="crm_usage_fields")])
TERMS = terms_to_document(
    load_terms(
        {
            "currency": "USD",
            "start_date": "2026-01-01",
            "billing": {"interval": "month"},
            "components": [
                {
                    "type": "usage",
                    "id": "api",
                    "meter": "api_calls",
                    "allotment": {"quantity": 1000},
                    "price": {"model": "per_unit", "unit_price": "0.01"},
                }
            ],
        }
    )
)


@pytest.fixture
def crm(engine: Engine) -> Iterator[MemoryStore]:
    reset_memory_stores()
    with memory_connector():
        store = memory_store("crm")
        store.put("customers", "acme", name="Acme")
        store.put(
            "contracts",
            "k1",
            customer_external_id="acme",
            currency="USD",
            start_date=date(2026, 1, 1),
            status="active",
            terms=TERMS,
        )
        for n, qty in enumerate((700, 800)):
            store.put(
                "usage_events",
                f"e{n}",
                customer_external_id="acme",
                meter="api_calls",
                quantity=str(qty),
                occurred_at=f"2026-03-0{n + 1}T00:00:00+00:00",
                properties={},
            )
        config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "crm"})
        with Session(engine) as s, s.begin():
            s.add(Connection(name="mem", plugin="memory", config=config_for_storage(config)))
        yield store
    reset_memory_stores()


def cycle(engine: Engine) -> None:
    pull(engine, "mem")
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[CrmUsageFieldsRule()])
    apply_actions(engine, actor="t")


def test_usage_and_overage_to_date_are_written_once(engine: Engine, crm: MemoryStore) -> None:
    # March so far: 1,500 calls, 500 over the 1,000 included at $0.01 = $5.00.
    cycle(engine)
    acme = crm.get("customers", "acme")
    assert (acme["usage_to_date"], acme["overage_to_date"], acme["open_findings"]) == ("api_calls: 1500", "5.00", "0")
    cycle(engine)  # the CRM now shows the figures: nothing more to write
    with Session(engine) as s:
        assert [a.status for a in s.exec(select(Action))] == ["done"]


def test_a_crm_edit_since_the_last_read_is_a_conflict_not_an_overwrite(engine: Engine, crm: MemoryStore) -> None:
    pull(engine, "mem")
    reconcile(engine, settings=SETTINGS, actor="t", now=NOW, rules=[CrmUsageFieldsRule()])
    crm.update("customers", "acme", usage_to_date="typed by a person")
    report = apply_actions(engine, actor="t")
    assert len(report.conflicts) == 1
    assert crm.get("customers", "acme")["usage_to_date"] == "typed by a person"
