"""Proration by day.

A partial period is charged ``days / cycle_days`` of the full amount, where both count
whole UTC days and ``cycle_days`` is the length of the full cycle the period belongs to
(so February's cycle has 28 or 29 days and March's 31). The product is formed before the
single division, and the line is rounded once; a full period is charged exactly the
full amount.
"""

from __future__ import annotations

from decimal import Decimal


def prorate(amount: Decimal, days: int, cycle_days: int) -> Decimal:
    """``amount`` for ``days`` of a ``cycle_days`` cycle (exact when the period is full)."""
    if days == cycle_days:
        return amount
    return amount * days / cycle_days
