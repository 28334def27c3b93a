"""The sync engine end to end on the in-memory connector: findings, plan/apply, exactly-once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.model import Action, AuditEntry, Connection, Finding, FindingEvent, SyncRun
from subledger.core.secrets import config_for_storage, load_config
from subledger.sync.apply import STEPS, apply_actions
from subledger.sync.engine import reconcile, sync
from subledger.sync.locks import LockHeld, held
from subledger.sync.plan import approve
from subledger.sync.rules.base import ActionDraft, Drift, Rule, RuleContext
from subledger.sync.rules.cash import UnappliedPaymentRule
from subledger.sync.settings import AutoApproval, SyncSettings
from subledger.testing.memory import (
    DEFAULT_API_KEY,
    MemoryConfig,
    MemoryConnector,
    MemoryStore,
    SimulatedCrash,
    memory_connector,
    memory_store,
    reset_memory_stores,
)

# Connections whose data the tests put in the store by hand count as read completely.
READ = datetime(2000, 1, 1, tzinfo=UTC)

@pytest.fixture
def store() -> Iterator[MemoryStore]:
    reset_memory_stores()
    with memory_connector():
        yield memory_store("billing").seed_example()
    reset_memory_stores()


@pytest.fixture
def mem(engine: Engine, store: MemoryStore) -> str:
    """A connection named ``mem`` to the seeded in-memory billing system."""
    config = load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"})
    with Session(engine) as s, s.begin():
        s.add(Connection(name="mem", plugin="memory", config=config_for_storage(config), last_complete_pull_at=READ))
    return "mem"


class InvoiceEveryCustomer(Rule):
    """A test rule: every customer without an invoice should get one for 10.00 USD."""

    name = "needs_invoice"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        from subledger.core.model import Customer, Invoice

        invoiced = set(ctx.session.exec(select(Invoice.customer_external_id)).all())
        for c in ctx.session.exec(select(Customer).order_by(Customer.external_id)).all():
            if c.external_id in invoiced:
                continue
            yield Drift(
                key=c.external_id,
                summary=f"{c.external_id} has no invoice",
                amount_minor=1000,
                currency="USD",
                customer=c.external_id,
                actions=[
                    ActionDraft(
                        kind="create_invoice",
                        connection="mem",
                        summary=f"invoice {c.external_id}",
                        amount_minor=1000,
                        currency="USD",
                        payload={
                            "customer_external_id": c.external_id,
                            "currency": "USD",
                            "total_minor": 1000,
                            "status": "open",
                            "lines": [],
                        },
                    )
                ],
            )


RULES = [UnappliedPaymentRule(), InvoiceEveryCustomer()]


def findings(engine: Engine, **where: str) -> list[Finding]:
    with Session(engine) as s:
        stmt = select(Finding)
        for k, v in where.items():
            stmt = stmt.where(getattr(Finding, k) == v)
        return list(s.exec(stmt.order_by(Finding.rule, Finding.key)).all())


def test_sync_finds_drift_plans_fixes_and_resolves_when_the_drift_is_gone(
    engine: Engine, mem: str, store: MemoryStore
) -> None:
    report = sync(engine, trigger="test", settings=SyncSettings(), rules=RULES)
    assert report.run.status == "succeeded"
    assert report.run.findings_opened == 2
    unapplied = findings(engine, rule="unapplied_payment")
    assert [(f.key, f.amount_minor, f.currency, f.status) for f in unapplied] == [("mem:py_2", 10000, "USD", "open")]
    assert unapplied[0].evidence == [{"system": "mem", "object": "payment", "id": "py_2", "customer": "cus_globex"}]
    assert unapplied[0].customer == "cus_globex"  # linked through the identity map
    # Nothing is auto-approved: the invoice for Initech waits for a person.
    with Session(engine) as s:
        (action,) = s.exec(select(Action)).all()
    assert (action.kind, action.status, action.amount_minor) == ("create_invoice", "planned", 1000)
    assert len(store.records("invoices")) == 3

    # Someone applies the payment at the source; the next sync resolves the finding by itself.
    store.update("payments", "py_2", applications=[{"invoice_external_id": "in_2", "amount_minor": 10000}])
    report = sync(engine, trigger="test", settings=SyncSettings(), rules=RULES)
    assert report.run.findings_resolved == 1
    (f,) = findings(engine, rule="unapplied_payment")
    assert (f.status, f.status_reason) == ("resolved", "drift no longer found on sync")
    with Session(engine) as s:
        history = [e.event for e in s.exec(select(FindingEvent).where(FindingEvent.finding_id == f.id))]
        assert history == ["opened", "status"]
        verbs = [a.verb for a in s.exec(select(AuditEntry).where(AuditEntry.object_id == f.id))]
        assert verbs == ["finding.open", "finding.resolve"]


def test_planning_twice_keeps_one_action_and_auto_approval_applies_it_once(
    engine: Engine, mem: str, store: MemoryStore
) -> None:
    settings = SyncSettings(auto_approve=[AutoApproval(rule="needs_invoice", max_amount="10.00")])
    first = sync(engine, trigger="test", settings=settings, rules=RULES)
    assert first.run.actions_planned == 1 and first.run.actions_applied == 1
    invoices = [r for r in store.records("invoices") if r["customer_external_id"] == "cus_initech"]
    assert len(invoices) == 1
    # The next sync pulls the new invoice: the drift is gone, nothing more is planned or written.
    second = sync(engine, trigger="test", settings=settings, rules=RULES)
    assert (second.run.actions_planned, second.run.actions_applied) == (0, 0)
    assert findings(engine, rule="needs_invoice")[0].status == "resolved"
    assert len([r for r in store.records("invoices") if r["customer_external_id"] == "cus_initech"]) == 1


def test_amounts_above_the_policy_limit_wait_for_approval(engine: Engine, mem: str) -> None:
    settings = SyncSettings(auto_approve=[AutoApproval(rule="needs_invoice", max_amount="9.99")])
    report = sync(engine, trigger="test", settings=settings, rules=RULES)
    assert report.run.actions_applied == 0
    with Session(engine) as s, s.begin():
        (action,) = s.exec(select(Action)).all()
        assert action.status == "planned"
        aid = action.id
        approve(s, [aid], actor="user:ann", reason="checked the usage", now=action.created_at)
    result = apply_actions(engine, actor="user:ann")
    assert result.done == [aid]


class NoVendorDedup(MemoryConnector):
    """A target that does not deduplicate on idempotency keys (e.g. a key older than 24 h):
    only subledger's outbox and find-before-create stand between a retry and a double bill."""

    name = "memory"

    def write(self, action):  # type: ignore[no-untyped-def]
        external_id, created, record = self._call("write", lambda st: st.apply(action, honour_idempotency=False))
        from subledger.core.connector import WriteResult

        return WriteResult(external_id=external_id, created=created, record=record)


