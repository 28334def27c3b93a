"""The in-memory test connector the engine's tests drive: reads, writes, idempotency, faults
and simulated crashes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from subledger.core.connector import Checkpoint, UsageCoverage, UsageEventIn, WriteAction, WriteConflict
from subledger.core.errors import ConfigError, FailureKind
from subledger.core.model import Customer, Invoice, InvoiceLine, record_id
from subledger.core.plugins import get_connector_class, plugin_report
from subledger.testing import FakeClock, Fault
from subledger.testing.memory import (
    DEFAULT_API_KEY,
    MemoryConfig,
    MemoryConnector,
    MemoryStore,
    SimulatedCrash,
)


def connect(name: str = "default", **config: object) -> MemoryConnector:
    return MemoryConnector(MemoryConfig(api_key=DEFAULT_API_KEY, store=name, **config), connection="mem")


def records(items: list[object]) -> list[object]:
    return [i for i in items if not isinstance(i, Checkpoint | UsageCoverage)]


def test_the_fixture_registers_the_connector_for_the_test_only(memory_store: MemoryStore) -> None:
    assert get_connector_class("memory") is MemoryConnector
    owner = next(i for i in plugin_report() if "memory" in i.connectors)
    assert owner.distribution is None  # registered in code, not an installed entry point


def test_a_full_read_maps_the_store_to_canonical_records(memory_store: MemoryStore) -> None:
    memory_store.seed_example()

    customers = records(list(connect().read("customers", None)))
    invoices = records(list(connect().read("invoices", None)))
    usage = records(list(connect().read("usage_events", None)))

    assert [c.external_id for c in customers] == ["cus_acme", "cus_globex", "cus_initech"]
    acme = customers[0]
    assert isinstance(acme, Customer)
    assert (acme.id, acme.system, acme.name) == (record_id("cus", "mem", "cus_acme"), "mem", "Acme Corp")
    assert [type(r) for r in invoices[:2]] == [Invoice, InvoiceLine]
    assert invoices[1].invoice_id == invoices[0].id and invoices[1].unit_price == Decimal("0.002")
    assert isinstance(usage[0], UsageEventIn)
    assert (usage[0].quantity, usage[0].occurred_at) == (Decimal("10"), datetime(2024, 1, 1, 12, tzinfo=UTC))


def test_reads_page_and_checkpoint_after_every_page(memory_store: MemoryStore) -> None:
    memory_store.seed_example()

    items = list(connect(page_size=2).read("customers", None))

    assert [type(i).__name__ for i in items] == ["Customer", "Customer", "Checkpoint", "Customer", "Checkpoint"]
    assert items[-1].state == {"updated_at": "2024-01-01T00:00:03+00:00"}


def test_an_incremental_read_returns_only_what_changed_since_the_checkpoint(memory_store: MemoryStore) -> None:
    memory_store.seed_example()
    state = list(connect().read("customers", None))[-1].state

    memory_store.put("customers", "cus_hooli", name="Hooli", currency="USD")
    memory_store.update("customers", "cus_acme", email="ap@acme.example")
    changed = records(list(connect().read("customers", state)))

    assert [(c.external_id, c.email) for c in changed] == [("cus_hooli", None), ("cus_acme", "ap@acme.example")]


def test_a_429_is_retried_after_its_retry_after_on_the_fake_clock(
    memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    memory_store.seed_example()
    fault = memory_store.inject(Fault(status=429, retry_after="3", operations=frozenset({"read"})))

    customers = records(list(connect().read("customers", None)))

    assert len(customers) == 3
    assert fault.served == 1 and fake_clock.sleeps == [3.0]
    assert memory_store.requests[:3] == ["read", "read", "read"]


def test_a_wrong_api_key_is_a_config_error_that_hides_the_key(memory_store: MemoryStore) -> None:
    wrong = MemoryConnector(MemoryConfig(api_key="mem_wrong_key_0000"), connection="mem")

    with pytest.raises(ConfigError) as raised:
        list(wrong.read("customers", None))

    assert raised.value.kind is FailureKind.CONFIG
    assert "HTTP 401 Unauthorized: Invalid API key provided" in str(raised.value)
    assert "mem_wrong_key_0000" not in str(raised.value)
    assert not wrong.check().ok


def test_writes_honour_idempotency_keys_across_connector_instances(memory_store: MemoryStore) -> None:
    action = WriteAction("create_invoice", "inv-cus_acme-2024-03", {"customer_external_id": "cus_acme",
                                                                   "currency": "USD", "total_minor": 4200})

    first = connect().write(action)
    again = connect().write(action)

    assert (first.external_id, first.created) == ("in_mem_0001", True)
    assert (again.external_id, again.created) == ("in_mem_0001", False)
    assert len(memory_store.records("invoices")) == 1
    assert connect().find(action).external_id == "in_mem_0001"


def test_a_crash_after_the_write_leaves_it_findable_for_the_retry(memory_store: MemoryStore) -> None:
    action = WriteAction("create_customer", "cus-newco", {"name": "Newco", "currency": "EUR"})
    memory_store.inject(Fault(crash=True, operations=frozenset({"write"})))

    with pytest.raises(SimulatedCrash):
        connect().write(action)

    found = connect().find(action)
    assert found is not None and found.record["name"] == "Newco"
    assert connect().write(action).created is False
    assert len(memory_store.records("customers")) == 1


def test_a_simulated_crash_is_not_an_exception_ordinary_handlers_catch() -> None:
    assert not issubclass(SimulatedCrash, Exception)


def test_a_crash_mid_read_resumes_from_the_last_checkpoint(memory_store: MemoryStore) -> None:
    memory_store.seed_example()
    memory_store.inject(Fault(crash=True, operations=frozenset({"read"}), skip=1))
    seen: list[object] = []

    with pytest.raises(SimulatedCrash):
        for item in connect(page_size=2).read("usage_events", None):
            seen.append(item)

    assert [type(i).__name__ for i in seen] == ["UsageEventIn", "UsageEventIn", "Checkpoint"]
    rest = records(list(connect(page_size=2).read("usage_events", seen[-1].state)))
    assert [e.event_id for e in rest] == ["evt_3", "evt_4", "evt_5"]


def test_an_update_against_a_stale_base_version_is_a_conflict_and_writes_nothing(memory_store: MemoryStore) -> None:
    memory_store.seed_example()
    stale = WriteAction("update_customer_fields", "upd-1", {"name": "Acme Inc"},
                        target_external_id="cus_acme", base_version={"name": "Acme Corporation"})

    with pytest.raises(WriteConflict, match=r"customer cus_acme changed since it was read \(name differ"):
        connect().write(stale)

    assert memory_store.get("customers", "cus_acme")["name"] == "Acme Corp"
    assert connect().find(stale) is None


def test_an_update_with_the_current_base_version_applies(memory_store: MemoryStore) -> None:
    memory_store.seed_example()
    update = WriteAction("update_customer_fields", "upd-2", {"name": "Acme Inc"},
                         target_external_id="cus_acme", base_version={"name": "Acme Corp"})

    result = connect().write(update)

    assert (result.external_id, result.created, result.record["name"]) == ("cus_acme", True, "Acme Inc")


def test_a_write_kind_it_does_not_support_is_a_config_error(memory_store: MemoryStore) -> None:
    with pytest.raises(ConfigError, match="connector 'memory' cannot 'void_invoice'"):
        connect().write(WriteAction("void_invoice", "k", {}))


def test_an_unknown_store_is_refused_by_check(memory_store: MemoryStore) -> None:
    result = connect("nowhere").check()
    assert not result.ok and "no in-memory store named 'nowhere'" in result.message


def test_the_usage_stream_covers_every_meter_from_2000_to_the_read_before_its_last_checkpoint(
    memory_store: MemoryStore,
) -> None:
    memory_store.seed_example()  # 5 api_calls events, 2024-01-01..05
    before = datetime.now(UTC)

    items = list(connect(page_size=2).read("usage_events", None))

    assert [type(i).__name__ for i in items] == [
        "UsageEventIn", "UsageEventIn", "Checkpoint", "UsageEventIn", "UsageEventIn", "Checkpoint",
        "UsageEventIn", "UsageCoverage", "Checkpoint"]
    window = items[-2]
    assert (window.start, window.meter) == (datetime(2000, 1, 1, tzinfo=UTC), None)  # None: every meter
    assert before <= window.end <= datetime.now(UTC)
    # A read with nothing new still vouches for everything the store holds; other streams say nothing.
    again = list(connect().read("usage_events", items[-1].state))
    assert [type(i).__name__ for i in again] == ["UsageCoverage", "Checkpoint"]
    assert not any(isinstance(i, UsageCoverage) for i in connect().read("invoices", None))


def test_create_invoice_keeps_the_contract_it_corrects_and_reads_back_as_written(memory_store: MemoryStore) -> None:
    memory_store.seed_example()
    correction = WriteAction("create_invoice", "sl_unbilled_acme_2024_03", {
        "customer_external_id": "cus_acme", "contract_external_id": "con_acme_2024", "currency": "USD",
        "status": "open", "subtotal_minor": 7902, "total_minor": 7902, "amount_due_minor": 7902,
        "period_start": "2024-03-01", "period_end": "2024-03-31",
        "metadata": {"subledger_finding": "fnd_1"},
        "lines": [{"line_key": "1", "kind": "usage", "description": "usage:api_calls 2024-03 (correction)",
                   "component": "api_calls", "meter": "api_calls", "quantity": "39510", "amount_minor": 7902,
                   "currency": "USD", "service_start": "2024-03-01", "service_end": "2024-03-31"}],
    })

    written = connect().write(correction)
    read = records(list(connect().read("invoices", None)))
    at = next(n for n, r in enumerate(read) if getattr(r, "external_id", None) == written.external_id)
    invoice, line = read[at], read[at + 1]

    assert (invoice.contract_external_id, invoice.total_minor, invoice.period_start) == (
        "con_acme_2024", 7902, date(2024, 3, 1))
    assert invoice.attributes == {"metadata": {"subledger_finding": "fnd_1"}}
    assert (line.component, line.meter, line.kind, line.quantity, line.service_start, line.service_end) == (
        "api_calls", "api_calls", "usage", Decimal("39510"), date(2024, 3, 1), date(2024, 3, 31))
