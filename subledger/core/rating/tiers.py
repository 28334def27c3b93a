"""Quantity price models: per unit, graduated and volume tiers, and packages.

Each function is pure and exact: it returns the unrounded major-unit amount (and its
breakdown). Rounding happens once per line, elsewhere. Tiers are compiled to tuples
``(up_to, unit_price, flat_fee)`` with ``up_to`` inclusive and ``None`` for the open
last tier, as Stripe defines them.
"""

from __future__ import annotations

from decimal import Decimal

from subledger.core.rating.lines import TierCharge

CompiledTier = tuple[Decimal | None, Decimal, Decimal]

ZERO = Decimal(0)


def per_unit(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """Every unit at one price: ``1000 x 0.05 = 50``."""
    return quantity * unit_price


def graduated(quantity: Decimal, tiers: tuple[CompiledTier, ...]) -> tuple[Decimal, tuple[TierCharge, ...]]:
    """Each unit at the price of the tier it falls in, plus each reached tier's flat fee.

    The first tier is always reached, so its flat fee is charged even at zero usage;
    a later tier is reached once the quantity exceeds the previous tier's ``up_to``
    (by any amount: a fractional quantity is placed by its exact value).
    """
    charges: list[TierCharge] = []
    total = ZERO
    below = ZERO
    for i, (up_to, unit_price, flat_fee) in enumerate(tiers):
        top = quantity if up_to is None or quantity < up_to else up_to
        units = top - below
        amount = units * unit_price + flat_fee
        charges.append(TierCharge(i, units, unit_price, flat_fee, amount))
        total += amount
        if up_to is None or quantity <= up_to:
            break
        below = up_to
    return total, tuple(charges)


def volume_tier(quantity: Decimal, tiers: tuple[CompiledTier, ...]) -> int:
    """The index of the tier the whole quantity reaches (zero reaches the first tier)."""
    for i, (up_to, _price, _flat) in enumerate(tiers):
        if up_to is None or quantity <= up_to:
            return i
    return len(tiers) - 1  # unreachable for validated tiers: the last is open


def volume(quantity: Decimal, tiers: tuple[CompiledTier, ...]) -> tuple[Decimal, TierCharge]:
    """All units at the price of the tier the total reaches, plus that tier's flat fee."""
    i = volume_tier(quantity, tiers)
    _up_to, unit_price, flat_fee = tiers[i]
    amount = quantity * unit_price + flat_fee
    return amount, TierCharge(i, quantity, unit_price, flat_fee, amount)


def package_blocks(quantity: Decimal, size: Decimal, round_up: bool) -> Decimal:
    """How many blocks of ``size`` a quantity makes; a partial block counts when ``round_up``."""
    blocks, rest = divmod(quantity, size)
    if rest and round_up:
        blocks += 1
    return blocks


def package(quantity: Decimal, size: Decimal, price: Decimal, round_up: bool) -> tuple[Decimal, Decimal]:
    """``price`` per block of ``size`` units: returns (amount, blocks)."""
    blocks = package_blocks(quantity, size, round_up)
    return blocks * price, blocks
