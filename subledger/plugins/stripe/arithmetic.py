"""Stripe's price arithmetic: what a quantity costs at a price, as Stripe computes it.

Shared by the sandbox (to bill like Stripe) and by the tests that prove a Stripe price
maps onto canonical terms that rate to the same amount.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any


def transformed_quantity(price: dict[str, Any], quantity: Decimal) -> Decimal:
    """``transform_quantity``: divide, then round up or down to a whole number."""
    tq = price.get("transform_quantity")
    if not tq:
        return quantity
    divided = quantity / Decimal(tq["divide_by"])
    return divided.to_integral_value(rounding=ROUND_CEILING if tq["round"] == "up" else ROUND_FLOOR)


def price_amount(price: dict[str, Any], quantity: Decimal) -> Decimal:
    """What ``quantity`` costs at ``price``, in (possibly fractional) minor units, unrounded.

    Per-unit prices multiply the (transformed) quantity by ``unit_amount_decimal``.
    Graduated tiers price each unit at its tier's rate and add the flat amount of every
    tier reached (the first tier's even at zero). Volume tiers price all units at the rate
    of the tier the total falls in, plus that tier's flat amount.
    """
    if price["billing_scheme"] == "per_unit":
        return Decimal(str(price["unit_amount_decimal"] or 0)) * transformed_quantity(price, quantity)
    tiers = price["tiers"]
    if price["tiers_mode"] == "volume":
        for tier in tiers:
            if tier["up_to"] is None or quantity <= tier["up_to"]:
                return _unit(tier) * quantity + _flat(tier)
    total = Decimal(0)
    lower = Decimal(0)
    for i, tier in enumerate(tiers):
        if i > 0 and quantity <= lower:
            break
        upper = None if tier["up_to"] is None else Decimal(tier["up_to"])
        in_tier = (quantity if upper is None else min(quantity, upper)) - lower
        total += _unit(tier) * max(in_tier, Decimal(0)) + _flat(tier)
        if upper is None:
            break
        lower = upper
    return total


def line_amount(price: dict[str, Any], quantity: Decimal) -> int:
    """The invoice line amount in minor units: :func:`price_amount` rounded half up."""
    return int(price_amount(price, quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _unit(tier: dict[str, Any]) -> Decimal:
    value = tier.get("unit_amount_decimal")
    if value is None:
        value = tier.get("unit_amount") or 0
    return Decimal(str(value))


def _flat(tier: dict[str, Any]) -> Decimal:
    value = tier.get("flat_amount_decimal")
    if value is None:
        value = tier.get("flat_amount") or 0
    return Decimal(str(value))