def _planned_and_approved(engine: Engine) -> str:
    from subledger.sync.pull import pull

    pull(engine, "mem")
    reconcile(engine, settings=SyncSettings(), actor="test", rules=RULES)
    with Session(engine) as s, s.begin():
        (action,) = s.exec(select(Action).where(Action.kind == "create_invoice")).all()
        aid = action.id
        approve(s, [aid], actor="test", reason="test", now=action.created_at)
        return aid


def _initech_invoices(store: MemoryStore) -> int:
    return len([r for r in store.records("invoices") if r["customer_external_id"] == "cus_initech"])


@pytest.mark.parametrize("step", [*STEPS, "inside_write"])
def test_a_crash_at_any_step_of_apply_then_a_rerun_writes_exactly_once(
    engine: Engine, mem: str, store: MemoryStore, step: str
) -> None:

    aid = _planned_and_approved(engine)
    connector = NoVendorDedup(
        load_config(MemoryConfig, {"api_key": DEFAULT_API_KEY, "store": "billing"}), connection="mem"
    )

    def crash_at(name: str, action: Action) -> None:
        if name == step:
            raise SimulatedCrash(f"crash at {name}")

    if step == "inside_write":
        from subledger.testing.faults import Fault

        store.inject(Fault(crash=True, operations=frozenset({"write"})))  # dies after the write landed
        hook = None
    else:
        hook = crash_at
    with pytest.raises(SimulatedCrash):
        apply_actions(engine, actor="test", connectors={"mem": connector}, **({"on_step": hook} if hook else {}))
    apply_actions(engine, actor="test", connectors={"mem": connector})
    apply_actions(engine, actor="test", connectors={"mem": connector})  # and once more, for good measure
    assert _initech_invoices(store) == 1
    with Session(engine) as s:
        action = s.get(Action, aid)
        assert action.status == "done" and action.external_id


