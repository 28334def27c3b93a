"""Contract-derived obligations: the contract read model's ratings, as recognition.

Invoices only show what has been billed. The contract read model
(``subledger.sync.contracts``) rates each contract's billing periods on the usage it has
read, which also shows what has been earned and not yet billed: usage before its
invoice, fees billed in arrears, minimum commitments. It hands recognition those
ratings as :class:`RatedContract` values (nothing here reads the store, so recognition
and reconciliation can never rate a contract two ways), and this module turns them into
obligations:

* each flat-fee line is ratable over its service period;
* each usage line is recognized as the usage occurs: the read model rates the period on
  the usage before each month end inside it (its *accruals*), and each line's rated
  amount to date is its recognized amount to date, so allotments, pools and tiers apply
  as usage accrues;
* each discount or cap line is contra revenue spread by day over its service period;
* a credit line drawn from a promotional grant is contra revenue the same way; one drawn
  from a paid grant recognizes nothing itself: the usage it pays for is already revenue,
  and the credit line bills the grant's obligation (it releases the liability);
* each minimum commitment is an adjustment ``policy(spend) - spend`` on top of the
  obligations it covers, under the contract's commitment policy, so the three policies
  differ in timing only; at the end of its term it equals the rated true-up exactly;
* each paid credit grant of the contract (the billing system's, with its ledger, or else
  the terms' own, with the rated draw-downs) is a liability: breakage is recognized under
  its policy, and a units grant's redemptions are revenue (rated usage lines exclude the
  units credits paid for).

Periods whose usage the read model could not read (not *covered*) yield no contract
obligations: their invoice lines stay invoice-driven. Invoice lines the read model
placed on the contract bill these obligations (:meth:`ContractResult.billed_by`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from subledger.core.model import Contract, evidence_ref
from subledger.core.money import allocate
from subledger.core.rating import BillingPeriod, PeriodRating, RatingPlan
from subledger.core.rating.charges import TRUE_UPS, rated_charge
from subledger.core.rating.credits import DRAW_DOWN
from subledger.core.rating.lines import CREDIT, DISCOUNT, FLAT_FEE, MAXIMUM_CAP, MINIMUM_TRUE_UP, USAGE
from subledger.core.rating.proration import prorate
from subledger.core.revrec.amortization import AmortizationPolicy, ServicePeriod
from subledger.core.revrec.calendar import as_utc, day_start
from subledger.core.revrec.commitments import CommitmentPolicy, commitment_on_spend
from subledger.core.revrec.curves import NEVER, Curve, Incurred, Ratable, Sum
from subledger.core.revrec.obligation import Billing, LineKind, Treatment
from subledger.core.revrec.policy import RevrecPolicy

_MICRO = timedelta(microseconds=1)
REVREC_KEYS = ("revenue_recognition",)


@dataclass(frozen=True)
class RatedPeriod:
    """One billing period as recognition needs it.

    ``accruals`` are the period rated on the usage before each instant, in time order:
    every month end inside the period that has passed, then the period's end (or the
    instant recognition runs through, if sooner). ``covered`` is False when the read
    model had not read the period's usage: it then yields no contract obligations.
    """

    period: BillingPeriod
    accruals: tuple[tuple[datetime, PeriodRating], ...]
    covered: bool = True

    @property
    def final(self) -> PeriodRating:
        return self.accruals[-1][1]


@dataclass(frozen=True)
class RatedContract:
    """A contract rated by the read model.

    Attributes:
        customer: the customer id its obligations are filed under (canonical when linked).
        store_grants: ids of the billing system's credit grants for the contract; when
            there are any, they are the contract's credits for recognition, with their
            ledgers; otherwise the terms' own grants are, with the rated draw-downs.
    """

    contract: Contract
    customer: str
    plan: RatingPlan
    periods: tuple[RatedPeriod, ...]
    store_grants: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where the read model put an invoice line: the contract, period and charge it pays."""

    contract_id: str
    period_start: date
    charge: str
    term: str | None = None


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
    charge: str = ""
    period_start: date | None = None
    amount: int = 0
    per_term: bool = False
    billings: list[Billing] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)  # further recognition streams (grants: breakage)


