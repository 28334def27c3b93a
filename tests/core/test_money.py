"""Money is integer minor units with an ISO currency; rounding happens once, explicitly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subledger.core.errors import ConfigError
from subledger.core.money import Money, Rounding, allocate, exponent, parse_major, to_major, to_minor


@pytest.mark.parametrize(
    ("code", "exp"), [("USD", 2), ("usd", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3)]
)
def test_minor_unit_exponents_come_from_iso_4217(code: str, exp: int) -> None:
    assert exponent(code) == exp


@pytest.mark.parametrize("code", ["XAU", "ZZZ", "US", "", "12A"])
def test_codes_without_a_minor_unit_are_refused_with_the_fix(code: str) -> None:
    with pytest.raises(ConfigError, match="ISO 4217") as err:
        exponent(code)
    assert err.value.fix


def test_rounding_is_half_up_by_default_and_configurable() -> None:
    assert to_minor(Decimal("12.345"), "USD") == 1235
    assert to_minor(Decimal("12.345"), "USD", Rounding.HALF_EVEN) == 1234
    assert to_minor(Decimal("-12.345"), "USD") == -1235  # half away from zero
    assert to_minor(Decimal("12.341"), "USD", Rounding.UP) == 1235
    assert to_minor(Decimal("12.349"), "USD", Rounding.DOWN) == 1234
    assert to_minor(Decimal("0.5"), "JPY") == 1
    assert to_minor(Decimal("1.2345"), "KWD") == 1235


def test_floats_never_reach_money() -> None:
    with pytest.raises(TypeError):
        to_minor(0.1, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(1.0, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_major(0.1, "USD")  # type: ignore[arg-type]


def test_parse_major_is_exact_and_refuses_hidden_rounding() -> None:
    assert parse_major("12.35", "USD") == 1235
    assert parse_major("1000", "JPY") == 1000
    assert parse_major("1.234", "KWD") == 1234
    with pytest.raises(ValueError, match="more than 2 decimal places for USD"):
        parse_major("12.345", "USD")
    with pytest.raises(ValueError, match="not a number"):
        parse_major("twelve", "USD")


def test_money_arithmetic_stays_in_one_currency() -> None:
    assert Money.of("10.50", "usd") + Money.of("0.25", "USD") == Money(1075, "USD")
    assert str(Money(1075, "USD")) == "10.75 USD"
    assert Money(5, "JPY").major == Decimal("5")
    with pytest.raises(ValueError, match="cannot combine USD with EUR"):
        Money(1, "USD") + Money(1, "EUR")


def test_allocate_splits_exactly() -> None:
    assert allocate(100, [1, 1, 1]) == [33, 34, 33]
    assert allocate(1000, [Decimal("0.5"), Decimal("0.25"), Decimal("0.25")]) == [500, 250, 250]
    assert allocate(-100, [1, 2]) == [-33, -67]


@given(total=st.integers(-(10**12), 10**12), weights=st.lists(st.integers(1, 10**6), min_size=1, max_size=30))
def test_allocated_parts_sum_to_the_total_and_stay_within_one_unit(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    whole = sum(weights)
    for part, w in zip(parts, weights, strict=True):
        assert abs(Decimal(part) - Decimal(total) * w / whole) < 1 + Decimal("1e-9")


@given(minor=st.integers(-(10**15), 10**15), code=st.sampled_from(["USD", "JPY", "KWD"]))
def test_major_and_minor_round_trip(minor: int, code: str) -> None:
    assert to_minor(to_major(minor, code), code) == minor
    assert parse_major(str(to_major(minor, code)), code) == minor
