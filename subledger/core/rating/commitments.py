"""Commitments: minimum spend (true-up) and maximum spend (cap).

The spend a commitment covers is the net of its components' charges and discounts (and,
for a commitment on every component, of invoice-level discounts too), before credits:
credits pay an invoice, they do not reduce spend. A per-period amount is prorated by day
for a partial period and rounded with the contract's rounding.

Caps come first, each measured on the spend before any commitment line. A minimum is then
measured on the spend after the caps on its components (unless it is measured on uncapped
spend): a minimum on every component counts every cap's reduction; a minimum on some
components counts a cap whose components are all among them in full, and of a cap that
only partly overlaps them, the part of its reduction that falls on the overlap when the
reduction is split across the cap's components in proportion to their spend
(:func:`capped_off`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from subledger.core.money import allocate


@dataclass(frozen=True, slots=True)
class CommitmentPlan:
    """A compiled commitment.

    Attributes:
        capped: for a minimum, whether it is measured on the spend after caps (the default).
    """

    id: str
    minimum: bool
    amount: Decimal  # major units
    amount_minor: int
    per_term: bool
    applies_to: frozenset[str]
    prorate: bool
    capped: bool = True


def true_up(minimum_minor: int, spent_minor: int) -> int:
    """The shortfall billed to reach the minimum (zero when the minimum is met)."""
    return max(0, minimum_minor - spent_minor)


def cap(maximum_minor: int, spent_minor: int) -> int:
    """The (negative or zero) adjustment that brings spend down to the maximum."""
    return min(0, maximum_minor - spent_minor)


def capped_off(
    measured: frozenset[str], reduction: int, capped: frozenset[str], all_components: Sequence[str],
    by_component: Mapping[str, int],
) -> int:
    """The part of a cap's ``reduction`` (positive minor units) a minimum on ``measured`` counts.

    Args:
        measured: the minimum's components (empty: every component, so the whole reduction).
        reduction: what the cap took off, positive.
        capped: the cap's components (empty: every component).
        all_components: every component id of the contract.
        by_component: each component's net spend before commitments, minor units.

    Returns:
        The whole reduction when the cap's components are all measured, nothing when none
        are, otherwise the measured components' parts of the reduction split over the cap's
        components (sorted by id) in proportion to their spend with
        :func:`~subledger.core.money.allocate`, so the parts are exact and deterministic.
    """
    if not measured:
        return reduction
    covered = capped or frozenset(all_components)
    if covered <= measured:
        return reduction
    if covered.isdisjoint(measured):
        return 0
    ids = sorted(covered)
    # Net spend is never negative (discounts stop at the charges); clamp all the same so a
    # component cannot take a negative share. The cap only bites on positive spend, so some
    # weight is positive.
    weights = [max(0, by_component.get(x, 0)) for x in ids]
    parts = allocate(reduction, weights)
    return sum(part for x, part in zip(ids, parts, strict=True) if x in measured)
