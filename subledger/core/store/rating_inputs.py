"""Rating inputs from the store: usage aggregates and credit grants, shaped for the engine.

The rating engine is pure; these functions are the I/O edge that answers its usage
queries from the store (rollups where they suffice, raw events otherwise) and turns stored
credit grants into engine grants.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_
from sqlmodel import Session, select

from subledger.core.model import Contract, CreditGrant, UsageEvent, evidence_ref
from subledger.core.rating import Grant, UsageAggregate, UsageQuery, aggregate_events
from subledger.core.store.usage import aggregate_usage


def store_grants(session: Session, contract: Contract) -> list[Grant]:
    """Credit grants a billing system holds for this contract (or its customer at large)."""
    rows = session.exec(
        select(CreditGrant).where(
            CreditGrant.customer_external_id == contract.customer_external_id,
            or_(CreditGrant.contract_external_id == contract.external_id,
                CreditGrant.contract_external_id.is_(None)),  # type: ignore[union-attr]
        ).order_by(CreditGrant.id)
    ).all()
    grants = []
    for row in rows:
        money = row.amount_minor is not None
        if money and (row.currency or "").upper() != contract.currency.upper():
            continue  # a grant in another currency cannot pay this contract
        grants.append(Grant(
            id=f"{row.system}:{row.external_id}",
            money=money,
            amount=row.amount_minor if money else row.units,  # type: ignore[arg-type]
            effective_at=row.effective_at,
            expires_at=row.expires_at,
            priority=row.priority,
            category=row.category,
            cost_basis=row.cost_basis,
            currency=contract.currency if money else None,
            meter=row.meter,
            evidence=evidence_ref(row.system, "credit_grant", row.external_id),
        ))
    return grants


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
            session, customer_external_id=customer, meter=query.meter, start=query.start, end=query.end,
            aggregation=query.aggregation, system=system, unique_property=query.unique_property,
        )
        ref = evidence_ref(system or "store", "usage_aggregate", query.label, customer=customer)
        answers[query] = [UsageAggregate(quantity, evidence=(ref,))]
    return answers


