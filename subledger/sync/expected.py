"""What should have been billed: the rating engine run over the store's contracts and usage.

For each contract of a contract-terms system (the CRM role), every billing period that has
ended is rated with the usage of the customer in the metering system, chaining the state
(allotment pools, per-term spend, credit balances) from the start of the term. The
customer is found in each system through the identity map.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from sqlmodel import Session, select

from subledger.core.errors import ConfigError
from subledger.core.model.contract import Contract
from subledger.core.model.identity import ExternalRef
from subledger.core.rating import PeriodRating, RatingPlan, compile_terms, rate_periods
from subledger.core.store.rating_inputs import RollupIndex, indexed_usage
from subledger.core.terms import load_terms

RATED_STATUSES = ("active", "signed", "ended", "cancelled")


@dataclass
class ExpectedContract:
    """A contract and the rating of each of its ended billing periods."""

    contract: Contract
    customer: str | None  # canonical id
    plan: RatingPlan | None
    periods: list[PeriodRating]
    error: ConfigError | None = None

    def meter_of(self, component: str) -> str | None:
        """The meter a usage component is on."""
        if self.plan is None:
            return None
        for u in self.plan.usages:
            if u.id == component:
                return u.meter
        return None


def system_ids(session: Session) -> dict[str, dict[str, list[str]]]:
    """canonical customer -> system -> that system's customer ids."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    rows = session.exec(
        select(ExternalRef).where(ExternalRef.object_type == "customer", ExternalRef.method != "unlinked")
    ).all()
    for r in rows:
        out[r.canonical_id][r.system].append(r.external_id)
    return out


def expected_contracts(
    session: Session,
    *,
    contract_systems: list[str],
    metering_system: str | None,
    through: date,
    index: RollupIndex | None = None,
) -> Iterator[ExpectedContract]:
    """Rate every ended billing period (ending on or before ``through``) of every contract.

    ``index``: the metering system's rollups already in memory (built here when omitted).
    """
    ids = system_ids(session)
    index = index or RollupIndex(session, metering_system)
    canonical_of = {(system, ext): c for c, systems in ids.items() for system, exts in systems.items() for ext in exts}
    contracts = session.exec(
        select(Contract)
        .where(Contract.system.in_(contract_systems), Contract.status.in_(RATED_STATUSES))
        .order_by(Contract.system, Contract.external_id)
    ).all()
    for contract in contracts:
        canonical = canonical_of.get((contract.system, contract.customer_external_id))
        try:
            terms = load_terms(contract.terms, source=f"contract {contract.external_id} ({contract.system})")
            plan = compile_terms(terms, contract_id=contract.external_id, system=contract.system)
        except ConfigError as exc:
            yield ExpectedContract(contract, canonical, None, [], exc)
            continue
        periods = [p for p in plan.periods(until=through) if p.end <= through]
        if not periods:
            yield ExpectedContract(contract, canonical, plan, [])
            continue
        usage_customer = contract.customer_external_id
        if metering_system is not None and canonical is not None:
            metered = ids.get(canonical, {}).get(metering_system)
            usage_customer = metered[0] if metered else usage_customer
        queries = [q for p in periods for q in plan.usage_queries(p)]
        usage = indexed_usage(session, index, usage_customer, queries)
        yield ExpectedContract(contract, canonical, plan, rate_periods(plan, usage, periods=periods))
