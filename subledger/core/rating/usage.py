"""Usage aggregates: the quantities the engine prices, and how to compute them from events.

The engine never reads events itself. It states what it needs as :class:`UsageQuery`
values (meter, aggregation, half-open UTC time range, dimensions to group by) and takes
the answers as :class:`UsageAggregate` values, each carrying evidence of where it came
from. :func:`aggregate_events` answers queries from events in memory (files, tests); the
store answers them from its rollups.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from subledger.core.model.base import evidence_ref

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """One aggregate the engine needs: ``aggregation`` of ``meter`` over ``[start, end)``.

    ``group_by`` names event properties to split the aggregate by (matrix pricing);
    ``transactions`` asks for each event's quantity too (percentage pricing).
    """

    meter: str
    aggregation: str
    start: datetime
    end: datetime
    unique_property: str | None = None
    group_by: tuple[str, ...] = ()
    transactions: bool = False
    # Queries are dictionary keys looked up for every component of every period.
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((
            self.meter, self.aggregation, self.start, self.end, self.unique_property, self.group_by,
            self.transactions,
        )))

    def __hash__(self) -> int:
        return self._hash

    @property
    def label(self) -> str:
        """A readable id: ``api_calls:sum:2026-03-01T00:00:00+00:00/2026-04-01T00:00:00+00:00``."""
        return f"{self.meter}:{self.aggregation}:{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(frozen=True, slots=True)
class UsageAggregate:
    """The answer to a query (one per dimension combination when grouped).

    Attributes:
        quantity: the aggregated quantity.
        dimensions: ``((property, value), ...)`` in ``group_by`` order; empty if not grouped.
        event_count: how many events went into it, when known.
        transactions: each event's quantity, for percentage pricing.
        evidence: references to the source (aggregate id, events, rollups).
    """

    quantity: Decimal
    dimensions: tuple[tuple[str, str], ...] = ()
    event_count: int | None = None
    transactions: tuple[Decimal, ...] | None = None
    evidence: tuple[dict[str, Any], ...] = ()


UsageSet = Mapping[UsageQuery, Sequence[UsageAggregate]]
"""The answers to the engine's queries; a query with no entry means no usage."""


class EventLike(Protocol):
    """What :func:`aggregate_events` reads from an event (UsageEvent and UsageEventIn fit)."""

    event_id: str
    meter: str
    quantity: Decimal
    occurred_at: datetime
    properties: dict[str, Any]


def dimension_value(properties: Mapping[str, Any], name: str) -> str:
    """An event's value for a dimension, as text; a missing property is the empty string."""
    value = properties.get(name) if properties else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def aggregate(aggregation: str, events: Sequence[EventLike], unique_property: str | None = None) -> Decimal:
    """Aggregate events into one quantity, as the store does; no events give zero.

    ``latest`` is the quantity with the latest timestamp (ties go to the larger quantity,
    so the answer does not depend on arrival order); ``unique_count`` counts the distinct
    values of ``unique_property`` among the events that have it.
    """
    if not events:
        return ZERO
    if aggregation == "sum":
        return sum((e.quantity for e in events), ZERO)
    if aggregation == "count":
        return Decimal(len(events))
    if aggregation == "max":
        return max(e.quantity for e in events)
    if aggregation == "latest":
        return max((e.occurred_at, e.quantity) for e in events)[1]
    if aggregation == "unique_count":
        assert unique_property is not None
        values = {
            json.dumps(e.properties[unique_property], sort_keys=True, default=str)
            for e in events
            if e.properties and unique_property in e.properties
        }
        return Decimal(len(values))
    raise ValueError(f"unknown aggregation {aggregation!r}")


def aggregate_events(
    events: Iterable[EventLike], queries: Iterable[UsageQuery], *, system: str = "events"
) -> dict[UsageQuery, list[UsageAggregate]]:
    """Answer ``queries`` from events held in memory.

    Events are bucketed by meter and sorted by time once; each query then takes its
    time range by bisection.
    """
    by_meter: dict[str, list[EventLike]] = {}
    for event in events:
        by_meter.setdefault(event.meter, []).append(event)
    times: dict[str, list[datetime]] = {}
    for meter, bucket in by_meter.items():
        bucket.sort(key=lambda e: (e.occurred_at, e.event_id))
        times[meter] = [e.occurred_at for e in bucket]
    answers: dict[UsageQuery, list[UsageAggregate]] = {}
    for query in queries:
        bucket = by_meter.get(query.meter, [])
        stamps = times.get(query.meter, [])
        window = bucket[bisect.bisect_left(stamps, query.start) : bisect.bisect_left(stamps, query.end)]
        groups: dict[tuple[tuple[str, str], ...], list[EventLike]] = {}
        if query.group_by:
            for event in window:
                key = tuple((name, dimension_value(event.properties, name)) for name in query.group_by)
                groups.setdefault(key, []).append(event)
        else:
            groups[()] = window
        answers[query] = [
            UsageAggregate(
                quantity=aggregate(query.aggregation, group, query.unique_property),
                dimensions=key,
                event_count=len(group),
                transactions=tuple(e.quantity for e in group) if query.transactions else None,
                evidence=(_evidence(system, query, key, group),),
            )
            for key, group in sorted(groups.items())
        ]
    return answers


def _evidence(
    system: str, query: UsageQuery, key: tuple[tuple[str, str], ...], group: Sequence[EventLike]
) -> dict[str, Any]:
    ident = query.label + ("" if not key else ":" + ",".join(f"{k}={v}" for k, v in key))
    return evidence_ref(
        system, "usage_aggregate", ident,
        events=len(group),
        first_event=group[0].event_id if group else None,
        last_event=group[-1].event_id if group else None,
    )
