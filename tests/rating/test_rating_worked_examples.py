"""The published worked examples of issue 3, each rated through the whole engine.

USD, a monthly contract over 2026, period March 2026; amounts in cents.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from rating_support import make_terms, rate_one, tiers, unit_usage

from subledger.core.rating.lines import MINIMUM_TRUE_UP, USAGE


def usage_amount(model: dict, quantity: str | int, **extra: object) -> int:
    rated = rate_one(make_terms([unit_usage(model, **extra)]), {"u": quantity})
    [line] = [line for line in rated.lines if line.kind == USAGE]
    assert rated.total == line.amount
    return line.amount


def test_per_unit_five_cents_times_1000_is_50_dollars() -> None:
    assert usage_amount({"model": "per_unit", "unit_price": "0.05"}, 1000) == 50_00


STRIPE_GRADUATED = tiers((10, "10", "2"), (20, "5", "3"), (None, "5", "3"))


@pytest.mark.parametrize(
    ("quantity", "dollars"),
    [(0, 2), (1, 12), (10, 102), (11, 110), (12, 115), (21, 163)],
)
def test_graduated_flat_fees_follow_stripe(quantity: int, dollars: int) -> None:
    # First tier's $2 flat fee even at zero usage; each later tier's flat fee once reached.
    assert usage_amount({"model": "graduated", "tiers": STRIPE_GRADUATED}, quantity) == dollars * 100


def test_graduated_tier_breakdown_for_21_units() -> None:
    rated = rate_one(make_terms([unit_usage({"model": "graduated", "tiers": STRIPE_GRADUATED})]), {"u": 21})
    [line] = rated.lines
    assert [(t.quantity, t.amount) for t in line.tiers] == [
        (Decimal(10), Decimal(102)),  # 10 x $10 + $2
        (Decimal(10), Decimal(53)),  # 10 x $5 + $3
        (Decimal(1), Decimal(8)),  # 1 x $5 + $3
    ]


THREE_TIERS = tiers((1000, "0.10", "0"), (10000, "0.05", "0"), (None, "0.01", "0"))


def test_15000_units_graduated_600_volume_150() -> None:
    assert usage_amount({"model": "graduated", "tiers": THREE_TIERS}, 15000) == 600_00
    assert usage_amount({"model": "volume", "tiers": THREE_TIERS}, 15000) == 150_00


def test_25000_units_graduated_220() -> None:
    model = {"model": "graduated", "tiers": tiers((10000, "0.01", "0"), (50000, "0.008", "0"), (None, "0.005", "0"))}
    assert usage_amount(model, 25000) == 220_00  # 10,000 x 0.01 + 15,000 x 0.008


def test_volume_with_flat_fee_65000_units_49_without_39() -> None:
    rows = [(10000, "0.0010"), (50000, "0.0008"), (100000, "0.0006"), (None, "0.0004")]
    with_flat = {"model": "volume", "tiers": tiers(*[(u, p, "10") for u, p in rows])}
    without = {"model": "volume", "tiers": tiers(*[(u, p, "0") for u, p in rows])}
    assert usage_amount(with_flat, 65000) == 49_00  # 65,000 x 0.0006 + 10
    assert usage_amount(without, 65000) == 39_00


def test_400_units_volume_1200_graduated_1300() -> None:
    rows = tiers((100, "4", "0"), (500, "3", "0"), (None, "2", "0"))
    assert usage_amount({"model": "volume", "tiers": rows}, 400) == 1200_00
    assert usage_amount({"model": "graduated", "tiers": rows}, 400) == 1300_00


def test_volume_101_units_all_at_40_cents() -> None:
    model = {"model": "volume", "tiers": tiers((10, "0.50", "0"), (None, "0.40", "0"))}
    assert usage_amount(model, 101) == 40_40


def test_package_5_dollars_per_100_first_100_free_201_units_is_10() -> None:
    model = {"model": "package", "package_size": 100, "package_price": "5", "rounding": "up"}
    # 201 - 100 free = 101 units = 2 packages (rounded up) = $10
    assert usage_amount(model, 201, allotment={"quantity": 100}) == 10_00


def test_1000_calls_included_1300_used_one_cent_over_is_3_dollars() -> None:
    rated = rate_one(
        make_terms([unit_usage({"model": "per_unit", "unit_price": "0.01"}, allotment={"quantity": 1000})]),
        {"u": 1300},
    )
    [line] = rated.lines
    assert (line.usage, line.included, line.quantity, line.amount) == (
        Decimal(1300), Decimal(1000), Decimal(300), 3_00,
    )


def test_500_mb_included_800_used_100_mb_blocks_at_2_is_6_dollars() -> None:
    model = {"model": "package", "package_size": 100, "package_price": "2"}
    assert usage_amount(model, 800, allotment={"quantity": 500}) == 6_00


def test_subscription_50_plus_3_units_at_10_with_100_minimum() -> None:
    terms = make_terms(
        [
            {"type": "flat_fee", "id": "subscription", "amount": "50"},
            unit_usage({"model": "per_unit", "unit_price": "10"}),
        ],
        commitments=[{"id": "minimum", "kind": "minimum", "amount": "100"}],
    )
    rated = rate_one(terms, {"u": 3})
    assert [(line.kind, line.amount) for line in rated.lines] == [
        ("flat_fee", 50_00),
        ("usage", 30_00),
        (MINIMUM_TRUE_UP, 20_00),
    ]
    assert rated.total == 100_00


@pytest.mark.parametrize(("usage_dollars", "true_up_dollars"), [(300, 200), (600, 0)])
def test_commitment_500_true_up(usage_dollars: int, true_up_dollars: int) -> None:
    terms = make_terms(
        [unit_usage({"model": "per_unit", "unit_price": "1"})],
        commitments=[{"id": "commit", "kind": "minimum", "amount": "500"}],
    )
    rated = rate_one(terms, {"u": usage_dollars})
    true_ups = [line.amount for line in rated.lines if line.kind == MINIMUM_TRUE_UP]
    assert sum(true_ups) == true_up_dollars * 100
    assert rated.total == max(usage_dollars, 500) * 100


@pytest.mark.parametrize(
    ("quantity", "graduated_cents", "volume_cents"),
    [
        ("10", 102_00, 5_00),  # exactly the bound: still the first tier (up_to is inclusive)
        ("10.5", 107_50, 4_20),  # 102 + 0.5 x 5 + 3; volume: all 10.5 at 0.40
        ("10.0001", 105_00, 4_00),  # 102 + 0.0001 x 5 + 3 = 105.0005; volume 4.00004
    ],
)
def test_a_fractional_quantity_selects_its_tier_by_exact_value(
    quantity: str, graduated_cents: int, volume_cents: int
) -> None:
    graduated = {"model": "graduated", "tiers": STRIPE_GRADUATED}
    volume = {"model": "volume", "tiers": tiers((10, "0.50", "0"), (None, "0.40", "0"))}
    assert usage_amount(graduated, quantity) == graduated_cents
    assert usage_amount(volume, quantity) == volume_cents
