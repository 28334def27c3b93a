"""Helpers for the rating tests: build terms from a few fields and rate one period.

A uniquely named module (not conftest) so test files can import it without clashing
with other suites' conftest modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from subledger.core.rating import (
    PeriodRating,
    RatingState,
    UsageAggregate,
    compile_terms,
    rate_period,
    usage_queries,
)
from subledger.core.rating.periods import select_period
from subledger.core.terms import ContractTerms, load_terms


def make_terms(components: list[dict[str, Any]], **fields: Any) -> ContractTerms:
    """Terms for a monthly USD contract over 2026 with ``components`` and any other fields."""
    data: dict[str, Any] = {
        "currency": "USD",
        "start_date": "2026-01-01",
        "end_date": "2026-12-31",
        "components": components,
    }
    data.update(fields)
    return load_terms(data)


def usage_for(terms: ContractTerms, period_selector: str, quantities: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(plan, period, usage set) with ``quantities`` by component id."""
    plan = compile_terms(terms, contract_id="c-1", system="test")
    period = select_period(plan.schedule, period_selector)
    usage = {}
    for component, query in zip(plan.usages, usage_queries(plan, period), strict=True):
        if component.id in quantities:
            usage[query] = (UsageAggregate(Decimal(str(quantities[component.id]))),)
    return plan, period, usage


def rate_one(
    terms: ContractTerms, quantities: Mapping[str, Any] | None = None, period: str = "2026-03",
    state: RatingState | None = None,
) -> PeriodRating:
    """Rate one period of ``terms`` with ``quantities`` of usage by component id."""
    plan, billing_period, usage = usage_for(terms, period, quantities or {})
    return rate_period(plan, billing_period, usage, state)


def unit_usage(model: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A usage component ``u`` on meter ``m`` priced by ``model``."""
    return {"type": "usage", "id": "u", "meter": "m", "price": model, **extra}


def tiers(*rows: tuple[Any, str, str]) -> list[dict[str, Any]]:
    """Tiers from ``(up_to, unit_price, flat_fee)`` rows; ``None`` is the open last tier."""
    return [{"up_to": up, "unit_price": price, "flat_fee": flat} for up, price, flat in rows]
