"""Usage coverage: which stretches of time each metering system's usage has been read for.

Metering streams yield :class:`~subledger.core.connector.UsageCoverage` windows; the pull
stores them here, in the transaction of the events they vouch for, merged with what was
recorded before. The contract read model asks :meth:`Coverage.gap` before it judges a
billing period: a period with a gap is "not covered", never a finding.

Two kinds of usage source never report windows and are taken as complete: usage pushed
to the service (``subledger serve``; the pusher owns completeness) and a system whose
connector declares no usage stream.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session, col, delete, select

from subledger.core.connector import UsageCoverage
from subledger.core.model.coverage import CoverageWindow

EVERY_METER = ""

Window = tuple[datetime, datetime]


def merge_windows(windows: Iterable[Window]) -> list[Window]:
    """Sorted, non-overlapping windows covering exactly the union of ``windows`` (adjacent ones join)."""
    out: list[Window] = []
    for start, end in sorted(w for w in windows if w[1] > w[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"coverage instant {at.isoformat()} has no time zone; use an aware UTC datetime")
    return at.astimezone(UTC)


def record_coverage(session: Session, system: str, windows: Iterable[UsageCoverage]) -> int:
    """Add ``windows`` to what ``system`` covers; returns how many stored rows changed.

    Windows of one meter are merged with that meter's stored windows, so the table holds
    the union, never duplicates; recording the same window twice changes nothing.
    """
    by_meter: dict[str, list[Window]] = defaultdict(list)
    for w in windows:
        by_meter[w.meter or EVERY_METER].append((_utc(w.start), _utc(w.end)))
    changed = 0
    for meter, new in by_meter.items():
        rows = session.exec(
            select(CoverageWindow).where(CoverageWindow.system == system, CoverageWindow.meter == meter)
        ).all()
        before = merge_windows((r.start, r.end) for r in rows)
        after = merge_windows([*before, *new])
        if after == before and len(rows) == len(before):
            continue
        session.exec(
            delete(CoverageWindow).where(col(CoverageWindow.system) == system, col(CoverageWindow.meter) == meter)
        )
        for start, end in after:
            session.add(CoverageWindow(system=system, meter=meter, start=start, end=end))
        changed += len(after)
    session.flush()
    return changed


@dataclass
class Coverage:
    """What one usage system covers, per meter (``EVERY_METER`` windows apply to every meter).

    ``complete`` marks a source that reports no windows and is taken as complete.
    """

    system: str | None
    windows: dict[str, list[Window]] = field(default_factory=dict)
    complete: bool = False

    def of(self, meter: str) -> list[Window]:
        """The windows that cover ``meter``."""
        return merge_windows([*self.windows.get(EVERY_METER, ()), *self.windows.get(meter, ())])

    def gap(self, meters: Iterable[str], start: datetime, end: datetime) -> datetime | None:
        """The first instant of ``[start, end)`` some meter's usage was not read for, else None."""
        if self.complete or end <= start:
            return None
        first: datetime | None = None
        for meter in meters:
            at = start
            for w_start, w_end in self.of(meter):
                if w_end <= at:
                    continue
                if w_start > at:
                    break
                at = w_end
                if at >= end:
                    break
            if at < end and (first is None or at < first):
                first = at
        return first

    def starts(self, meter: str) -> datetime | None:
        """Where the earliest window covering ``meter`` begins (None: nothing read yet)."""
        windows = self.of(meter)
        return windows[0][0] if windows else None


def load_coverage(session: Session, system: str | None, *, complete: bool = False) -> Coverage:
    """The windows recorded for ``system`` (a source taken as ``complete`` needs none)."""
    out = Coverage(system, complete=complete or system is None)
    if out.complete:
        return out
    rows = session.exec(
        select(CoverageWindow).where(CoverageWindow.system == system).order_by(CoverageWindow.start)
    ).all()
    grouped: dict[str, list[Window]] = defaultdict(list)
    for r in rows:
        grouped[r.meter].append((_utc(r.start), _utc(r.end)))
    out.windows = {m: merge_windows(ws) for m, ws in grouped.items()}
    return out
