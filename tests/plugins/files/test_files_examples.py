"""The shipped examples/ folder: the good company loads cleanly, examples/bad shows each reject."""

from __future__ import annotations

import importlib.util
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from subledger.core.connector import Rejected
from subledger.core.model import (
    Contract,
    Customer,
    Invoice,
    InvoiceLine,
    Meter,
    Payment,
    PaymentApplication,
    Reject,
    UsageEvent,
    UsageRollup,
)
from subledger.plugins.files import FilesConfig, FilesConnector
from subledger.sync.pull import pull_stream

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
STREAMS = ("customers", "meters", "contracts", "usage_events", "invoices", "payments")


def connector(path: Path) -> FilesConnector:
    return FilesConnector(FilesConfig(path=path), connection="files")


def test_the_example_company_loads_without_a_single_reject(collect):
    good = connector(EXAMPLES)
    counts = {}
    for stream in STREAMS:
        result = collect(good.read(stream, None))
        assert result.rejects == [], stream
        counts[stream] = len(result.records)
    # 6 customers, 3 meters, 6 contracts (one per customer), a quarter of usage, one
    # invoice per contract and month, and the payments of the paid ones.
    assert counts == {
        "customers": 6, "meters": 3, "contracts": 6, "usage_events": 1052, "invoices": 18, "payments": 9,
    }


def test_the_examples_stay_small():
    size = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert size < 1_000_000


def test_the_generated_examples_are_what_the_rating_engine_says():
    # Invoices are priced from the shipped usage and contracts by the rating engine; if
    # either changes, examples/generate.py must be run again.
    spec = importlib.util.spec_from_file_location("examples_generate", EXAMPLES / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, text in generate.build().items():
        assert (EXAMPLES / name).read_text() == text, f"examples/{name} is out of date: run examples/generate.py"


# (stream, file, line, field, words of the reason): the rejects examples/README.md lists.
BAD = [
    ("customers", "customers.csv", 3, "email", "'billing at initech' is not an email address"),
    ("customers", "customers.csv", 4, "currency", "'EURO' is not a three-letter ISO 4217 code"),
    ("customers", "customers.csv", 5, "id", "id is missing"),
    ("contracts", "contracts/acme-2026.yaml", 10, "components[0].price", "the tiers overlap or are out of order"),
    ("usage_events", "usage/2026-03.jsonl", 2, "quantity", "quantity 'ten' is not a number"),
    ("usage_events", "usage/2026-03.jsonl", 3, "timestamp", "has no UTC offset"),
    ("usage_events", "usage/2026-03.jsonl", 4, "qty", "unknown field 'qty'"),
    ("usage_events", "usage/2026-03.jsonl", 5, None, "invalid JSON"),
    ("usage_events", "usage/uploads.csv", 3, None, "the row has 7 fields but the header has 6"),
    ("invoices", "invoices.csv", 3, "line_amount", "'99.999' has more than 2 decimal places for USD"),
    ("invoices", "invoices.csv", 4, "status", "status 'sent' is not one of"),
    ("payments", "payments.csv", 3, "amount", "applications total 75.00, more than the payment 50.00"),
]


def test_the_bad_examples_reject_exactly_the_documented_rows_and_load_the_rest(collect):
    bad = connector(EXAMPLES / "bad")
    rejects: list[Rejected] = []
    loaded = {}
    for stream in STREAMS:
        result = collect(bad.read(stream, None))
        rejects += result.rejects
        loaded[stream] = len(result.records)
    assert [(r.stream, r.location, r.line, r.field) for r in rejects] == [b[:4] for b in BAD]
    for reject, expected in zip(rejects, BAD, strict=True):
        assert expected[4] in reject.reason
        assert reject.fix
    assert loaded == {"customers": 1, "meters": 0, "contracts": 1, "usage_events": 4, "invoices": 1, "payments": 1}
    readme = (EXAMPLES / "README.md").read_text()
    for _stream, location, line, _field, _reason in BAD:
        assert f"{location}:{line}" in readme


def _pull_all(engine: Engine, path: Path) -> dict[str, object]:
    source = connector(path)
    return {stream: pull_stream(engine, source, stream) for stream in STREAMS}


def test_pulling_the_examples_into_the_store_twice_loads_everything_once(engine: Engine):
    first = _pull_all(engine, EXAMPLES)
    assert sum(r.rejected for r in first.values()) == 0
    assert first["usage_events"].usage_inserted == 1052
    with Session(engine) as session:
        def count(model: type) -> int:
            return session.exec(select(func.count()).select_from(model)).one()

        # 29 invoice lines and 9 applications: two lines are planted leaks (dropped), and
        # one payment is deliberately left unapplied (examples/generate.py, LEAKS).
        assert [count(m) for m in (Customer, Meter, Contract, UsageEvent, Invoice, InvoiceLine, Payment,
                                   PaymentApplication, Reject)] == [6, 3, 6, 1052, 18, 29, 9, 9, 0]
        # Acme's January: 140,881 calls in the store = 100,000 included + 40,881 on the invoice.
        calls = session.exec(select(UsageRollup.quantity_sum).where(
            UsageRollup.customer_external_id == "acme", UsageRollup.meter == "api_calls",
            UsageRollup.day < date(2026, 2, 1),
        )).all()
        assert sum(calls, Decimal(0)) == Decimal(140881)
        line = session.exec(select(InvoiceLine).where(InvoiceLine.line_key == "usage:api_overage:2026-01-01")).one()
        assert (line.quantity, line.amount_minor) == (Decimal(40881), 8176)
    second = _pull_all(engine, EXAMPLES)
    assert all(r.records == 0 and r.changed == 0 and r.rejected == 0 for r in second.values())


def test_pulling_the_bad_examples_keeps_each_reject_once(engine: Engine):
    first = _pull_all(engine, EXAMPLES / "bad")
    assert sum(r.rejected for r in first.values()) == len(BAD)
    _pull_all(engine, EXAMPLES / "bad")
    with Session(engine) as session:
        stored = session.exec(select(Reject).order_by(Reject.id)).all()
    assert sorted((r.stream, r.location, r.line) for r in stored) == sorted(b[:3] for b in BAD)


@pytest.mark.parametrize("stream", STREAMS)
def test_each_example_stream_checkpoints_its_files(stream, collect):
    result = collect(connector(EXAMPLES).read(stream, None))
    assert result.state is not None and result.state["files"]
