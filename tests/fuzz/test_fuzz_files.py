"""Fuzzing the files connector through the engine, on SQLite and PostgreSQL (issue 15, Deliver 11).

Valid usage and customer files are broken by random mutations (truncation, garbled bytes,
BOMs, unicode, huge numbers, NUL characters, deep nesting, keys and ids written twice,
CR or CRLF line endings) and pulled into the store. Whatever the file holds:

* the pull never fails;
* every reject names the file, and a line;
* loaded + rejected = input rows, counted independently of the reader.

Bounded: about 60 examples per test and backend; ``SUBLEDGER_FUZZ_EXAMPLES`` raises it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from fuzz_support import (
    FIELDS,
    MUTATIONS,
    PRICES,
    VALUES,
    Mutation,
    build_customers,
    build_usage,
    contract,
    document_rows,
    mutate_bytes,
    render,
    usage_rows,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from subledger.core.model import Contract, Customer, Reject, UsageEvent
from subledger.plugins.files import FilesConfig, FilesConnector
from subledger.sync.pull import StreamReport, pull_stream

EXAMPLES = int(os.environ.get("SUBLEDGER_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SUBLEDGER_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def pulled(engine: Engine, name: str, data: bytes, stream: str) -> tuple[StreamReport, list[Reject], str]:
    """Pull one file as a connection of its own; (report, its rejects, connection)."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        connection = f"fz{uuid.uuid4().hex[:10]}"
        connector = FilesConnector(FilesConfig(path=folder), connection=connection)
        report = pull_stream(engine, connector, stream)  # never raises
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with Session(engine) as session:
        rejects = list(session.exec(select(Reject).where(Reject.connection == connection)).all())
    for reject in rejects:
        assert reject.location == name and reject.reason and reject.fix, reject
        assert reject.line is not None and reject.line >= 1, reject
    return report, rejects, connection


def whole_file_reject(rejects: list[Reject]) -> int | None:
    """The line from which a reject covers the rest of the file, if one does."""
    lines = [r.line or 1 for r in rejects if _covers_rest(r)]
    return min(lines) if lines else None


def _covers_rest(reject: Reject) -> bool:
    return "the file was not loaded" in reject.reason or "no row of the file was loaded" in reject.reason


@FUZZ
@given(fmt=st.sampled_from(["jsonl", "csv"]), count=st.integers(1, 6),
       mutations=st.lists(MUTATIONS, max_size=4))
def test_fuzzed_usage_files_lose_no_row(engine: Engine, fmt: str, count: int, mutations: list[Mutation]) -> None:
    data = build_usage(fmt, count, mutations)
    report, rejects, connection = pulled(engine, f"usage.{fmt}", data, "usage_events")
    with Session(engine) as session:
        stored = session.exec(select(func.count()).select_from(UsageEvent)
                              .where(UsageEvent.system == connection)).one()
    rows, _ = usage_rows(data, fmt)
    covered = whole_file_reject(rejects)
    if covered is not None:  # a CSV header that cannot be read: one reject stands for the file
        assert fmt == "csv" and covered == 1 and stored == 0, rejects
        return
    loaded = stored + report.usage_duplicates
    assert loaded + len(rejects) == rows, (data, [(r.line, r.reason) for r in rejects], stored, report)


@FUZZ
@given(fmt=st.sampled_from(["csv", "json", "jsonl", "yaml"]), count=st.integers(1, 5),
       mutations=st.lists(MUTATIONS, max_size=3))
def test_fuzzed_customer_files_lose_no_row(engine: Engine, fmt: str, count: int,
                                           mutations: list[Mutation]) -> None:
    data = build_customers(fmt, count, mutations)
    report, rejects, connection = pulled(engine, f"customers.{fmt}", data, "customers")
    with Session(engine) as session:
        stored = session.exec(select(func.count()).select_from(Customer)
                              .where(Customer.system == connection)).one()
    covered = whole_file_reject(rejects)
    rows = document_rows(data, fmt)
    row_rejects = [r for r in rejects if not _covers_rest(r)]
    if covered is None and rows is not None:
        # Every record loaded, or is a reject of its own (an id twice with other values included).
        assert stored + len(row_rejects) == rows, (data, [(r.line, r.reason) for r in rejects], stored)
    elif rows is not None:
        # A reject stands for the rest of the file from its line: what is before it is accounted for.
        assert stored + len(row_rejects) <= rows, (data, [(r.line, r.reason) for r in rejects], stored)
    assert report.records >= stored


@settings(max_examples=max(10, EXAMPLES // 3), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(["nul", "huge", "deep", "long_key", "dup_id", "unicode"]),
       pick=st.integers(0, 10_000), at=st.integers(0, 100), fmt=st.sampled_from(["jsonl", "csv"]))
def test_each_input_class_of_failure_c_loses_no_row(engine: Engine, kind: str, pick: int, at: int,
                                                    fmt: str) -> None:
    # One mutation of each class at a time, so every class is exercised on every backend.
    data = build_usage(fmt, 4, [Mutation(kind, at, pick)])
    report, rejects, connection = pulled(engine, f"usage.{fmt}", data, "usage_events")
    with Session(engine) as session:
        stored = session.exec(select(func.count()).select_from(UsageEvent)
                              .where(UsageEvent.system == connection)).one()
    rows, _ = usage_rows(data, fmt)
    assert stored + report.usage_duplicates + len(rejects) == rows, (data, [(r.line, r.reason) for r in rejects])


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_unmutated_files_load_whole(engine: Engine, fmt: str) -> None:
    report, rejects, _ = pulled(engine, f"usage.{fmt}", build_usage(fmt, 6, []), "usage_events")
    assert rejects == [] and report.usage_inserted == 6
    for customers_fmt in ("csv", "json", "jsonl", "yaml"):
        _, rejects, _ = pulled(engine, f"customers.{customers_fmt}", build_customers(customers_fmt, 3, []),
                               "customers")
        assert rejects == [], (customers_fmt, [(r.line, r.reason) for r in rejects])


@FUZZ
@given(fmt=st.sampled_from(["yaml", "json"]), price=st.sampled_from(PRICES),
       changes=st.one_of(st.just([]), st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(VALUES)),
                                               max_size=2)),
       extras=st.booleans(), twice=st.sampled_from([None, None, "currency", "end_date"]),
       mutations=st.lists(MUTATIONS, max_size=2))
def test_fuzzed_contract_files_lose_no_contract(engine: Engine, fmt: str, price: dict, changes: list, extras: bool,
                                                twice: str | None, mutations: list[Mutation]) -> None:
    data = mutate_bytes(render(contract(price, changes, extras), fmt, twice).encode("utf-8", "surrogatepass"),
                        mutations)
    _, rejects, connection = pulled(engine, f"contracts/c.{fmt}", data, "contracts")
    with Session(engine) as session:
        stored = session.exec(select(func.count()).select_from(Contract).where(Contract.system == connection)).one()
    rows = document_rows(data, fmt)
    if whole_file_reject(rejects) is None and rows is not None:
        assert stored + len(rejects) == rows, (data, [(r.line, r.reason) for r in rejects], stored)
    else:
        assert stored == 0 or rows is None or stored + len(rejects) - 1 <= rows
