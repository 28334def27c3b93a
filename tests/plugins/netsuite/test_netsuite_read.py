"""Reading NetSuite: the canonical mapping, and incremental reads with a lookback window."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

from ns_testkit import JAN_15

from subledger.core.connector import Checkpoint, RecordGroup, Rejected
from subledger.plugins.netsuite.connector import NetSuiteConnector
from subledger.plugins.netsuite.sandbox import NetSuiteSandbox


def groups(items: list) -> dict[str, RecordGroup]:
    return {i.record.external_id: i for i in items if isinstance(i, RecordGroup)}


def test_invoices_map_with_lines_service_dates_and_payments(connect: Callable[..., NetSuiteConnector]) -> None:
    connector = connect()
    inv = groups(list(connector.read("invoices", None)))["2001"]
    record = inv.record
    assert (record.number, record.status, record.currency, record.customer_external_id) == ("INV-1", "open", "USD",
                                                                                             "1001")
    assert (record.total_minor, record.amount_paid_minor, record.amount_due_minor) == (50150, 30000, 20150)
    assert (record.period_start, record.period_end) == (date(2026, 1, 1), date(2026, 1, 31))
    assert [(ln.line_key, ln.amount_minor, ln.quantity, ln.unit_price) for ln in inv.children] == [
        ("1", 50000, Decimal("1"), Decimal("500.00")), ("2", 150, Decimal("1500"), Decimal("0.001"))]
    assert inv.children[1].evidence == [{"system": "netsuite", "object": "invoice_line", "id": "2001/2"}]

    payment = groups(list(connector.read("payments", None)))["3001"]
    assert (payment.record.amount_minor, payment.record.received_at) == (30000, datetime(2026, 1, 10, tzinfo=UTC))
    assert [(a.invoice_external_id, a.amount_minor) for a in payment.children] == [("2001", 30000)]

    [memo] = [c for c in connector.read("credit_notes", None) if not isinstance(c, Checkpoint)]
    assert (memo.invoice_external_id, memo.total_minor, memo.lines[0]["amount_minor"]) == ("2002", 3000, 3000)

    customers = {c.external_id: c for c in connector.read("customers", None) if not isinstance(c, Checkpoint)}
    assert customers["1001"].canonical_hint == "cus_acme" and customers["1002"].canonical_hint is None


def test_a_late_visible_change_inside_the_lookback_is_read_once(
    sandbox: NetSuiteSandbox, connect: Callable[..., NetSuiteConnector]
) -> None:
    connector = connect(lookback_seconds=600)
    state = [i for i in connector.read("invoices", None) if isinstance(i, Checkpoint)][-1].state
    assert state["since"] == "2026-01-15 00:00:00"
    # An invoice saved in a long transaction: visible now, stamped 5 minutes before the cursor.
    sandbox.clock.set(JAN_15 - 300)
    sandbox.save("invoice", {"entity": {"id": "1002"}, "tranDate": "2026-01-14",
                             "item": {"items": [{"item": {"id": "501"}, "amount": "7.00"}]}}, None)
    # And one stamped 20 minutes before: outside the window, so not seen (widen lookback_seconds for such commits).
    sandbox.clock.set(JAN_15 - 1200)
    sandbox.save("invoice", {"entity": {"id": "1002"}, "tranDate": "2026-01-14",
                             "item": {"items": [{"item": {"id": "501"}, "amount": "8.00"}]}}, None)
    items = list(connector.read("invoices", state))
    assert [g.record.total_minor for g in groups(items).values()] == [700]
    final = [i for i in items if isinstance(i, Checkpoint)][-1].state
    assert list(connector.read("invoices", final))[-1] == Checkpoint(final)
    assert not groups(list(connector.read("invoices", final)))


def test_a_record_in_an_unmapped_currency_is_rejected_and_the_rest_still_loads(
    sandbox: NetSuiteSandbox, connect: Callable[..., NetSuiteConnector]
) -> None:
    sandbox.store.put("currency", {"id": "9", "symbol": "Swiss Franc", "_modified": datetime.now(UTC)})
    sandbox.save("invoice", {"entity": {"id": "1002"}, "currency": {"id": "9"}, "tranDate": "2026-01-14",
                             "item": {"items": [{"item": {"id": "501"}, "amount": "7.00"}]}}, None)
    items = list(connect().read("invoices", None))
    [rejected] = [i for i in items if isinstance(i, Rejected)]
    assert "currency '9'" in rejected.reason and "currencies map" in rejected.fix
    assert sorted(groups(items)) == ["2001", "2002"]


def test_accounts_subsidiaries_and_periods_are_read_for_configuration(
    sandbox: NetSuiteSandbox, connect: Callable[..., NetSuiteConnector]
) -> None:
    connector = connect()
    assert [(a["id"], a["acctnumber"]) for a in connector.accounts()][:2] == [("11", "1000"), ("12", "1200")]
    assert connector.subsidiaries() == [{"id": "1", "name": "Parent Company", "currency": "1"}]
    periods = connector.accounting_periods()
    assert len(periods) == 12 and periods[0] == {"id": "201", "periodname": "Jan 2026", "startdate": "2026-01-01",
                                                 "enddate": "2026-01-31", "closed": "F", "arlocked": "F",
                                                 "alllocked": "F"}
    assert connector.closed_period("2026-01", None) is None
    sandbox.save("accountingPeriod", {"allLocked": True}, sandbox.store.get("accountingPeriod", "201"), partial=True)
    assert connector.closed_period("2026-01", None) == "Jan 2026"
