"""The rating engine: contract terms and usage in, rated lines and credit movements out.

Typical use::

    from subledger.core.rating import compile_terms, rate_period, usage_queries

    plan = compile_terms(terms, contract_id="acme-2026", system="files")
    period = plan.periods()[2]
    usage = aggregate_events(events, usage_queries(plan, period))
    rated = rate_period(plan, period, usage, state)   # rated.lines, rated.movements, rated.state

See ``docs/rating.md`` for the semantics (rounding, proration, credit order, deltas).
"""

from subledger.core.rating.credits import CreditMovement, Grant, GrantBalance
from subledger.core.rating.deltas import delta_lines, delta_movements
from subledger.core.rating.engine import (
    PeriodRating,
    RatingInputError,
    RatingState,
    opening_state,
    rate_period,
    rate_periods,
    rate_through,
    usage_queries,
)
from subledger.core.rating.lines import RatedLine, TierCharge, line_key
from subledger.core.rating.periods import BillingPeriod, select_period
from subledger.core.rating.plan import RatingBoundsError, RatingPlan, compile_terms, grants_from_terms
from subledger.core.rating.usage import UsageAggregate, UsageQuery, UsageSet, aggregate_events

__all__ = [
    "BillingPeriod",
    "CreditMovement",
    "Grant",
    "GrantBalance",
    "PeriodRating",
    "RatedLine",
    "RatingBoundsError",
    "RatingInputError",
    "RatingPlan",
    "RatingState",
    "TierCharge",
    "UsageAggregate",
    "UsageQuery",
    "UsageSet",
    "aggregate_events",
    "compile_terms",
    "delta_lines",
    "delta_movements",
    "grants_from_terms",
    "line_key",
    "opening_state",
    "rate_period",
    "rate_periods",
    "rate_through",
    "select_period",
    "usage_queries",
]
