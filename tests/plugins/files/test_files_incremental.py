"""Incremental reads: nothing twice, appends resume at their offset, changes re-read, crashes resume."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subledger.core.connector import Checkpoint, Rejected, UsageEventIn
from subledger.plugins.files import FilesConfig, FilesConnector, linefile


def event(i: int, quantity: int | str = 1) -> str:
    return (f'{{"event_id": "e{i}", "customer": "acme", "meter": "api_calls", "quantity": {quantity}, '
            f'"timestamp": "2026-03-01T00:{i % 60:02d}:00Z"}}\n')


def events(ids: range) -> str:
    return "".join(event(i) for i in ids)


def test_a_second_read_loads_nothing(folder, read):
    folder.write("usage/a.jsonl", events(range(5)))
    folder.write("usage/b.csv",
                 "event_id,customer,meter,quantity,timestamp\nc1,acme,api_calls,2,2026-03-01T00:00:00Z\n")
    folder.write("customers.csv", "id,name\nacme,Acme\nbeta,Beta\n")
    first = {stream: read(stream) for stream in ("usage_events", "customers")}
    assert first["usage_events"].event_ids == ["e0", "e1", "e2", "e3", "e4", "c1"]
    assert len(first["customers"].records) == 2
    for stream, result in first.items():
        again = read(stream, result.state)
        assert again.records == [] and again.rejects == []
        assert again.state == result.state


def test_appended_lines_are_read_from_where_the_last_read_stopped(folder, read):
    path = "usage/2026-03.jsonl"
    folder.write(path, events(range(3)))
    first = read("usage_events")
    assert first.event_ids == ["e0", "e1", "e2"]
    folder.append(path, event(3) + "oops\n" + event(4))
    second = read("usage_events", first.state)
    assert second.event_ids == ["e3", "e4"]
    # Line numbers continue from the first read: "oops" is line 5 of the file.
    [reject] = second.rejects
    assert (reject.location, reject.line, reject.raw) == (path, 5, "oops")
    file_state = second.state["files"][path]
    assert file_state["offset"] == os.path.getsize(folder.root / path)
    assert file_state["line"] == 6


def test_appended_csv_rows_reuse_the_remembered_header(folder, read):
    path = "usage/march.csv"
    folder.write(path, "customer,event_id,meter,quantity,timestamp\nacme,c1,api_calls,1,2026-03-01T00:00:00Z\n")
    first = read("usage_events")
    folder.append(path, "acme,c2,api_calls,2,2026-03-02T00:00:00Z\nacme,c3,api_calls,x,2026-03-02T00:00:00Z\n")
    second = read("usage_events", first.state)
    assert [(e.event_id, e.quantity) for e in second.events] == [("c2", 2)]
    assert (second.rejects[0].line, second.rejects[0].field) == (4, "quantity")


def test_a_new_file_is_read_and_the_others_are_not_opened(folder, read, monkeypatch):
    from subledger.plugins.files import reader

    folder.write("usage/a.jsonl", events(range(2)))
    first = read("usage_events")
    opened = []

    class SpyingLineSource(linefile.LineSource):
        def __init__(self, path, *args, **kwargs):
            opened.append(path.name)
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(reader, "LineSource", SpyingLineSource)
    folder.write("usage/b.jsonl", events(range(10, 12)))
    second = read("usage_events", first.state)
    assert opened == ["b.jsonl"]
    assert second.event_ids == ["e10", "e11"]
    assert second.rejects == []
    assert set(second.state["files"]) == {"usage/a.jsonl", "usage/b.jsonl"}


def test_a_changed_file_is_read_again_whole(folder, read):
    path = "usage/a.jsonl"
    folder.write(path, events(range(3)))
    first = read("usage_events")
    # Line 2 edited in place: not an append, so every line is read again. The store keeps
    # e0 and e2 once (same id, same payload) and reports e1 as a conflict.
    folder.write(path, event(0) + event(1, quantity=5) + event(2))
    second = read("usage_events", first.state)
    assert second.event_ids == ["e0", "e1", "e2"]
    assert second.events[1].quantity == 5
    assert second.events[0].payload_hash == first.events[0].payload_hash
    assert second.events[1].payload_hash != first.events[1].payload_hash


def test_a_shortened_file_is_read_again_whole(folder, read):
    path = "usage/a.jsonl"
    folder.write(path, events(range(4)))
    first = read("usage_events")
    folder.write(path, events(range(2)))
    assert read("usage_events", first.state).event_ids == ["e0", "e1"]


def test_a_touched_but_unchanged_file_loads_nothing(folder, read):
    path = folder.write("usage/a.jsonl", events(range(3)))
    customers = folder.write("customers.json", '[{"id": "acme", "name": "Acme"}]')
    first = {s: read(s) for s in ("usage_events", "customers")}
    for p in (path, customers):
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 5_000_000_000))
    for stream, result in first.items():
        again = read(stream, result.state)
        assert again.records == [] and again.rejects == []
        # The new mtime is remembered, so the next read does not even hash the file.
        [(_, file_state)] = again.state["files"].items()
        assert file_state["mtime_ns"] == (path if stream == "usage_events" else customers).stat().st_mtime_ns


def test_a_deleted_file_leaves_the_state(folder, read):
    folder.write("usage/a.jsonl", events(range(1)))
    folder.write("usage/b.jsonl", events(range(1, 2)))
    first = read("usage_events")
    (folder.root / "usage/a.jsonl").unlink()
    second = read("usage_events", first.state)
    assert second.records == []
    assert list(second.state["files"]) == ["usage/b.jsonl"]


def test_a_state_of_another_format_version_reads_everything_again(folder, read):
    folder.write("usage/a.jsonl", events(range(2)))
    assert read("usage_events", {"version": 99, "files": {}}).event_ids == ["e0", "e1"]


# --- The last line without a newline -------------------------------------------------


def test_an_unterminated_last_line_that_loads_is_consumed(folder, read):
    path = "usage/a.jsonl"
    folder.write(path, event(0) + event(1).rstrip("\n"))
    first = read("usage_events")
    assert first.event_ids == ["e0", "e1"]
    folder.append(path, "\n" + event(2))
    second = read("usage_events", first.state)
    assert second.event_ids == ["e2"]
    folder.append(path, "bad\n")
    assert second.state["files"][path]["line"] == 3
    assert read("usage_events", second.state).rejects[0].line == 4


def test_a_half_written_last_line_is_reported_and_read_again_once_complete(folder, read):
    path = "usage/a.jsonl"
    whole = event(1)
    folder.write(path, event(0) + whole[:30])
    first = read("usage_events")
    assert first.event_ids == ["e0"]
    [reject] = first.rejects
    assert reject.line == 2
    assert reject.reason.endswith("(this is the last line and has no newline at its end)")
    folder.append(path, whole[30:])
    second = read("usage_events", first.state)
    assert second.event_ids == ["e1"]
    assert second.rejects == []


# --- Crashes -----------------------------------------------------------------------------


def _crash_after(items: Any, n: int) -> tuple[list[Any], dict[str, Any] | None]:
    """Consume ``n`` items, then 'crash'. Returns what the engine committed and its state."""
    committed: list[Any] = []
    pending: list[Any] = []
    state = None
    for i, item in enumerate(items):
        if i == n:
            break
        if isinstance(item, Checkpoint):
            committed += pending
            pending = []
            state = item.state
        else:
            pending.append(item)
    return committed, state


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_read_interrupted_anywhere_resumes_without_loss_or_duplicate(folder, monkeypatch, collect, fmt):
    # Tiny blocks and frequent checkpoints put many checkpoints inside one file.
    monkeypatch.setattr(linefile, "BLOCK_SIZE", 150)
    if fmt == "jsonl":
        folder.write("usage/a.jsonl", events(range(0, 12)) + "garbage\n" + events(range(12, 20)))
        folder.write("usage/b.jsonl", events(range(20, 25)))
    else:
        rows = [f"e{i},acme,api_calls,{i},2026-03-01T00:00:00Z\n" for i in range(25)]
        rows.insert(12, "garbage\n")
        folder.write("usage/a.csv", "event_id,customer,meter,quantity,timestamp\n" + "".join(rows))
    connector = folder.connector(checkpoint_every=2)
    everything = collect(connector.read("usage_events", None))
    expected = [e.event_id for e in everything.events]
    assert len(expected) == 25 and len(everything.rejects) == 1
    total = len(list(connector.read("usage_events", None)))
    for crash_at in range(total + 1):
        committed, state = _crash_after(connector.read("usage_events", None), crash_at)
        resumed = collect(connector.read("usage_events", state))
        loaded = [e.event_id for e in committed if isinstance(e, UsageEventIn)] + resumed.event_ids
        assert loaded == expected, f"crash after {crash_at} items"
        rejects = [r for r in committed if isinstance(r, Rejected)] + resumed.rejects
        assert len(rejects) == 1, f"crash after {crash_at} items"


def test_record_files_checkpoint_between_files_so_a_crash_rereads_only_the_unfinished_one(folder, collect):
    folder.write("customers/a.csv", "id,name\nacme,Acme\n")
    folder.write("customers/b.csv", "id,name\nbeta,Beta\n")
    connector = folder.connector(checkpoint_every=1)
    items = list(connector.read("customers", None))
    first_checkpoint = next(i for i, item in enumerate(items) if isinstance(item, Checkpoint))
    committed, state = _crash_after(iter(items), first_checkpoint + 2)  # crashed inside b.csv
    assert [c.external_id for c in committed] == ["acme"]
    resumed = collect(connector.read("customers", state))
    assert [c.external_id for c in resumed.records] == ["beta"]


# --- Record files that only grew ---------------------------------------------------------


def test_rows_appended_to_a_record_file_yield_only_the_new_records(folder, read):
    folder.write("customers.csv", "id,name\nacme,Acme\nbeta,Beta\n")
    first = read("customers")
    folder.append("customers.csv", "gamma,Gamma\n")
    second = read("customers", first.state)
    assert [c.external_id for c in second.records] == ["gamma"]
    assert read("customers", second.state).records == []


def test_a_row_appended_to_an_earlier_invoice_yields_that_whole_invoice_again(folder, read):
    folder.write("invoices.csv", """
        id,customer,currency,line_id,line_amount
        in_1,acme,USD,a,10.00
        in_2,beta,USD,a,5.00
    """)
    first = read("invoices")
    folder.append("invoices.csv", "in_1,,,b,2.50\nin_3,gamma,USD,a,1.00\n")
    second = read("invoices", first.state)
    # in_2 is untouched; in_1 comes back whole (both lines), so the store can replace its lines.
    assert [(g.record.external_id, g.record.total_minor, len(g.children)) for g in second.records] == [
        ("in_1", 1250, 2), ("in_3", 100, 1),
    ]


def test_a_contract_document_appended_to_a_yaml_file_yields_only_that_contract(folder, read):
    contract = ("id: {id}\ncustomer: a\ncurrency: USD\nstart_date: 2026-01-01\n"
                "components: [{{type: flat_fee, id: f, amount: 1}}]\n")
    folder.write("contracts/all.yaml", contract.format(id="c1"))
    first = read("contracts")
    folder.append("contracts/all.yaml", "---\n" + contract.format(id="c2"))
    assert [c.external_id for c in read("contracts", first.state).records] == ["c2"]


def test_an_edit_before_the_end_of_a_record_file_yields_every_record_of_it(folder, read):
    folder.write("customers.json", '[{"id": "acme", "name": "Acme"}, {"id": "beta", "name": "Beta"}]')
    first = read("customers")
    folder.write("customers.json", '[{"id": "acme", "name": "Acme"}, {"id": "beta", "name": "Beta"}, '
                 '{"id": "gamma", "name": "Gamma"}]')
    # The closing bracket moved: not an append. Unchanged records come again; the store skips them.
    assert [c.external_id for c in read("customers", first.state).records] == ["acme", "beta", "gamma"]


def test_usage_checkpoints_fall_on_line_boundaries_every_so_many_lines(folder, read, monkeypatch):
    monkeypatch.setattr(linefile, "BLOCK_SIZE", 1000)
    path = folder.write("usage/a.jsonl", events(range(100)))
    data = path.read_bytes()
    result = read("usage_events", checkpoint_every=10)
    offsets = [c["files"]["usage/a.jsonl"]["offset"] for c in result.checkpoints]
    # ~9 lines a block: a checkpoint every 2 blocks (>= 10 lines), then one at the end.
    assert len(offsets) >= 5
    assert offsets == sorted(offsets) and offsets[-1] == len(data)
    for offset in offsets:
        assert data[offset - 1 : offset] == b"\n"
    lines = [c["files"]["usage/a.jsonl"]["line"] for c in result.checkpoints]
    assert lines == [data[:offset].count(b"\n") for offset in offsets]


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=12))
def test_any_sequence_of_partial_appends_and_reads_loads_each_event_exactly_once(tmp_path_factory, cuts):
    # A writer appends the file in arbitrary pieces (cutting lines anywhere) and a pull
    # runs after each piece: in the end every event is loaded once, in file order.
    root = tmp_path_factory.mktemp("appends")
    data = events(range(25)).encode()
    path = root / "usage.jsonl"
    path.write_bytes(b"")
    connector = FilesConnector(FilesConfig(path=root), connection="files")
    loaded: list[str] = []
    state = None
    position = 0
    for cut in [*cuts, len(data)]:
        piece = data[position : position + cut]
        position += len(piece)
        with path.open("ab") as f:
            f.write(piece)
        for item in connector.read("usage_events", state):
            if isinstance(item, UsageEventIn):
                loaded.append(item.event_id)
            elif isinstance(item, Checkpoint):
                state = item.state
    assert loaded == [f"e{i}" for i in range(25)]
