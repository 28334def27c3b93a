"""Usage coverage: a usage read that reaches the end of every file vouches for usage_start .. now."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.connector import Checkpoint, UsageCoverage, UsageEventIn
from subledger.core.store.coverage import load_coverage
from subledger.plugins.files import FilesConfig
from subledger.sync.pull import pull_stream

EVENTS = (
    '{"event_id": "e1", "customer": "acme", "meter": "api_calls", "quantity": 1, '
    '"timestamp": "2026-03-01T00:00:00Z"}\n'
    '{"event_id": "e2", "customer": "acme", "meter": "storage_gb", "quantity": 2, '
    '"timestamp": "2026-03-02T00:00:00Z"}\n'
)


def test_a_usage_read_states_every_meter_complete_from_2000_to_the_read(folder):
    folder.write("usage/2026-03.jsonl", EVENTS)
    before = datetime.now(UTC)
    items = list(folder.connector().read("usage_events", None))
    after = datetime.now(UTC)
    [coverage] = [i for i in items if isinstance(i, UsageCoverage)]
    # The default usage_start: the files hold all usage there is.
    assert coverage.start == datetime(2000, 1, 1, tzinfo=UTC)
    assert before <= coverage.end <= after and coverage.end.tzinfo is not None
    assert coverage.meter is None  # every meter, including meters with no events yet
    # After every event, right before the last checkpoint, which commits the window with them.
    position = items.index(coverage)
    assert all(isinstance(i, UsageEventIn | Checkpoint) for i in items[:position])
    assert [type(i) for i in items[position:]] == [UsageCoverage, Checkpoint]


def test_usage_start_sets_where_the_window_begins(folder, read):
    folder.write("usage.jsonl", EVENTS)
    result = read("usage_events", usage_start="2026-01-01")  # as `--set usage_start=2026-01-01` gives it
    [coverage] = result.coverage
    assert coverage.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert result.event_ids == ["e1", "e2"]


def test_usage_start_is_a_documented_date_setting(tmp_path):
    config = FilesConfig(path=tmp_path, usage_start=date(2025, 7, 1))
    assert FilesConfig.model_validate(config.model_dump(mode="json")) == config
    assert FilesConfig(path=tmp_path).usage_start == date(2000, 1, 1)
    field = FilesConfig.model_fields["usage_start"]
    assert field.description and "complete" in field.description
    with pytest.raises(ValueError, match="usage_start"):
        FilesConfig(path=tmp_path, usage_start="last year")


def test_a_read_with_nothing_new_still_extends_the_window_to_now(folder, read):
    folder.write("usage.jsonl", EVENTS)
    first = read("usage_events")
    again = read("usage_events", first.state)
    assert again.records == [] and again.rejects == []
    [coverage] = again.coverage
    assert coverage.end >= first.coverage[0].end
    assert again.state == first.state


def test_an_empty_folder_holds_no_usage_and_says_so(folder, read):
    result = read("usage_events")
    assert result.records == [] and len(result.coverage) == 1 and result.state == {"version": 1, "files": {}}


def test_a_usage_start_after_now_states_nothing(folder, read):
    folder.write("usage.jsonl", EVENTS)
    result = read("usage_events", usage_start="9999-01-01")
    assert result.coverage == [] and result.event_ids == ["e1", "e2"] and result.state is not None


def test_an_interrupted_read_states_no_coverage(folder):
    folder.write("usage/a.jsonl", EVENTS)
    folder.write("usage/b.jsonl", EVENTS.replace('"e', '"f'))
    # A checkpoint after every line: the read stops (a crash) after the first file.
    items = folder.connector(checkpoint_every=1).read("usage_events", None)
    seen = []
    for item in items:
        seen.append(item)
        if isinstance(item, UsageEventIn) and item.event_id == "e2":
            break
    assert not any(isinstance(i, UsageCoverage) for i in seen)


def test_only_the_usage_stream_states_coverage(folder, read):
    folder.write("customers.csv", "id,name\nacme,Acme\n")
    assert read("customers").coverage == []


def test_pulled_into_the_store_the_window_is_recorded_with_the_events(folder, engine: Engine):
    folder.write("usage.jsonl", EVENTS)
    connector = folder.connector(usage_start="2026-01-01")
    before = datetime.now(UTC)
    report = pull_stream(engine, connector, "usage_events")
    assert report.usage_inserted == 2
    with Session(engine) as session:
        coverage = load_coverage(session, "files")
    [(start, end)] = coverage.of("api_calls")
    assert start == datetime(2026, 1, 1, tzinfo=UTC) and end >= before
    assert coverage.gap(["api_calls", "a_meter_with_no_events"], datetime(2026, 3, 1, tzinfo=UTC),
                        datetime(2026, 4, 1, tzinfo=UTC)) is None
    # Before usage_start, nothing is vouched for.
    assert coverage.gap(["api_calls"], datetime(2025, 12, 1, tzinfo=UTC),
                        datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2025, 12, 1, tzinfo=UTC)
