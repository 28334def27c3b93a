"""Contract-derived obligations: what the terms say is earned, invoiced or not.

Invoices only show what has been billed. A contract's terms, rated by the rating engine
(:mod:`subledger.core.rating`) on the usage in the store, also show what has been earned
and not yet billed: usage before its invoice, fees billed in arrears, minimum
commitments. For every billing period that has started by ``through``:

* each flat-fee line is a ratable obligation over its service period;
* each usage line is recognized as the usage occurs: the period is rated on usage to
  each month end inside it (and to ``through``), and each line's rated amount to date is
  its recognized amount to date;
* each discount or cap line is contra revenue spread by day over its service period;
* each minimum commitment is an adjustment ``policy(spend) - spend`` on top of the
  obligations it covers, under the contract's commitment policy, so the three policies
  differ in timing only and all end at the rated true-up.

Invoice lines of the contract with the same component and service start bill these
obligations instead of becoming obligations of their own. Credit grants written in the
terms are left to the credit-grant obligations (the store's grants and ledger), so the
terms are rated without them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlmodel import Session

from subledger.core.errors import ConfigError
from subledger.core.model import Contract, evidence_ref
from subledger.core.revrec.amortization import AmortizationPolicy, ServicePeriod
from subledger.core.revrec.calendar import as_utc, day_start, through_instant
from subledger.core.revrec.commitments import CommitmentPolicy, commitment_on_spend
from subledger.core.revrec.curves import Curve, Incurred, Ratable, Sum
from subledger.core.revrec.obligation import LineKind, Treatment
from subledger.core.revrec.policy import RevrecPolicy

_MICRO = timedelta(microseconds=1)
REVREC_KEYS = ("revenue_recognition",)


@dataclass
class ContractObligation:
    """An obligation derived from a contract, waiting for the invoice lines that bill it."""

    key: str
    treatment: Treatment
    product: str
    component: str
    service_start: date
    kind: LineKind
    curve: Curve
    evidence: tuple[dict[str, Any], ...]
    billings: list[Any] = field(default_factory=list)


@dataclass
class ContractResult:
    obligations: list[ContractObligation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _answer(session: Session, customer: str, queries: Iterable[Any], end: datetime) -> dict[Any, list[Any]]:
    """Answer the engine's usage queries from the store, with the usage cut at ``end``."""
    from subledger.core.rating import UsageQuery
    from subledger.core.store.rating_inputs import store_usage

    cut: dict[Any, Any] = {}
    for q in queries:
        stop = min(q.end, end)
        if stop > q.start:
            cut[q] = UsageQuery(q.meter, q.aggregation, q.start, stop, q.unique_property, q.group_by, q.transactions)
    answers = store_usage(session, customer, cut.values(), None)
    return {q: list(answers.get(c, ())) for q, c in cut.items()}