def test_a_conflicting_update_is_reported_never_forced(engine: Engine, mem: str, store: MemoryStore) -> None:
    class UpdateName(Rule):
        name = "rename"

        def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
            yield Drift(
                key="acme",
                summary="rename acme",
                actions=[
                    ActionDraft(
                        kind="update_customer_fields",
                        connection="mem",
                        summary="set usage_to_date",
                        payload={"usage_to_date": "150"},
                        target_external_id="cus_acme",
                        base_version={"name": "Acme Corp"},
                    )
                ],
            )

    reconcile(
        engine, settings=SyncSettings(auto_approve=[AutoApproval(rule="rename")]), actor="t", rules=[UpdateName()]
    )
    store.update("customers", "cus_acme", name="ACME Corporation")  # someone edits the CRM meanwhile
    result = apply_actions(engine, actor="test")
    assert len(result.conflicts) == 1
    assert store.get("customers", "cus_acme").get("usage_to_date") is None
    with Session(engine) as s:
        (action,) = s.exec(select(Action)).all()
        assert action.status == "failed" and action.error.startswith("conflict:")


def test_two_syncs_of_one_connection_never_overlap(engine: Engine, mem: str) -> None:
    with held(engine, "sync:mem", "other-process", ttl=timedelta(minutes=5)), pytest.raises(LockHeld):
        sync(engine, trigger="test", settings=SyncSettings(), rules=RULES)
    with Session(engine) as s:
        assert s.exec(select(SyncRun)).all() == []  # a busy connection records no run


def test_auto_approval_limits_are_per_currency() -> None:
    # 10.00 USD is a limit of 1,000 cents; the same ten in JPY is ten yen; a currency the
    # mapping does not list waits for a person; a bare amount applies to every currency alike.
    from subledger.sync.plan import auto_approver

    per_currency = SyncSettings(auto_approve=[AutoApproval(rule="r", max_amount={"USD": "10.00", "JPY": "1500"})])
    assert auto_approver(per_currency, "r", 1000, "USD") == "policy:r<=10.00 USD"
    assert auto_approver(per_currency, "r", 1001, "USD") is None
    assert auto_approver(per_currency, "r", 1500, "JPY") == "policy:r<=1500 JPY"
    assert auto_approver(per_currency, "r", 1, "EUR") is None
    bare = SyncSettings(auto_approve=[AutoApproval(rule="r", max_amount="10.00")])
    assert auto_approver(bare, "r", 10, "JPY") == "policy:r<=10 JPY"
    assert auto_approver(bare, "r", 1000, "USD") == "policy:r<=10.00 USD"


def test_a_tolerance_in_a_currency_that_cannot_hold_it_is_refused_with_the_setting_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from subledger.core.errors import ConfigError
    from subledger.sync.settings import load_settings

    bad = tmp_path / "subledger.yaml"
    bad.write_text('amount_tolerance: {JPY: "0.5"}\n')
    with pytest.raises(ConfigError, match="amount_tolerance"):
        load_settings(bad)
    ok = tmp_path / "ok.yaml"
    ok.write_text('amount_tolerance: {USD: "0.50", jpy: "50"}\namount_tolerance_minor: 3\n')
    settings = load_settings(ok)
    assert (settings.tolerance_minor("USD"), settings.tolerance_minor("JPY"), settings.tolerance_minor("EUR")) == (
        50, 50, 3)
