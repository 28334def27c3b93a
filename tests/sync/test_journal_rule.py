"""journal_not_in_erp: each subledger journal entry reaches the ERP exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.connector import Capabilities, WriteAction, WriteResult
from subledger.core.model import Action, Connection, Finding, JournalEntry, JournalLine
from subledger.core.secrets import config_for_storage, load_config
from subledger.sync.apply import apply_actions
from subledger.sync.engine import reconcile
from subledger.sync.rules.journal import JournalNotInErpRule
from subledger.sync.settings import AutoApproval, SyncSettings
from subledger.testing.memory import (
    DEFAULT_API_KEY,
    MemoryConfig,
    MemoryConnector,
    memory_connector,
    memory_store,
    reset_memory_stores,
)

POSTED: dict[str, dict[str, Any]] = {}


# Connections whose data the tests put in the store by hand count as read completely.
READ = datetime(2000, 1, 1, tzinfo=UTC)

class LedgerConnector(MemoryConnector):
    """An ERP that takes journal entries, upserting by external id as NetSuite's eid does."""

    name: ClassVar[str] = "ledger"
    capabilities: ClassVar[Capabilities] = Capabilities(write=frozenset({"create_journal_entry"}))

    def write(self, action: WriteAction) -> WriteResult:
        created = action.payload["external_id"] not in POSTED
        POSTED[action.payload["external_id"]] = action.payload
        return WriteResult(action.payload["external_id"], created=created, record=action.payload)

    def find(self, action: WriteAction) -> WriteResult | None:
        found = POSTED.get(action.payload["external_id"])
        return WriteResult(found["external_id"], created=False, record=found) if found else None


SETTINGS = SyncSettings(roles={"erp": ["erp"]}, auto_approve=[AutoApproval(rule="journal_not_in_erp")])


@pytest.fixture
def erp(engine: Engine) -> Iterator[None]:
    POSTED.clear()
    reset_memory_stores()
    with memory_connector(LedgerConnector):
        memory_store("default")
        config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY})
        with Session(engine) as s, s.begin():
            s.add(Connection(name="erp", plugin="ledger", config=config_for_storage(config),
                             last_complete_pull_at=READ))
            for n, (debit, credit) in enumerate([("unbilled_receivable", "revenue"), ("ar", "deferred_revenue")]):
                s.add(
                    JournalEntry(
                        id=f"je{n}",
                        external_id=f"sl-je-{n}",
                        entry_date=date(2026, 1, 31),
                        period="2026-01",
                        currency="USD",
                        kind="recognition",
                    )
                )
                s.add(JournalLine(entry_id=f"je{n}", line_no=1, account=debit, debit_minor=5000, currency="USD"))
                s.add(JournalLine(entry_id=f"je{n}", line_no=2, account=credit, credit_minor=5000, currency="USD"))
        yield
    reset_memory_stores()


def test_every_entry_is_posted_once_and_the_findings_resolve(engine: Engine, erp: None) -> None:
    reconcile(engine, settings=SETTINGS, actor="t", rules=[JournalNotInErpRule()])
    with Session(engine) as s:
        assert sorted(f.amount_minor for f in s.exec(select(Finding))) == [5000, 5000]
    apply_actions(engine, actor="t")
    assert sorted(POSTED) == ["sl-je-0", "sl-je-1"]
    assert POSTED["sl-je-0"]["lines"][0] == {
        "line_no": 1,
        "account": "unbilled_receivable",
        "role": "",
        "product": None,
        "debit_minor": 5000,
        "credit_minor": 0,
        "currency": "USD",
        "customer_external_id": None,
        "contract_id": None,
        "memo": "",
    }
    report = reconcile(engine, settings=SETTINGS, actor="t", rules=[JournalNotInErpRule()])
    assert report.resolved == 2 and report.plan.planned == 0
    with Session(engine) as s:
        assert [a.status for a in s.exec(select(Action))] == ["done", "done"]