def contract_obligations(
    session: Session, contract: Contract, policy: RevrecPolicy, *, through: date
) -> ContractResult:
    """The obligations a contract's terms imply through ``through`` (see the module docstring)."""
    out = ContractResult()
    doc = {k: v for k, v in (contract.terms or {}).items() if k not in REVREC_KEYS}
    if not doc.get("components"):
        return out
    try:
        from subledger.core.rating import compile_terms, opening_state, rate_period
        from subledger.core.rating.lines import DISCOUNT, FLAT_FEE, MAXIMUM_CAP, USAGE
        from subledger.core.rating.proration import prorate
        from subledger.core.terms import load_terms
    except ImportError:  # pragma: no cover - only while the rating engine is absent
        return out
    source = f"contract {contract.system}/{contract.external_id}"
    try:
        terms = load_terms({**doc, "credits": []}, source=source)
        plan = compile_terms(terms, contract_id=contract.id, system=contract.system)
    except ConfigError as exc:
        out.warnings.append(f"{exc}; its obligations come from its invoices only")
        return out
    stop = through_instant(through)
    state = opening_state(plan)
    lines_by_key: dict[str, dict[str, Any]] = {}
    steps: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    period_of: dict[str, Any] = {}
    for period in plan.periods(until=through):
        start, end = period.start_at, period.end_at
        if start >= stop:
            break
        checkpoints = sorted({min(m, stop) for m in _month_ends(start, end)} | {min(end, stop)})
        final = None
        for cut in checkpoints:
            rated = rate_period(plan, period, _answer(session, contract.customer_external_id,
                                                     plan.usage_queries(period), cut), state)
            for line in rated.lines:
                lines_by_key[line.key] = {"line": line, "period": period}
                period_of[line.key] = period
                if line.kind == USAGE:
                    steps[line.key].append((cut, line.amount))
            final = rated
        assert final is not None
        state = final.state
        for c in plan.commitments:
            if not c.minimum:
                continue
            ident = f"commitment:{c.id}:{period.start.isoformat()}" if not c.per_term else f"commitment:{c.id}"
            if c.per_term:
                term_end = plan.term_end
                if term_end is None:
                    continue
                threshold, term = c.amount_minor, ServicePeriod.from_dates(terms.start_date, term_end - timedelta(1))
            else:
                partial = c.prorate and period.days != period.cycle_days
                threshold = plan.round(prorate(c.amount, period.days, period.cycle_days)) if partial else c.amount_minor
                term = ServicePeriod(start, end)
            lines_by_key[ident] = {"commitment": c, "threshold": threshold, "term": term, "period": period}

    evidence = (evidence_ref(contract.system, "contract", contract.external_id),)
    built: dict[str, ContractObligation] = {}
    for key, info in lines_by_key.items():
        if "commitment" in info:
            continue
        line = info["line"]
        ev = (*evidence, *line.evidence)
        service = ServicePeriod(day_start(line.service_start), day_start(line.service_end))
        ob_key = f"contract:{contract.id}:{key}"
        if line.kind == FLAT_FEE:
            curve: Curve = Ratable(line.amount, service, policy.amortization)
            treatment, kind = Treatment.RATABLE, LineKind.REVENUE
        elif line.kind == USAGE:
            previous, pts = 0, []
            for cut, amount in steps[key]:
                if amount != previous:
                    pts.append((cut - _MICRO, amount - previous))
                previous = amount
            curve, treatment, kind = Incurred.of(pts), Treatment.USAGE, LineKind.REVENUE
        elif line.kind in (DISCOUNT, MAXIMUM_CAP):
            curve = Ratable(line.amount, service, AmortizationPolicy.BY_DAY)
            treatment, kind = Treatment.RATABLE, LineKind.DISCOUNT
        else:
            continue  # true-ups are the commitment adjustments below; credits are left to grants
        built[key] = ContractObligation(ob_key, treatment, line.component, line.component, line.service_start,
                                        kind, curve, ev)
    out.obligations.extend(built.values())

    for ident, info in lines_by_key.items():
        if "commitment" not in info:
            continue
        c, term = info["commitment"], info["term"]
        covered = [o.curve for k, o in built.items()
                   if (not c.applies_to or o.component in c.applies_to)
                   and (c.per_term or lines_by_key[k]["period"] == info["period"])]
        spend = Sum(tuple(covered)) if covered else Incurred.of([])
        expected = None
        if policy.expected_usage is not None:
            expected = int(policy.expected_usage * plan.scale)
        chosen = policy.commitment
        if chosen is CommitmentPolicy.SCALED_CONSUMPTION and not expected:
            out.warnings.append(f"{source}: scaled_consumption needs expected_usage; using shortfall_at_end")
            chosen = CommitmentPolicy.SHORTFALL_AT_END
        total = commitment_on_spend(info["threshold"], term, spend, chosen, expected_usage_minor=expected,
                                    amortization=policy.amortization)
        adjustment = _Difference(total, spend)
        out.obligations.append(ContractObligation(
            f"contract:{contract.id}:{ident}", Treatment.COMMITMENT, c.id, c.id,
            info["period"].start if not c.per_term else terms.start_date, LineKind.REVENUE, adjustment,
            (*evidence, evidence_ref(contract.system, "contract", contract.external_id, commitment=c.id)),
        ))
    return out


@dataclass(frozen=True)
class _Difference:
    """``a - b``: a commitment's recognition on top of the spend it covers."""

    a: Curve
    b: Curve

    @property
    def begins(self) -> datetime:
        return min(self.a.begins, self.b.begins)

    @property
    def settles(self) -> datetime:
        return self.a.settles

    def value(self, at: datetime) -> Fraction:
        return self.a.value(at) - self.b.value(at)


def _month_ends(start: datetime, end: datetime) -> list[datetime]:
    """Month boundaries strictly inside ``(start, end)``."""
    out = []
    current = as_utc(start)
    while True:
        nxt = (current.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0,
                                                                     microsecond=0)
        if nxt >= end:
            return out
        out.append(nxt)
        current = nxt
