"""Pull commits each checkpoint with its records: a crash loses nothing, duplicates nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from subledger.core.connector import (
    Capabilities,
    Checkpoint,
    CheckResult,
    Connector,
    ConnectorConfig,
    RecordGroup,
    Rejected,
    StreamSpec,
    UsageEventIn,
)
from subledger.core.model import Customer, Invoice, InvoiceLine, Reject, StreamState, UsageEvent, record_id
from subledger.core.model.base import payload_hash
from subledger.sync.pull import pull_stream

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Crash(RuntimeError):
    """Stands in for the process dying mid-read."""


class ListConfig(ConnectorConfig):
    pass


class ListConnector(Connector):
    """Yields a fixed list of usage events, a checkpoint every ``every`` events."""

    name = "list"
    config_model = ListConfig
    capabilities = Capabilities(incremental=True)

    def __init__(self, events: list[UsageEventIn], *, every: int = 3, crash_after: int | None = None) -> None:
        super().__init__(ListConfig(), connection="list")
        self.events, self.every, self.crash_after = events, every, crash_after
        self.yielded = 0

    def streams(self) -> list[StreamSpec]:
        return [
            StreamSpec("usage_events", "usage_event", ("event_id",), "offset"),
            StreamSpec("invoices", "invoice"),
        ]

    def check(self) -> CheckResult:
        return CheckResult(True)

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        offset = (state or {}).get("offset", 0)
        for i in range(offset, len(self.events)):
            if self.crash_after is not None and self.yielded >= self.crash_after:
                raise Crash(f"crashed after {self.yielded} items")
            self.yielded += 1
            yield self.events[i]
            if (i + 1) % self.every == 0:
                yield Checkpoint({"offset": i + 1})
        yield Checkpoint({"offset": len(self.events)})


def events(n: int) -> list[UsageEventIn]:
    return [
        UsageEventIn(f"e{i}", "acme", "api_calls", Decimal(i), T0 + timedelta(minutes=i), {}, f"h{i}")
        for i in range(n)
    ]


def stored_ids(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return sorted(s.exec(select(UsageEvent.event_id)).all(), key=lambda e: int(e[1:]))


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3, 4, 7, 9])
def test_crash_mid_pull_then_rerun_loses_nothing_and_duplicates_nothing(
    engine: Engine, crash_after: int
) -> None:
    data = events(10)
    with pytest.raises(Crash):
        pull_stream(engine, ListConnector(data, crash_after=crash_after), "usage_events")
    # What was committed is exactly a prefix ending at a checkpoint.
    committed = stored_ids(engine)
    assert committed == [f"e{i}" for i in range(len(committed))]
    assert len(committed) % 3 == 0
    report = pull_stream(engine, ListConnector(data), "usage_events")
    assert stored_ids(engine) == [f"e{i}" for i in range(10)]
    assert report.usage_duplicates == 0  # resumed from the checkpoint, not from the start
    with Session(engine) as s:
        assert s.get(StreamState, ("list", "usage_events")).state == {"offset": 10}


def test_a_second_pull_reads_nothing_new(engine: Engine) -> None:
    data = events(5)
    pull_stream(engine, ListConnector(data), "usage_events")
    report = pull_stream(engine, ListConnector(data), "usage_events")
    assert (report.records, report.usage_inserted) == (0, 0)


class GroupConnector(ListConnector):
    """Yields one invoice with its lines, and one rejected row."""

    def __init__(self, lines: list[int]) -> None:
        super().__init__([])
        self.lines = lines

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        payload = {"lines": self.lines}
        inv_id = record_id("inv", "list", "in_1")
        inv = Invoice(
            id=inv_id,
            system="list",
            external_id="in_1",
            customer_external_id="acme",
            currency="USD",
            total_minor=sum(self.lines),
            payload_hash=payload_hash(payload),
        )
        children = [
            InvoiceLine(invoice_id=inv_id, line_key=str(i), amount_minor=a, currency="USD")
            for i, a in enumerate(self.lines)
        ]
        yield RecordGroup(inv, children)
        yield Rejected(
            "invoices",
            "amount 'ten' is not a number",
            "write 10.00",
            location="invoices.csv",
            line=3,
            field="amount",
            raw="in_2,ten",
        )
        yield Checkpoint({"done": True})


def test_record_groups_replace_their_children_and_rejects_are_kept_once(engine: Engine) -> None:
    pull_stream(engine, GroupConnector([1000, 500, 250]), "invoices")
    pull_stream(engine, GroupConnector([1000, 500]), "invoices")  # the source dropped a line
    pull_stream(engine, GroupConnector([1000, 500]), "invoices")  # unchanged: nothing written
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(Invoice)).one() == 1
        assert sorted(s.exec(select(InvoiceLine.amount_minor)).all()) == [500, 1000]
        assert s.get(Invoice, record_id("inv", "list", "in_1")).total_minor == 1500
        rejects = s.exec(select(Reject)).all()
        assert [(r.location, r.line, r.field) for r in rejects] == [("invoices.csv", 3, "amount")]


def test_a_record_from_another_system_is_refused(engine: Engine) -> None:
    from subledger.core.errors import SystemFailure

    class Liar(ListConnector):
        def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
            yield Customer(id="cus_x", system="stripe", external_id="x")
            yield Checkpoint({})

    with pytest.raises(SystemFailure, match="from system 'stripe' while reading 'list'"):
        pull_stream(engine, Liar([]), "invoices")
