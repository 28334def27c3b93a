"""Commitments: minimum spend (true-up) and maximum spend (cap).

The spend a commitment covers is the net of its components' charges and discounts (and,
for a commitment on every component, of invoice-level discounts too), before credits:
credits pay an invoice, they do not reduce spend. A per-period amount is prorated by day
for a partial period and rounded with the contract's rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class CommitmentPlan:
    """A compiled commitment."""

    id: str
    minimum: bool
    amount: Decimal  # major units
    amount_minor: int
    per_term: bool
    applies_to: frozenset[str]
    prorate: bool


def true_up(minimum_minor: int, spent_minor: int) -> int:
    """The shortfall billed to reach the minimum (zero when the minimum is met)."""
    return max(0, minimum_minor - spent_minor)


def cap(maximum_minor: int, spent_minor: int) -> int:
    """The (negative or zero) adjustment that brings spend down to the maximum."""
    return min(0, maximum_minor - spent_minor)
