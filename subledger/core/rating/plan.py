"""Compiling contract terms into a rating plan: plain tuples the engine prices quickly.

Validation lives in the terms models; compiling only restates them in the shape the
engine's loops want (tiers as tuples, money as minor units, dates as UTC datetimes) and
adds the evidence references each line will carry. Compile once per contract and rate
as many periods as needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from subledger.core.errors import ConfigError
from subledger.core.model.base import evidence_ref
from subledger.core.money import DECIMAL_CONTEXT, exponent, parse_major
from subledger.core.rating.allotments import AllotmentPlan
from subledger.core.rating.commitments import CommitmentPlan
from subledger.core.rating.credits import Grant, in_draw_order
from subledger.core.rating.discounts import DiscountPlan
from subledger.core.rating.periods import BillingPeriod, Schedule, midnight, schedule
from subledger.core.rating.tiers import CompiledTier
from subledger.core.rating.usage import UsageQuery
from subledger.core.terms import ContractDocument, ContractTerms, FlatFee, UsageComponent
from subledger.core.terms.bounds import MAX_MINOR, money_problem
from subledger.core.terms.prices import (
    GraduatedPrice,
    PackagePrice,
    PercentagePrice,
    PerUnitPrice,
    VolumePrice,
)

ONE = Decimal(1)
MAX_MINOR_DIGITS = len(str(MAX_MINOR)) - 1  # 10**15: 15


class RatingBoundsError(ConfigError):
    """A rated amount is out of the bounds money can take (docs/rating.md#bounds)."""


@dataclass(frozen=True, slots=True)
class PricePlan:
    """A compiled price model."""

    model: str
    unit_price: Decimal | None = None
    tiers: tuple[CompiledTier, ...] = ()
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    round_up: bool = True
    rate: Decimal | None = None
    fixed_fee: Decimal = Decimal(0)
    minimum_fee: Decimal | None = None
    maximum_fee: Decimal | None = None


@dataclass(frozen=True, slots=True)
class FeePlan:
    """A compiled flat fee."""

    id: str
    name: str
    amount: Decimal  # per cadence, per unit of quantity
    quantity: Decimal
    advance: bool
    schedule: Schedule | None  # None: the fee follows the billing cycle
    prorate: bool
    evidence: tuple[dict[str, Any], ...]
    full: Decimal  # amount x quantity: the exact charge for a full cycle


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """A compiled usage component."""

    id: str
    name: str
    meter: str
    aggregation: str
    unique_property: str | None
    price: PricePlan | None
    dimensions: tuple[str, ...]
    cells: tuple[tuple[tuple[tuple[str, str], ...], PricePlan], ...]
    default_price: PricePlan | None
    allotment: AllotmentPlan | None
    transactions: bool
    evidence: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class RatingPlan:
    """Everything the engine needs to rate one contract, compiled from its terms."""

    terms: ContractTerms
    contract_id: str
    system: str
    currency: str
    scale: Decimal  # 10 ** exponent: major to minor units
    rounding_mode: str
    schedule: Schedule
    fees: tuple[FeePlan, ...]
    usages: tuple[UsagePlan, ...]
    commitments: tuple[CommitmentPlan, ...]
    discounts: tuple[DiscountPlan, ...]
    grants: tuple[Grant, ...]  # in draw-down order
    unit_meters: frozenset[str]  # meters some unit grant covers
    evidence: dict[str, Any]
    _queries: dict[BillingPeriod, tuple[UsageQuery, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def round(self, exact: Decimal) -> int:
        """Round a major-unit amount to minor units with the contract's rounding.

        Raises:
            RatingBoundsError: the amount is not below 10^15 minor units (it would not fit
                the store's money columns, nor add up with others inside 64 bits).
        """
        scaled = exact * self.scale
        # Checked on the exponent before rounding: quantize would fail past 60 digits.
        if scaled and scaled.adjusted() >= MAX_MINOR_DIGITS:
            raise RatingBoundsError(
                f"contract {self.contract_id}: a rated amount of {scaled:.6E} {self.currency} minor units "
                f"{money_problem(MAX_MINOR)}",
                fix="check the usage quantities and prices of this contract: one line must stay below "
                f"{Decimal(MAX_MINOR).scaleb(-exponent(self.currency)):,f} {self.currency}",
            )
        minor = int(scaled.quantize(ONE, self.rounding_mode, DECIMAL_CONTEXT))
        if money_problem(minor):
            raise RatingBoundsError(
                f"contract {self.contract_id}: a rated amount of {minor} {self.currency} minor units "
                f"{money_problem(minor)}",
                fix="check the usage quantities and prices of this contract",
            )
        return minor

    def usage_queries(self, period: BillingPeriod) -> tuple[UsageQuery, ...]:
        """The aggregates rating ``period`` needs, one per usage component (cached)."""
        queries = self._queries.get(period)
        if queries is None:
            start, end = period.start_at, period.end_at
            queries = tuple(
                UsageQuery(u.meter, u.aggregation, start, end, u.unique_property, u.dimensions, u.transactions)
                for u in self.usages
            )
            self._queries[period] = queries
        return queries

    def periods(self, until: date | None = None) -> list[BillingPeriod]:
        """The contract's billing periods (through the one holding ``until`` when given)."""
        return self.schedule.periods(until)

    @property
    def term_end(self) -> date | None:
        return self.schedule.term_end


def _price(model: Any) -> PricePlan:
    if isinstance(model, PerUnitPrice):
        return PricePlan("per_unit", unit_price=model.unit_price)
    if isinstance(model, GraduatedPrice | VolumePrice):
        tiers = tuple((t.up_to, t.unit_price, t.flat_fee) for t in model.tiers)
        return PricePlan(model.model, tiers=tiers)
    if isinstance(model, PackagePrice):
        return PricePlan(
            "package", package_size=model.package_size, package_price=model.package_price,
            round_up=model.rounding == "up",
        )
    if isinstance(model, PercentagePrice):
        return PricePlan(
            "percentage", rate=model.rate, fixed_fee=model.fixed_fee, minimum_fee=model.minimum_fee,
            maximum_fee=model.maximum_fee,
        )
    raise TypeError(f"unknown price model {model!r}")  # pragma: no cover - the union is closed


def grants_from_terms(terms: ContractTerms, *, system: str, contract_id: str) -> list[Grant]:
    """The contract's own credit grants as engine grants (money in minor units)."""
    grants = []
    for g in terms.credits:
        money = g.amount is not None
        effective = midnight(g.effective or terms.start_date)

        def amount(value: Decimal | None, units: Decimal | None, money: bool = money) -> int | Decimal:
            if money:
                assert value is not None
                return parse_major(value, terms.currency)
            assert units is not None
            return units

        grants.append(
            Grant(
                id=g.id,
                money=money,
                amount=amount(g.amount, g.units),
                effective_at=effective,
                expires_at=None if g.expires is None else midnight(g.expires),
                priority=g.priority,
                category=g.category,
                cost_basis=g.effective_cost_basis,
                currency=terms.currency if money else None,
                meter=g.meter,
                applies_to=frozenset(g.applies_to),
                top_ups=tuple((midnight(t.effective), amount(t.amount, t.units)) for t in g.top_ups),
                evidence=evidence_ref(system, "contract", contract_id, credit=g.id),
            )
        )
    return grants


def compile_terms(
    terms: ContractTerms, *, contract_id: str | None = None, system: str = "terms",
    extra_grants: Iterable[Grant] = (),
) -> RatingPlan:
    """Compile ``terms`` for rating.

    Args:
        terms: validated terms (a :class:`ContractDocument` is accepted too).
        contract_id: used in evidence and credit entry keys (defaults to the document id).
        system: the source system named in evidence.
        extra_grants: credit grants held outside the terms (e.g. from a billing system).
    """
    if contract_id is None:
        contract_id = terms.id if isinstance(terms, ContractDocument) else "contract"
    exp = exponent(terms.currency)
    billing = terms.billing
    grid = schedule(terms.start_date, terms.end_date, billing.months, billing.anchor_day)

    def ref(**extra: Any) -> dict[str, Any]:
        return evidence_ref(system, "contract", contract_id, **extra)

    fees: list[FeePlan] = []
    usages: list[UsagePlan] = []
    for c in terms.components:
        if isinstance(c, FlatFee):
            fee_grid = None
            if c.cadence is not None and c.cadence.months != billing.months:
                fee_grid = schedule(terms.start_date, terms.end_date, c.cadence.months, billing.anchor_day)
            fees.append(FeePlan(
                c.id, c.name or c.id, c.amount, c.quantity, c.timing == "advance", fee_grid,
                c.proration == "by_day", (ref(component=c.id),), c.amount * c.quantity,
            ))
        else:
            assert isinstance(c, UsageComponent)
            allot = None
            if c.allotment is not None:
                a = c.allotment
                allot = AllotmentPlan(a.quantity, a.per == "term", a.rollover, a.rollover_cap)
            cells = tuple(
                (tuple((d, cell.values[d]) for d in c.dimensions), _price(cell.price)) for cell in c.matrix
            )
            usages.append(UsagePlan(
                c.id, c.name or c.id, c.meter, c.aggregation, c.unique_property,
                None if c.price is None else _price(c.price), tuple(c.dimensions), cells,
                None if c.default_price is None else _price(c.default_price), allot,
                any(p.model == "percentage" for p in c.prices()), (ref(component=c.id),),
            ))
    commitments = tuple(
        CommitmentPlan(
            m.id, m.kind == "minimum", m.amount, parse_major(m.amount, terms.currency), m.per == "term",
            frozenset(m.applies_to), m.proration == "by_day", m.measured_on_capped_spend,
        )
        for m in terms.commitments
    )
    discounts = []
    for d in terms.discounts:
        starts = d.starts or terms.start_date
        until = d.ends
        if d.periods is not None:
            until = grid.cycle_start(grid.cycle_of(starts) + d.periods)
        discounts.append(DiscountPlan(
            d.id, d.percent, None if d.amount is None else parse_major(d.amount, terms.currency),
            d.applies_to, starts, until,
        ))
    all_grants = [*grants_from_terms(terms, system=system, contract_id=contract_id), *extra_grants]
    ids = [g.id for g in all_grants]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(
            f"contract {contract_id}: credit grant ids {repeated} are used more than once",
            fix="give every credit grant, in the terms and in the billing system, its own id",
        )
    grants = in_draw_order(all_grants)
    return RatingPlan(
        terms=terms,
        contract_id=contract_id,
        system=system,
        currency=terms.currency,
        scale=Decimal(10) ** exp,
        rounding_mode=terms.rounding.decimal_mode,
        schedule=grid,
        fees=tuple(fees),
        usages=tuple(usages),
        commitments=commitments,
        discounts=tuple(discounts),
        grants=grants,
        unit_meters=frozenset(g.meter for g in grants if not g.money and g.meter),
        evidence=ref(),
    )
