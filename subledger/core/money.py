"""Money: integer minor units with an ISO 4217 currency, and the one rounding rule set.

Amounts are never floats. A :class:`Money` holds an ``int`` count of the currency's
minor units (cents for USD, yen for JPY, fils for KWD). Rates and quantities are
:class:`decimal.Decimal`. Converting a computed ``Decimal`` amount to minor units is the
only place rounding happens, through :func:`to_minor`, with an explicit
:class:`Rounding` mode (half-up unless a contract says otherwise).

Minor-unit exponents come from the ``iso4217`` package, which tracks the ISO 4217
maintenance agency's list; :data:`EXPONENT_OVERRIDES` lets an operator add a code the
table lacks (for example a currency a billing system supports before ISO publishes it).
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import cache

from iso4217 import Currency

from subledger.core.errors import ConfigError

# Codes with no minor unit in ISO 4217 (gold, test codes) cannot carry money here.
EXPONENT_OVERRIDES: dict[str, int] = {}

# Wide enough that no intermediate product of a rate and a quantity is ever rounded
# before the one explicit rounding step.
DECIMAL_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_UP, traps=[
    decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow,
])


class Rounding(StrEnum):
    """How a computed amount is rounded to minor units."""

    HALF_UP = "half_up"
    HALF_EVEN = "half_even"
    UP = "up"  # away from zero
    DOWN = "down"  # toward zero
    CEILING = "ceiling"
    FLOOR = "floor"

    @property
    def decimal_mode(self) -> str:
        return _DECIMAL_MODES[self]


_DECIMAL_MODES = {
    Rounding.HALF_UP: decimal.ROUND_HALF_UP,
    Rounding.HALF_EVEN: decimal.ROUND_HALF_EVEN,
    Rounding.UP: decimal.ROUND_UP,
    Rounding.DOWN: decimal.ROUND_DOWN,
    Rounding.CEILING: decimal.ROUND_CEILING,
    Rounding.FLOOR: decimal.ROUND_FLOOR,
}


@cache
def exponent(currency: str) -> int:
    """Return the number of minor-unit digits of an ISO 4217 currency code.

    Raises:
        ConfigError: the code is unknown or has no minor unit (e.g. ``XAU``).
    """
    code = normalize_currency(currency)
    if code in EXPONENT_OVERRIDES:
        return EXPONENT_OVERRIDES[code]
    try:
        exp = Currency(code).exponent
    except ValueError:
        exp = None
    if exp is None:
        raise ConfigError(
            f"currency {currency!r} has no ISO 4217 minor-unit exponent",
            fix="use a three-letter ISO 4217 code such as USD, EUR, JPY or KWD",
        )
    return exp


def normalize_currency(currency: str) -> str:
    """Upper-case and validate the shape of a currency code (``usd`` -> ``USD``)."""
    code = (currency or "").strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ConfigError(
            f"currency {currency!r} is not a three-letter ISO 4217 code",
            fix="use a code such as USD, EUR, JPY or KWD",
        )
    return code


def is_currency(currency: str) -> bool:
    """True when ``currency`` is a code :func:`exponent` accepts."""
    try:
        exponent(currency)
    except ConfigError:
        return False
    return True


def to_minor(amount: Decimal, currency: str, rounding: Rounding = Rounding.HALF_UP) -> int:
    """Round a major-unit ``Decimal`` amount to integer minor units.

    >>> to_minor(Decimal("12.345"), "USD")
    1235
    >>> to_minor(Decimal("12.5"), "JPY", Rounding.HALF_EVEN)
    12
    """
    if not isinstance(amount, Decimal):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}")
    scaled = amount.scaleb(exponent(currency), context=DECIMAL_CONTEXT)
    return int(scaled.quantize(Decimal(1), rounding=rounding.decimal_mode, context=DECIMAL_CONTEXT))


def to_major(minor: int, currency: str) -> Decimal:
    """Exact major-unit ``Decimal`` of a minor-unit amount: ``1235 USD -> Decimal('12.35')``."""
    exp = exponent(currency)
    return Decimal(minor).scaleb(-exp, context=DECIMAL_CONTEXT).quantize(
        Decimal(1).scaleb(-exp), context=DECIMAL_CONTEXT
    )


def parse_major(text: str | int | Decimal, currency: str) -> int:
    """Parse an exact major-unit amount (``"12.35"``) into minor units.

    Raises:
        ValueError: the text is not a number, or has more decimals than the currency.
    """
    if isinstance(text, float):
        raise TypeError("money must not be given as a float; pass a string or Decimal")
    try:
        value = Decimal(str(text).strip())
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r} is not a number; write an amount such as 12.50") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a finite amount")
    exp = exponent(currency)
    scaled = value.scaleb(exp, context=DECIMAL_CONTEXT)
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{text!r} has more than {exp} decimal places for {normalize_currency(currency)}; "
            f"round it to {exp} places"
        )
    return int(scaled)


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An exact amount: integer minor units in one currency.

    Arithmetic only combines amounts of the same currency; mixing currencies raises.
    """

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError(f"Money.minor must be an int, not {type(self.minor).__name__}")
        code = normalize_currency(self.currency)
        exponent(code)
        object.__setattr__(self, "currency", code)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def of(cls, major: str | int | Decimal, currency: str) -> Money:
        """Build from an exact major-unit amount: ``Money.of("12.35", "USD")``."""
        return cls(parse_major(major, currency), currency)

    @classmethod
    def from_decimal(
        cls, amount: Decimal, currency: str, rounding: Rounding = Rounding.HALF_UP
    ) -> Money:
        """Round a computed major-unit ``Decimal`` to minor units."""
        return cls(to_minor(amount, currency, rounding), currency)

    @property
    def major(self) -> Decimal:
        return to_major(self.minor, self.currency)

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __str__(self) -> str:
        return f"{self.major} {self.currency}"


def allocate(total: int, weights: list[Decimal] | list[int]) -> list[int]:
    """Split ``total`` minor units across ``weights`` so the parts sum exactly to ``total``.

    Uses cumulative rounding (half-up on the running share), so each part differs from
    its exact share by less than one minor unit and the last part absorbs nothing extra.
    """
    if not weights:
        raise ValueError("allocate needs at least one weight")
    dweights = [Decimal(w) for w in weights]
    whole = sum(dweights, Decimal(0))
    if whole == 0:
        raise ValueError("allocate needs weights that do not sum to zero")
    parts: list[int] = []
    running = Decimal(0)
    allocated = 0
    for w in dweights:
        running += w
        target = int(
            (Decimal(total) * running / whole).quantize(
                Decimal(1), rounding=decimal.ROUND_HALF_UP, context=DECIMAL_CONTEXT
            )
        )
        parts.append(target - allocated)
        allocated = target
    return parts
