"""Usage coverage windows: recorded merged, and asked which instant is the first not read."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.connector import UsageCoverage
from subledger.core.model import CoverageWindow
from subledger.core.store.coverage import load_coverage, merge_windows, record_coverage


def at(month: int, day: int = 1) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC)


def test_windows_merge_when_they_overlap_or_touch_and_recording_twice_changes_nothing(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        record_coverage(s, "stripe", [UsageCoverage(at(3), at(4), "api_calls"),
                                      UsageCoverage(at(1), at(2), "api_calls")])
        record_coverage(s, "stripe", [UsageCoverage(at(2), at(3), "api_calls")])  # fills the hole
    with Session(engine) as s, s.begin():
        assert record_coverage(s, "stripe", [UsageCoverage(at(1, 15), at(3, 15), "api_calls")]) == 0
        rows = [(r.meter, r.start, r.end) for r in s.exec(select(CoverageWindow)).all()]
    assert rows == [("api_calls", at(1), at(4))]


def test_the_gap_is_the_first_instant_no_window_covers(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        record_coverage(s, "stripe", [UsageCoverage(at(2), at(4), "api_calls"), UsageCoverage(at(5), at(6))])
    with Session(engine) as s:
        cov = load_coverage(s, "stripe")
        pushed = load_coverage(s, None)
    assert cov.gap(["api_calls"], at(2), at(4)) is None
    assert cov.gap(["api_calls"], at(1), at(3)) == at(1)  # January was never read
    assert cov.gap(["api_calls"], at(3), at(6)) == at(4)  # April neither
    assert cov.gap(["storage"], at(5), at(6)) is None  # a window for every meter covers storage
    assert cov.gap(["storage", "api_calls"], at(2), at(3)) == at(2)  # storage in February was not read
    assert cov.starts("api_calls") == at(2)
    assert pushed.gap(["api_calls"], at(1), at(12)) is None  # pushed usage: taken as complete


instants = st.integers(min_value=0, max_value=40).map(lambda d: datetime(2026, 1, 1 + d % 28, tzinfo=UTC)
                                                       if d < 28 else datetime(2026, 2, d - 27, tzinfo=UTC))


@given(st.lists(st.tuples(instants, instants), max_size=8), instants)
def test_merged_windows_cover_exactly_the_union(windows: list[tuple[datetime, datetime]], probe: datetime) -> None:
    merged = merge_windows(windows)
    inside = any(a <= probe < b for a, b in windows)
    assert inside == any(a <= probe < b for a, b in merged)
    assert all(merged[i][1] < merged[i + 1][0] for i in range(len(merged) - 1))
