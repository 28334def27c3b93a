"""Consumption: how far a customer is into what its contract includes, in one period.

Usage against each allotment, spend against each minimum commitment, and each credit
grant's use — read off a period of the contract read model
(:mod:`subledger.sync.contracts`). The ``thresholds`` rule, the standing endpoint and
the CRM's usage fields all show these figures, so they are computed here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from subledger.core.rating.lines import CREDIT, MINIMUM_TRUE_UP, USAGE
from subledger.sync.contracts import ContractView, PeriodView

ZERO = Decimal(0)


@dataclass(frozen=True)
class Measure:
    """One thing that is used up: ``used`` of ``limit`` (units of ``unit``).

    Attributes:
        what: ``allotment:<component>``, ``commitment:<id>`` or ``credits:<grant>``.
        kind: ``allotment``, ``commitment`` or ``credits``.
        ident: the component, commitment or grant id.
        used, limit: in units for allotments and unit grants, minor units for money.
        unit: the meter, or the contract currency for money.
        money: True when ``used`` and ``limit`` are minor units.
    """

    what: str
    kind: str
    ident: str
    used: Decimal
    limit: Decimal
    unit: str
    money: bool

    @property
    def fraction(self) -> Decimal:
        return self.used / self.limit if self.limit else ZERO

    @property
    def remaining(self) -> Decimal:
        return max(self.limit - self.used, ZERO)


def period_usage(pv: PeriodView, component: str) -> Decimal:
    """The usage of a component in the period (before allotments and credits)."""
    return sum((ln.usage or ZERO for ln in pv.rating.lines if ln.kind == USAGE and ln.component == component), ZERO)


def spend(pv: PeriodView) -> int:
    """The period's charges net of discounts and caps, before true-ups and credits (minor units)."""
    return sum(ln.amount for ln in pv.rating.lines if ln.kind not in (MINIMUM_TRUE_UP, CREDIT))


def measures(view: ContractView, pv: PeriodView) -> list[Measure]:
    """Every allotment, minimum commitment and live credit grant of ``view`` in period ``pv``."""
    plan = view.plan
    assert plan is not None
    index = view.periods.index(pv)
    opening = view.periods[index - 1].rating.state if index else None
    state = pv.rating.state
    currency = view.contract.currency
    out: list[Measure] = []
    for u in plan.usages:
        a = u.allotment
        if a is None or a.quantity <= 0:
            continue
        if a.per_term:  # a term pool: what is gone from it so far
            used, limit = a.quantity - state.allotments.get(u.id, a.quantity), a.quantity
        else:
            carried = opening.allotments.get(u.id, ZERO) if (opening is not None and a.rollover) else ZERO
            used, limit = period_usage(pv, u.id), a.quantity + carried
        out.append(Measure(f"allotment:{u.id}", "allotment", u.id, used, limit, u.meter, False))
    spent = spend(pv)
    for c in plan.commitments:
        if not c.minimum or c.amount_minor <= 0:
            continue
        used = Decimal(state.term_spend.get(c.id, spent) if c.per_term else spent)
        out.append(Measure(f"commitment:{c.id}", "commitment", c.id, used, Decimal(c.amount_minor), currency, True))
    start = pv.period.start_at
    for grant in plan.grants:
        balance = state.credits.get(grant.id)
        if balance is None or not grant.amount or (_expired(grant.expires_at, start)):
            continue  # expired before this period: nothing left to use up (breakage, not usage)
        granted = Decimal(grant.amount) + sum((Decimal(a) for _, a in grant.top_ups), ZERO)
        out.append(Measure(f"credits:{grant.id}", "credits", grant.id, granted - Decimal(balance.balance), granted,
                           currency if grant.money else (grant.meter or ""), grant.money))
    return out


def _expired(expires_at: datetime | None, start: datetime) -> bool:
    return expires_at is not None and expires_at <= start
