"""Rating inputs from the store: usage aggregates and credit grants, shaped for the engine.

The rating engine is pure; these functions are the I/O edge that answers its usage
queries from the store (rollups where they suffice, raw events otherwise) and turns stored
credit grants into engine grants.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session, select

from subledger.core.model import CreditGrant, UsageEvent, UsageRollup, evidence_ref
from subledger.core.rating import Grant, UsageAggregate, UsageQuery, aggregate_events
from subledger.core.store.usage import aggregate_usage


def grant_from_row(row: CreditGrant, currency: str) -> Grant | None:
    """A stored credit grant as an engine grant for a contract in ``currency``.

    None for a money grant in another currency: it cannot pay this contract. Its id is
    ``<system>:<external id>``, which is how billing lines that apply it name it.
    """
    money = row.amount_minor is not None
    if money and (row.currency or "").upper() != currency.upper():
        return None
    return Grant(
        id=f"{row.system}:{row.external_id}",
        money=money,
        amount=row.amount_minor if money else row.units,  # type: ignore[arg-type]
        effective_at=row.effective_at,
        expires_at=row.expires_at,
        priority=row.priority,
        category=row.category,
        cost_basis=row.cost_basis,
        currency=currency if money else None,
        meter=row.meter,
        evidence=evidence_ref(row.system, "credit_grant", row.external_id),
    )


def usage_evidence(
    session: Session, system: str | None, customer: str, meter: str, start: datetime, end: datetime
) -> dict[str, Any]:
    """The first and last event ids of ``meter`` a customer sent in ``[start, end)`` (the count is
    on the aggregate's evidence, from the rollups: counting here would scan every event)."""
    stmt = select(UsageEvent.event_id).where(
        UsageEvent.customer_external_id == customer, UsageEvent.meter == meter,
        UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end,
    )
    if system:
        # Compared as an expression, so the planner walks the time index over the window
        # instead of the (system, event_id) index, which would sort every event of the system.
        stmt = stmt.where(UsageEvent.system + "" == system)
    first = session.exec(stmt.order_by(UsageEvent.occurred_at, UsageEvent.event_id).limit(1)).first()
    last = session.exec(stmt.order_by(UsageEvent.occurred_at.desc(), UsageEvent.event_id.desc()).limit(1)).first()  # type: ignore[attr-defined]
    return {"first_event": first, "last_event": last}


def store_usage(
    session: Session, customer: str, queries: Iterable[UsageQuery], system: str | None
) -> dict[UsageQuery, list[UsageAggregate]]:
    """Answer the engine's queries from the store: rollups where they suffice, events otherwise."""
    answers: dict[UsageQuery, list[UsageAggregate]] = {}
    for query in queries:
        if query.group_by or query.transactions:
            stmt = select(UsageEvent).where(
                UsageEvent.customer_external_id == customer,
                UsageEvent.meter == query.meter,
                UsageEvent.occurred_at >= query.start,
                UsageEvent.occurred_at < query.end,
            )
            if system:
                stmt = stmt.where(UsageEvent.system == system)
            events = session.exec(stmt).all()
            answers.update(aggregate_events(events, [query], system=system or "store"))
            continue
        quantity = aggregate_usage(
            session,
            customer_external_id=customer,
            meter=query.meter,
            start=query.start,
            end=query.end,
            aggregation=query.aggregation,
            system=system,
            unique_property=query.unique_property,
        )
        ref = evidence_ref(system or "store", "usage_aggregate", query.label, customer=customer)
        answers[query] = [UsageAggregate(quantity, evidence=(ref,))]
    return answers


# (day, sum, count, max, latest_at, latest quantity)
_DayRow = tuple[date, Decimal, int, Decimal, datetime, Decimal]


class RollupIndex:
    """Every daily rollup of one metering system, in memory, for rating many contracts at once.

    Rating 10,000 contracts asks hundreds of thousands of usage questions; one query that
    loads the rollups answers every day-aligned sum, count, max or latest without going back
    to the database. Questions it cannot answer (partial days, unique counts, matrix or
    per-transaction pricing) fall through to :func:`store_usage`'s per-query path.
    """

    def __init__(self, session: Session, system: str | None) -> None:
        self.system = system
        self.days: dict[tuple[str, str], list[_DayRow]] = defaultdict(list)
        stmt = select(
            UsageRollup.customer_external_id,
            UsageRollup.meter,
            UsageRollup.day,
            UsageRollup.quantity_sum,
            UsageRollup.event_count,
            UsageRollup.quantity_max,
            UsageRollup.latest_at,
            UsageRollup.latest_quantity,
        )
        if system is not None:
            stmt = stmt.where(UsageRollup.system == system)
        for customer, meter, day, total, count, maximum, latest_at, latest in session.exec(stmt):
            self.days[(customer, meter)].append((day, total, count, maximum, latest_at, latest))
        for rows in self.days.values():
            rows.sort()

    def events(self, customer: str, query: UsageQuery) -> int:
        """How many events the rollups hold for ``query``'s days (whole days only)."""
        rows = self.days.get((customer, query.meter), ())
        lo, hi = query.start.astimezone(UTC).date(), query.end.astimezone(UTC).date()
        return sum(r[2] for r in rows[bisect_left(rows, (lo,)) : bisect_left(rows, (hi,))])

    def answer(self, customer: str, query: UsageQuery) -> Decimal | None:
        """The aggregate from rollups, or None when rollups cannot answer it."""
        if query.group_by or query.transactions or query.aggregation not in ("sum", "count", "max", "latest"):
            return None
        if not (_midnight(query.start) and _midnight(query.end)):
            return None
        rows = self.days.get((customer, query.meter), ())
        lo, hi = query.start.astimezone(UTC).date(), query.end.astimezone(UTC).date()
        days = rows[bisect_left(rows, (lo,)) : bisect_left(rows, (hi,))]
        if query.aggregation == "sum":
            return sum((r[1] for r in days), Decimal(0))
        if query.aggregation == "count":
            return Decimal(sum(r[2] for r in days))
        if query.aggregation == "max":
            return max((r[3] for r in days), default=Decimal(0))
        best = max(((r[4], r[5]) for r in days), default=None)
        return best[1] if best else Decimal(0)


def _midnight(at: datetime) -> bool:
    u = at.astimezone(UTC)
    return u.hour == u.minute == u.second == u.microsecond == 0


def indexed_usage(
    session: Session, index: RollupIndex, customer: str, queries: Iterable[UsageQuery]
) -> dict[UsageQuery, list[UsageAggregate]]:
    """Answer queries from ``index`` where it can, and from the store otherwise."""
    answers: dict[UsageQuery, list[UsageAggregate]] = {}
    rest = []
    for query in queries:
        quantity = index.answer(customer, query)
        if quantity is None:
            rest.append(query)
            continue
        events = index.events(customer, query)
        ref = evidence_ref(index.system or "store", "usage_aggregate", query.label, customer=customer, events=events)
        answers[query] = [UsageAggregate(quantity, evidence=(ref,))]
    if rest:
        answers.update(store_usage(session, customer, rest, index.system))
    return answers
