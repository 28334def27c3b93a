"""The rating engine: one contract, one billing period, its usage and credit state -> lines.

:func:`rate_period` is pure and deterministic: the same plan, period, usage and state
always give the same lines, movements and closing state. A period's lines are built in
a fixed order, each rounded once to minor units:

1. flat fees whose service period is billed in this period (advance: starts in it;
   arrears: ends in it), prorated by day when partial;
2. usage components: the aggregate, less the allotment, less unit credits, priced;
3. component discounts, then invoice discounts;
4. maximum caps, each on the spend so far;
5. minimum true-ups, on the spend after the caps on their components (a minimum whose
   terms say ``measured_on: uncapped_spend``: on the spend before the caps);
6. money credits, drawn in the documented order.

The total is the sum of the rounded lines. State that spans periods (allotment pools and
rollovers, per-term spend, credit balances) goes in as :class:`RatingState` and comes
out updated; :func:`rate_periods` chains it through a term.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError
from subledger.core.model.base import evidence_ref
from subledger.core.money import DECIMAL_CONTEXT, to_major
from subledger.core.rating import tiers as tier_math
from subledger.core.rating.allotments import apply_allotment
from subledger.core.rating.commitments import CommitmentPlan, cap, capped_off, true_up
from subledger.core.rating.credits import CreditBook, CreditMovement, GrantBalance, opening_balances
from subledger.core.rating.discounts import discount_off
from subledger.core.rating.lines import (
    CREDIT,
    DISCOUNT,
    FLAT_FEE,
    MAXIMUM_CAP,
    MINIMUM_TRUE_UP,
    USAGE,
    RatedLine,
    TierCharge,
    line_key,
)
from subledger.core.rating.percentage import percentage_of_total, percentage_of_transactions
from subledger.core.rating.periods import BillingPeriod
from subledger.core.rating.plan import FeePlan, PricePlan, RatingBoundsError, RatingPlan, UsagePlan
from subledger.core.rating.proration import prorate
from subledger.core.rating.usage import UsageAggregate, UsageQuery, UsageSet

ZERO = Decimal(0)
ONE = Decimal(1)


class RatingInputError(ConfigError):
    """The usage handed to the engine cannot price a component (e.g. missing transactions)."""


@dataclass(frozen=True, slots=True)
class RatingState:
    """What carries from one period to the next.

    Attributes:
        allotments: per component, units rolled over or left in the term pool.
        term_spend: per per-term minimum commitment, the spend so far in the term.
        credits: per grant, its balance and which grant/top-up movements are posted.
    """

    allotments: Mapping[str, Decimal] = field(default_factory=dict)
    term_spend: Mapping[str, int] = field(default_factory=dict)
    credits: Mapping[str, GrantBalance] = field(default_factory=dict)


def opening_state(plan: RatingPlan) -> RatingState:
    """The state before a contract's first period."""
    return RatingState(
        allotments={u.id: u.allotment.opening() for u in plan.usages if u.allotment is not None},
        term_spend={},
        credits=opening_balances(plan.grants),
    )


