"""Usage, overage and per-unit fees: recognized in the period the usage occurs.

Usage is earned as it happens, whether or not it has been invoiced; what is earned and
not yet invoiced sits in unbilled receivable until the invoice moves it to AR. A
usage component's amount to date is its price applied to the cumulative quantity to
date, so tiers, allotments and pools follow the usage as it accrues:

* per-unit: ``quantity x unit price`` on the day it occurs;
* allotment per period: nothing until the period's cumulative usage passes the
  included units, then overage as it occurs (one curve per billing period);
* pooled allotment over the term: the same, on cumulative usage over the whole term.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from subledger.core.money import exponent
from subledger.core.revrec.calendar import instant
from subledger.core.revrec.curves import NEVER, Computed, Incurred

_MICRO = timedelta(microseconds=1)

Usage = Iterable[tuple[date | datetime, Decimal | int]]
"""``(when, quantity)`` pairs: a day's aggregate (stamped at the day) or single events."""


def _minor_scale(currency: str) -> Fraction:
    return Fraction(10) ** exponent(currency)


def per_unit(usage: Usage, unit_price: Decimal, currency: str) -> Incurred:
    """Each quantity times ``unit_price`` (major units), earned when it occurs.

    >>> c = per_unit([(date(2026, 1, 3), 200)], Decimal("0.05"), "USD")
    >>> c.total
    Fraction(1000, 1)
    """
    scale = _minor_scale(currency) * Fraction(unit_price)
    return Incurred.of((when, Fraction(qty) * scale) for when, qty in usage)


def priced_cumulatively(
    usage: Usage,
    price: Callable[[Decimal], Decimal],
    currency: str,
    *,
    period_end: date | datetime | None = None,
    label: str = "",
) -> Computed:
    """Recognized to date is ``price(cumulative quantity to date)`` (major units).

    ``price`` is the component's price model for the whole quantity (a tier table, an
    allotment with overage): applying it to the running total makes each unit earn
    its marginal price in the period it is used. If a model makes the amount fall as
    quantity rises (volume tiers crossing a boundary), the fall is a negative
    catch-up in that period, so the total still equals the priced quantity.

    Nothing is earned before the first usage; ``period_end`` (exclusive) settles the
    component, so a fee charged even at zero usage is earned by the end of the period.
    """
    steps = sorted((instant(when), Decimal(qty)) for when, qty in usage)
    scale = _minor_scale(currency)
    end = instant(period_end) if period_end is not None else None
    begins = steps[0][0] if steps else (end - _MICRO if end else NEVER)
    settles = max([s[0] + _MICRO for s in steps[-1:]] + ([end] if end else []), default=begins)

    def fn(at: datetime) -> Fraction:
        seen = [q for when, q in steps if when < at]
        if not seen and (end is None or at < end):
            return Fraction(0)
        return Fraction(price(sum(seen, Decimal(0)))) * scale

    return Computed(fn, begins, settles, label)


def overage(included: Decimal, unit_price: Decimal) -> Callable[[Decimal], Decimal]:
    """The price of a quantity with ``included`` units free and the rest at ``unit_price``."""

    def price(quantity: Decimal) -> Decimal:
        return max(quantity - included, Decimal(0)) * unit_price

    return price


def overage_in_period(usage: Usage, included: Decimal, unit_price: Decimal, currency: str) -> Computed:
    """Overage of one billing period's usage past its allotment, as it occurs."""
    return priced_cumulatively(usage, overage(included, unit_price), currency, label="overage")


def pooled_overage(usage: Usage, pool: Decimal, unit_price: Decimal, currency: str) -> Computed:
    """Overage once cumulative usage over the whole term passes the pool."""
    return priced_cumulatively(usage, overage(pool, unit_price), currency, label="pooled overage")