@dataclass
class ContractResult:
    """A contract's obligations, and how invoice lines placed on it find the ones they bill."""

    obligations: list[ContractObligation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    terms_grants: dict[str, ContractObligation] = field(default_factory=dict)

    def billed_by(self, placement: Placement, amount_minor: int) -> list[tuple[ContractObligation, int]]:
        """The obligations a placed line bills, each with its share of ``amount_minor``.

        Same period and charge (a per-term commitment: any period of its term); narrowed
        to the line's term when it names one; the amount split in proportion to what each
        was rated at (exact, :func:`~subledger.core.money.allocate`). Empty when nothing
        matches: the line then stays invoice-driven.
        """
        found = [o for o in self.obligations if o.charge == placement.charge
                 and (o.per_term or o.period_start == placement.period_start)]
        if placement.term is not None and any(o.component == placement.term for o in found):
            found = [o for o in found if o.component == placement.term]
        if not found:
            return []
        weights = [abs(o.amount) for o in found]
        if not any(weights):
            return [(found[0], amount_minor)]
        return [(o, share) for o, share in zip(found, allocate(amount_minor, weights), strict=True)]


def contract_obligations(rated: RatedContract, policy: RevrecPolicy, *, paid_grants: frozenset[str] = frozenset()
                         ) -> ContractResult:
    """The obligations of one rated contract (see the module docstring).

    Args:
        rated: the read model's ratings of the contract's periods.
        policy: the contract's recognition policy.
        paid_grants: ids (as the rating names them) of the grants whose draws settle a
            paid liability; credit lines of other grants are promotional contra revenue.
    """
    out = ContractResult()
    contract, plan = rated.contract, rated.plan
    evidence = (evidence_ref(contract.system, "contract", contract.external_id),)
    covered = [rp for rp in rated.periods if rp.covered and rp.accruals]
    lines: dict[str, tuple[Any, RatedPeriod]] = {}
    steps: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for rp in covered:
        for cut, rating in rp.accruals:
            for line in rating.lines:
                if line.kind == USAGE:
                    steps[line.key].append((cut, line.amount))
        # What the period finally bills: a true-up or discount an earlier cut showed may be gone.
        for line in rp.final.lines:
            lines[line.key] = (line, rp)
    built: dict[str, ContractObligation] = {}
    for key, (line, rp) in lines.items():
        ev = (*evidence, *line.evidence)
        service = ServicePeriod(day_start(line.service_start), day_start(line.service_end))
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
        elif line.kind in (DISCOUNT, MAXIMUM_CAP) or (line.kind == CREDIT and line.component not in paid_grants):
            curve = Ratable(line.amount, service, AmortizationPolicy.BY_DAY)
            treatment = Treatment.RATABLE
            kind = LineKind.PROMOTIONAL if line.kind == CREDIT else LineKind.DISCOUNT
        else:
            continue  # true-ups: the commitment adjustments below; paid credits: the grant's obligation
        built[key] = ContractObligation(
            f"contract:{contract.id}:{key}", treatment, line.component, line.component, line.service_start, kind,
            curve, ev, charge=rated_charge(line, plan), period_start=rp.period.start, amount=line.amount,
        )
    out.obligations.extend(built.values())
    _commitments(out, rated, policy, built, lines, covered, evidence)
    return out


def _commitments(
    out: ContractResult, rated: RatedContract, policy: RevrecPolicy, built: dict[str, ContractObligation],
    lines: dict[str, tuple[Any, RatedPeriod]], covered: Sequence[RatedPeriod], evidence: tuple[dict[str, Any], ...],
) -> None:
    contract, plan = rated.contract, rated.plan
    every_period_covered = len(covered) == len(rated.periods)
    for c in plan.commitments:
        if not c.minimum:
            continue
        caps = {cap.id: cap.applies_to for cap in plan.commitments if not cap.minimum}
        ranges: list[tuple[str, ServicePeriod, int, RatedPeriod | None]] = []
        if c.per_term:
            if plan.term_end is None or not every_period_covered or not rated.periods:
                continue  # a term minimum needs every period of the term judged
            last = rated.periods[-1]
            if last.period.end != plan.term_end:
                continue  # the term has not reached its last period yet
            term = ServicePeriod(day_start(plan.terms.start_date), day_start(plan.term_end))
            ranges.append((f"commitment:{c.id}", term, c.amount_minor, None))
        else:
            for rp in covered:
                p = rp.period
                partial = c.prorate and p.days != p.cycle_days
                threshold = plan.round(prorate(c.amount, p.days, p.cycle_days)) if partial else c.amount_minor
                ranges.append((f"commitment:{c.id}:{p.start.isoformat()}", ServicePeriod(p.start_at, p.end_at),
                               threshold, rp))
        for ident, term, threshold, rp in ranges:
            covered_curves = [
                o.curve for k, o in built.items()
                if (rp is None or lines[k][1] is rp) and o.kind is not LineKind.PROMOTIONAL
                and _counts_for(c.applies_to, o.component, caps, c.capped)
            ]
            spend = Sum(tuple(covered_curves)) if covered_curves else Incurred.of([])
            expected = int(policy.expected_usage * plan.scale) if policy.expected_usage is not None else None
            chosen = policy.commitment
            if chosen is CommitmentPolicy.SCALED_CONSUMPTION and not expected:
                out.warnings.append(f"contract {contract.system}/{contract.external_id}: scaled_consumption needs "
                                    "expected_usage; using shortfall_at_end")
                chosen = CommitmentPolicy.SHORTFALL_AT_END
            total = commitment_on_spend(threshold, term, spend, chosen, expected_usage_minor=expected,
                                        amortization=policy.amortization)
            adjustment: Curve = _Difference(total, spend)
            # The rated true-up is the answer: pin the adjustment's end to it, so recognition
            # and the expectation never disagree by a spend the curves measure differently.
            true_up = sum(line.amount for line, lp in lines.values()
                          if line.kind == MINIMUM_TRUE_UP and line.component == c.id and (rp is None or lp is rp))
            # The spend it covers may settle after the term (a fee amortized monthly is earned
            # at the month's end): pin where both have settled.
            settled = term.end if spend.settles >= NEVER else max(term.end, spend.settles)
            end_value = adjustment.value(settled + _MICRO)
            if end_value != true_up:
                adjustment = Sum((adjustment, Incurred.of([(settled - _MICRO, Fraction(true_up) - end_value)])))
            out.obligations.append(ContractObligation(
                f"contract:{contract.id}:{ident}", Treatment.COMMITMENT, c.id, c.id,
                rp.period.start if rp is not None else plan.terms.start_date, LineKind.REVENUE, adjustment,
                (*evidence, evidence_ref(contract.system, "contract", contract.external_id, commitment=c.id)),
                charge=TRUE_UPS, period_start=rp.period.start if rp is not None else None, amount=true_up,
                per_term=rp is None,
            ))


def _counts_for(applies_to: frozenset[str], component: str, caps: dict[str, frozenset[str]], capped: bool) -> bool:
    """Whether an obligation's spend counts toward a minimum over ``applies_to``."""
    if component in caps:  # a cap line: counted when the minimum is measured on capped spend and covers it
        return capped and (not applies_to or (bool(caps[component]) and caps[component] <= applies_to))
    return not applies_to or component in applies_to


def grant_draws(
    rated: RatedContract, grant_id: str, expires_at: datetime | None = None
) -> list[tuple[datetime, int | Fraction]]:
    """The rated draw-downs of a grant, as (when, amount drawn) in money or units.

    The engine dates a period's draws at its end; a draw is redeemed as the period ends, or
    just before the grant expires when that comes first (a grant can pay a period it expires in).
    """
    out: list[tuple[datetime, int | Fraction]] = []
    for rp in rated.periods:
        if not rp.accruals:
            continue
        for move in rp.final.movements:
            if move.grant_id == grant_id and move.kind == DRAW_DOWN:
                amount = move.amount_minor if move.amount_minor is not None else Fraction(move.units or 0)
                at = as_utc(move.occurred_at)
                if at == rp.period.end_at:  # drawn for the period's usage: redeemed as it ends, not after
                    at -= _MICRO
                if expires_at is not None and at >= as_utc(expires_at):
                    at = as_utc(expires_at) - _MICRO
                out.append((at, -amount))
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


__all__ = [
    "ContractObligation",
    "ContractResult",
    "Placement",
    "RatedContract",
    "RatedPeriod",
    "contract_obligations",
    "grant_draws",
]