class PeriodRating(NamedTuple):
    """The rating of one period: its lines, credit movements and closing state."""

    contract_id: str
    currency: str
    period: BillingPeriod
    lines: tuple[RatedLine, ...]
    movements: tuple[CreditMovement, ...]
    state: RatingState

    @property
    def total(self) -> int:
        """The sum of the rounded lines, in minor units."""
        return sum(line.amount for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape: amounts as major-unit decimal strings."""
        return {
            "contract": self.contract_id,
            "currency": self.currency,
            "period": self.period.to_json(),
            "lines": [line.to_json(self.currency) for line in self.lines],
            "credit_movements": [m.to_json() for m in self.movements],
            "total": decimal_text(to_major(self.total, self.currency)),
            "total_minor": self.total,
        }


def usage_queries(plan: RatingPlan, period: BillingPeriod) -> list[UsageQuery]:
    """The aggregates :func:`rate_period` needs for ``period``, one per usage component."""
    return list(plan.usage_queries(period))


# ---------------------------------------------------------------------------- pricing


def _price(
    price: PricePlan, quantity: Decimal, aggregate: UsageAggregate | None, component: str
) -> tuple[Decimal, Decimal | None, tuple[TierCharge, ...], tuple[tuple[str, str], ...]]:
    """(exact amount, unit price, tier breakdown, detail) of ``quantity`` under ``price``."""
    model = price.model
    if model == "per_unit":
        assert price.unit_price is not None
        return quantity * price.unit_price, price.unit_price, (), ()
    if model == "graduated":
        amount, charges = tier_math.graduated(quantity, price.tiers)
        return amount, None, charges, ()
    if model == "volume":
        amount, charge = tier_math.volume(quantity, price.tiers)
        return amount, charge.unit_price, (charge,), ()
    if model == "package":
        assert price.package_size is not None and price.package_price is not None
        amount, blocks = tier_math.package(quantity, price.package_size, price.package_price, price.round_up)
        detail = (
            ("package_size", decimal_text(price.package_size)),
            ("package_price", decimal_text(price.package_price)),
            ("packages", decimal_text(blocks)),
            ("rounding", "up" if price.round_up else "down"),
        )
        return amount, None, (), detail
    assert price.rate is not None
    if aggregate is None:
        amount, count = ZERO, 0
    elif aggregate.transactions is not None:
        amount, _volume, count = percentage_of_transactions(
            aggregate.transactions, price.rate, price.fixed_fee, price.minimum_fee, price.maximum_fee
        )
    elif price.minimum_fee is None and price.maximum_fee is None and aggregate.event_count is not None:
        count = aggregate.event_count
        amount = percentage_of_total(aggregate.quantity, count, price.rate, price.fixed_fee)
    else:
        raise RatingInputError(
            f"component {component!r}: percentage pricing needs each transaction's amount",
            fix="answer its usage query with transactions (UsageQuery.transactions is set)",
        )
    detail = (("rate", decimal_text(price.rate)), ("fixed_fee", decimal_text(price.fixed_fee)),
              ("transactions", str(count)))
    return amount, None, (), detail


MAX_USAGE_DIGITS = 40
"""An aggregate of usage is below 10^40 (sums of bounded events); beyond, no price rates it within bounds."""


def _check_usage_bounds(contract: str, component: str, period: BillingPeriod, answer: UsageAggregate) -> None:
    """Refuse usage no bounded price could rate (a quantity stored before the bounds were enforced)."""
    values = [answer.quantity, *(answer.transactions or ())]
    for q in values:
        if not isinstance(q, Decimal) or not q.is_finite() or (q and q.adjusted() >= MAX_USAGE_DIGITS):
            shown = f"{q:.6E}" if isinstance(q, Decimal) and q.is_finite() else repr(q)
            raise RatingBoundsError(
                f"contract {contract}, component {component!r}, period {period.start}: usage of {shown} is out "
                f"of bounds (an aggregate stays below 10^{MAX_USAGE_DIGITS})",
                fix="find the usage events with huge quantities (subledger rejects lists those refused since) "
                "and correct them with events of their own",
            )


class _Period:
    """Mutable scratch for one period's rating (kept off the public API)."""

    __slots__ = ("allotments", "book", "by_component", "lines", "period", "plan", "total")

    def __init__(self, plan: RatingPlan, period: BillingPeriod, book: CreditBook,
                 allotments: dict[str, Decimal]) -> None:
        self.plan = plan
        self.period = period
        self.book = book
        self.lines: list[RatedLine] = []
        self.by_component: dict[str, int] = {}
        self.allotments = allotments
        self.total = 0

    def add(self, line: RatedLine, component: str | None = None) -> None:
        self.lines.append(line)
        self.total += line.amount
        if component is not None:
            self.by_component[component] = self.by_component.get(component, 0) + line.amount

    # ------------------------------------------------------------------ flat fees
    def flat_fee(self, fee: FeePlan) -> None:
        period = self.period
        if fee.schedule is None:
            self._fee_line(fee, period.start, period.end, period.cycle_days)
            return
        grid = fee.schedule
        k = grid.cycle_of(period.start) - 1
        while True:
            cycle = grid.period(k)
            k += 1
            if cycle is None:
                if grid.cycle_start(k - 1) > period.end:
                    break
                continue
            if cycle.start > period.end:
                break
            billed = cycle.start if fee.advance else cycle.end
            inside = period.start <= billed < period.end if fee.advance else period.start < billed <= period.end
            if inside:
                self._fee_line(fee, cycle.start, cycle.end, cycle.cycle_days)

    def _fee_line(self, fee: FeePlan, start: date, end: date, cycle_days: int) -> None:
        days = (end - start).days
        partial = days != cycle_days and fee.prorate
        exact = prorate(fee.full, days, cycle_days) if partial else fee.full
        period = self.period
        self.add(RatedLine(
            line_key(FLAT_FEE, fee.id, period.start_text if start == period.start else start), FLAT_FEE,
            fee.id, fee.name, fee.quantity, exact, self.plan.round(exact), start, end,
            start if fee.advance else end, (), None, None, None, fee.amount, (),
            (days, cycle_days) if partial else None, (), fee.evidence,
        ), fee.id)

    # ---------------------------------------------------------------------- usage
    def usage(self, component: UsagePlan, answers: Sequence[UsageAggregate]) -> None:
        for answer in answers:
            _check_usage_bounds(self.plan.contract_id, component.id, self.period, answer)
        if not component.dimensions:
            if len(answers) > 1:
                raise RatingInputError(
                    f"component {component.id!r}: {len(answers)} aggregates for an ungrouped query",
                    fix="answer an ungrouped usage query with one aggregate",
                )
            aggregate = answers[0] if answers else None
            assert component.price is not None
            self._usage_line(component, component.price, aggregate, ())
            return
        by_values = {a.dimensions: a for a in answers}
        for values, price in component.cells:
            self._usage_line(component, price, by_values.pop(values, None), values)
        for values in sorted(by_values):
            self._usage_line(component, component.default_price, by_values[values], values)

    def _usage_line(
        self, component: UsagePlan, price: PricePlan | None, aggregate: UsageAggregate | None,
        dimension: tuple[tuple[str, str], ...],
    ) -> None:
        period = self.period
        usage = ZERO if aggregate is None else aggregate.quantity
        billable = usage if usage > 0 else ZERO
        included = credited = None
        evidence = component.evidence
        if aggregate is not None and aggregate.evidence:
            evidence = aggregate.evidence + evidence
        if component.allotment is not None:
            carried = self.allotments.get(component.id, ZERO)
            included, billable, self.allotments[component.id] = apply_allotment(
                component.allotment, carried, billable
            )
        if component.meter in self.plan.unit_meters and billable > 0:
            credited, grant_refs = self.book.draw_units(component.meter, billable, component.id)
            billable -= credited
            evidence += grant_refs
        detail: tuple[tuple[str, str], ...] = ()
        if price is None:
            exact, unit_price, charges = ZERO, None, ()
            detail = (("unpriced", "no matrix cell or default_price for these dimension values"),)
        else:
            exact, unit_price, charges, detail = _price(price, billable, aggregate, component.id)
        # Positional: this runs for every usage component of every period.
        self.add(RatedLine(
            line_key(USAGE, component.id, period.start_text, dimension), USAGE, component.id,
            component.name, billable, exact, self.plan.round(exact), period.start, period.end, period.end,
            dimension, usage, included, credited, unit_price, charges, None, detail, evidence,
        ), component.id)

    # ---------------------------------------------------------------- adjustments
    def _adjustment(self, kind: str, ident: str, amount: int, detail: tuple[tuple[str, str], ...],
                    evidence: dict[str, Any], component: str | None = None) -> None:
        period = self.period
        self.add(RatedLine(
            key=line_key(kind, ident, period.start_text),
            kind=kind,
            component=ident,
            name=ident,
            quantity=ONE,
            exact_amount=to_major(amount, self.plan.currency),
            amount=amount,
            service_start=period.start,
            service_end=period.end,
            billed_on=period.end,
            detail=detail,
            evidence=(evidence,),
        ), component)

    def discounts(self) -> None:
        plan, mode = self.plan, self.plan.rounding_mode
        active = [d for d in plan.discounts if d.active(self.period)]
        for d in active:  # component discounts first, in listed order
            if d.applies_to is None:
                continue
            off = discount_off(d, self.by_component.get(d.applies_to, 0), mode)
            if off:
                self._adjustment(DISCOUNT, d.id, -off, (("applies_to", d.applies_to),),
                                 evidence_ref(plan.system, "contract", plan.contract_id, discount=d.id),
                                 component=d.applies_to)
        for d in active:
            if d.applies_to is not None:
                continue
            off = discount_off(d, self.total, mode)
            if off:
                self._adjustment(DISCOUNT, d.id, -off, (("applies_to", "invoice"),),
                                 evidence_ref(plan.system, "contract", plan.contract_id, discount=d.id))

    def commitments(self, term_spend: dict[str, int]) -> None:
        plan, period = self.plan, self.period
        # Commitment lines carry no component, so by_component stays the spend before them.
        by_component = self.by_component
        spend_all = self.total
        lines: list[tuple[str, str, int, tuple[tuple[str, str], ...]]] = []
        caps: list[tuple[frozenset[str], int]] = []  # (cap's components, reduction > 0)
        for c in plan.commitments:  # caps first, each on the spend before any commitment
            if c.minimum:
                continue
            spent = sum(by_component.get(x, 0) for x in c.applies_to) if c.applies_to else spend_all
            threshold = self._threshold(c)
            amount = cap(threshold, spent)
            if amount:
                caps.append((c.applies_to, -amount))
                lines.append((MAXIMUM_CAP, c.id, amount, self._detail(c, threshold, spent)))
        all_components: tuple[str, ...] = ()
        for c in plan.commitments:  # then minimums, on the spend after the caps they cover
            if not c.minimum:
                continue
            spent = sum(by_component.get(x, 0) for x in c.applies_to) if c.applies_to else spend_all
            if caps and c.capped:
                if c.applies_to and not all_components:
                    all_components = tuple(f.id for f in plan.fees) + tuple(u.id for u in plan.usages)
                for capped, reduction in caps:
                    spent -= capped_off(c.applies_to, reduction, capped, all_components, by_component)
            if c.per_term:
                spent = term_spend.get(c.id, 0) + spent
                term_spend[c.id] = spent
                if period.end != plan.term_end:
                    continue
            threshold = self._threshold(c)
            amount = true_up(threshold, spent)
            if amount:
                lines.append((MINIMUM_TRUE_UP, c.id, amount, self._detail(c, threshold, spent)))
        for kind, ident, amount, detail in lines:
            self._adjustment(kind, ident, amount, detail,
                             evidence_ref(plan.system, "contract", plan.contract_id, commitment=ident))

    def _threshold(self, c: CommitmentPlan) -> int:
        """The commitment's amount for this period, prorated by day when it is partial."""
        period = self.period
        if not c.per_term and c.prorate and period.days != period.cycle_days:
            return self.plan.round(prorate(c.amount, period.days, period.cycle_days))
        return c.amount_minor

    def _detail(self, c: CommitmentPlan, threshold: int, spent: int) -> tuple[tuple[str, str], ...]:
        currency = self.plan.currency
        return (
            ("commitment", decimal_text(to_major(threshold, currency))),
            ("spend", decimal_text(to_major(spent, currency))),
            ("per", "term" if c.per_term else "period"),
        )

    def credits(self) -> None:
        due = self.total
        if due <= 0:
            return
        for grant, taken in self.book.draw_money(due, self.by_component):
            self._adjustment(CREDIT, grant.id, -taken, (("category", grant.category),), grant.evidence)


# --------------------------------------------------------------------------- public


def rate_period(
    plan: RatingPlan, period: BillingPeriod, usage: UsageSet, state: RatingState | None = None
) -> PeriodRating:
    """Rate one billing period of a contract.

    Args:
        plan: the compiled contract (:func:`~subledger.core.rating.plan.compile_terms`).
        period: one of ``plan.periods()``.
        usage: answers to :func:`usage_queries` for the period; a missing answer is no usage.
        state: the closing state of the previous period (:func:`opening_state` for the first).

    Returns:
        The lines, the credit movements and the state to pass to the next period.

    Raises:
        RatingInputError: the usage cannot price a component.
    """
    with localcontext(DECIMAL_CONTEXT):
        return _rate(plan, period, usage, state or opening_state(plan))


def _rate(plan: RatingPlan, period: BillingPeriod, usage: UsageSet, state: RatingState) -> PeriodRating:
    # Runs inside DECIMAL_CONTEXT: 60 digits, so no product is rounded before the line is.
    book = CreditBook(plan.grants, state.credits, period, plan.contract_id)
    work = _Period(plan, period, book, dict(state.allotments))
    for fee in plan.fees:
        work.flat_fee(fee)
    for component, query in zip(plan.usages, plan.usage_queries(period), strict=True):
        work.usage(component, usage.get(query, ()))
    if plan.discounts:
        work.discounts()
    term_spend = dict(state.term_spend)
    if plan.commitments:
        work.commitments(term_spend)
    if plan.grants:
        work.credits()
    credits = book.close()
    return PeriodRating(
        plan.contract_id, plan.currency, period, tuple(work.lines), tuple(book.movements),
        RatingState(work.allotments, term_spend, credits),
    )


def rate_periods(
    plan: RatingPlan, usage: UsageSet, *, until: date | None = None, state: RatingState | None = None,
    periods: Sequence[BillingPeriod] | None = None,
) -> list[PeriodRating]:
    """Rate consecutive periods from the term's start (or ``periods``), chaining the state."""
    out: list[PeriodRating] = []
    state = state or opening_state(plan)
    with localcontext(DECIMAL_CONTEXT):
        for period in periods if periods is not None else plan.periods(until):
            rated = _rate(plan, period, usage, state)
            out.append(rated)
            state = rated.state
    return out


def rate_through(plan: RatingPlan, period: BillingPeriod, usage: UsageSet) -> PeriodRating:
    """Rate ``period`` with the state built by rating every earlier period of the term."""
    ratings = rate_periods(plan, usage, until=period.start)
    if not ratings or ratings[-1].period != period:
        raise ConfigError(
            f"period {period.start}..{period.end} is not a billing period of contract {plan.contract_id}",
            fix="pick the period from the contract's own schedule (plan.periods())",
        )
    return ratings[-1]
