"""Percentage (or basis-point) pricing of transaction amounts.

One transaction's fee is ``amount x rate + fixed_fee``, then raised to the minimum and
lowered to the maximum per transaction when those are set. The fees are summed exactly
and the line is rounded once, so no per-transaction rounding error accumulates.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

ZERO = Decimal(0)


def transaction_fee(
    amount: Decimal, rate: Decimal, fixed_fee: Decimal, minimum: Decimal | None, maximum: Decimal | None
) -> Decimal:
    """The exact fee of one transaction."""
    fee = amount * rate + fixed_fee
    if minimum is not None and fee < minimum:
        fee = minimum
    if maximum is not None and fee > maximum:
        fee = maximum
    return fee


def percentage_of_transactions(
    amounts: Iterable[Decimal], rate: Decimal, fixed_fee: Decimal, minimum: Decimal | None,
    maximum: Decimal | None,
) -> tuple[Decimal, Decimal, int]:
    """Sum the fees of every transaction: returns (total fee, total amount, count)."""
    total = ZERO
    volume = ZERO
    count = 0
    for amount in amounts:
        total += transaction_fee(amount, rate, fixed_fee, minimum, maximum)
        volume += amount
        count += 1
    return total, volume, count


def percentage_of_total(volume: Decimal, count: int, rate: Decimal, fixed_fee: Decimal) -> Decimal:
    """The same sum from aggregates alone; exact when there is no per-transaction min or max."""
    return volume * rate + fixed_fee * count
