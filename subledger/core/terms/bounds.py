"""The bounds every number, amount and date subledger reads must lie within.

A single unbounded value can stop every later sync: ``1e999999`` cannot be added to
anything, ``1e99999999999`` takes gigabytes to write out, an amount of ``1e30`` does not
fit the 64-bit integer columns that hold money, and a contract ending ``9999-12-31`` has
no day after its last one. So every path that reads them (the files connector, contract
terms, the rating engine and the store's usage ingest) checks the same bounds, cheaply and
before any arithmetic (docs/formats.md#bounds):

* **Numbers** (quantities, unit prices, rates, tier bounds): at most
  :data:`MAX_DIGITS` significant digits, below ``10**MAX_DIGITS`` in size, with no digit
  finer than ``10**-MAX_DIGITS``; written in at most :data:`MAX_NUMBER_TEXT` characters.
  The text is checked before a ``Decimal`` is built, so a 10 MB number costs nothing.
* **Money**: below :data:`MAX_MINOR` minor units (10 trillion dollars for USD), so
  thousands of amounts still add up inside a signed 64-bit integer.
* **Dates**: from :data:`FIRST_DAY` to :data:`LAST_DAY`.
* **Nesting** of JSON and YAML values: at most :data:`~subledger.core.config_files.MAX_DEPTH`
  levels; and no NUL character in any text (PostgreSQL cannot store one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from subledger.core.config_files import MAX_DEPTH, nesting_depth

MAX_DIGITS = 30
"""Significant digits of a number; also the largest power of ten it stays below and the finest place."""

MAX_NUMBER_TEXT = 80
"""Characters a number may be written in (digits, sign, point, exponent); longer text is refused unread."""

MAX_MINOR = 10**15
"""Money is below this many minor units (exclusive): 10**13 USD, 10**15 JPY, 10**12 KWD."""

FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)
FIRST_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
END_INSTANT = datetime(2101, 1, 1, tzinfo=UTC)  # exclusive

_INT_LIMIT = 10**MAX_DIGITS
_INT_BITS = _INT_LIMIT.bit_length()

NUMBER_FIX = (f"write a number with at most {MAX_DIGITS} significant digits, below 10^{MAX_DIGITS} "
              f"and with at most {MAX_DIGITS} decimal places, such as 12 or 0.25")
DATE_RANGE = f"{FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"
DATE_FIX = f"write a date from {DATE_RANGE} (the dates subledger accepts)"


class OutOfBounds(ValueError):
    """A value outside the bounds; ``reason`` says why and ``fix`` what to write instead."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def text_problem(text: str) -> str | None:
    """Why the text of a number is too long to read, or None."""
    if len(text) > MAX_NUMBER_TEXT:
        return f"is {len(text)} characters long; a number is at most {MAX_NUMBER_TEXT}"
    return None


def int_problem(value: int) -> str | None:
    """Why a whole number is out of bounds, or None (no Decimal is built)."""
    if -_INT_LIMIT < value < _INT_LIMIT:
        return None
    if value.bit_length() > _INT_BITS + 8:
        return f"has more than {MAX_DIGITS} digits"
    return f"is not below 10^{MAX_DIGITS} in size"


def number_problem(value: Decimal) -> str | None:
    """Why a finite ``Decimal`` is out of bounds, or None. Never does arithmetic on it."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return "is not a finite number"
    if not any(digits):
        return None  # zero, however it is written
    # Drop trailing zeros of the coefficient: 1.500 has two significant digits.
    end = len(digits)
    while end > 1 and digits[end - 1] == 0:
        end -= 1
    significant = end
    last_place = exponent + (len(digits) - end)  # the power of ten of the last non-zero digit
    adjusted = exponent + len(digits) - 1  # the power of ten of the first digit
    if adjusted >= MAX_DIGITS:
        return f"is not below 10^{MAX_DIGITS} in size"
    if last_place < -MAX_DIGITS:
        return f"has a digit finer than 10^-{MAX_DIGITS}"
    if significant > MAX_DIGITS:
        return f"has more than {MAX_DIGITS} significant digits"
    return None


def bounded_decimal(value: Decimal | int | str) -> Decimal:
    """``value`` as a bounded ``Decimal``.

    Raises:
        OutOfBounds: it is not a finite number within the bounds (the reason says which).
    """
    if isinstance(value, bool):
        raise OutOfBounds("is a boolean, not a number", NUMBER_FIX)
    if isinstance(value, int):
        problem = int_problem(value)
        if problem:
            raise OutOfBounds(problem, NUMBER_FIX)
        return Decimal(value)
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise OutOfBounds(problem, NUMBER_FIX)
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise OutOfBounds("is not a number", NUMBER_FIX) from None
    if not isinstance(value, Decimal) or not value.is_finite():
        raise OutOfBounds("is not a finite number", NUMBER_FIX)
    problem = number_problem(value)
    if problem:
        raise OutOfBounds(problem, NUMBER_FIX)
    return value


def money_problem(minor: int) -> str | None:
    """Why an amount of money in minor units is out of bounds, or None."""
    if -MAX_MINOR < minor < MAX_MINOR:
        return None
    return "is not below 10^15 minor units in size (the most subledger holds in one amount)"


def money_fix(currency: str, places: int) -> str:
    limit = Decimal(MAX_MINOR).scaleb(-places)
    return f"split the amount: one amount is below {limit:,f} {currency}"


def date_problem(day: date) -> str | None:
    """Why a date lies outside the accepted range, or None."""
    if isinstance(day, datetime):
        return instant_problem(day)
    if FIRST_DAY <= day <= LAST_DAY:
        return None
    return f"is outside the dates subledger accepts ({DATE_RANGE})"


def instant_problem(at: datetime) -> str | None:
    """Why an aware instant lies outside the accepted range, or None."""
    if at.tzinfo is None:
        return None if FIRST_DAY <= at.date() <= LAST_DAY else f"is outside the dates subledger accepts ({DATE_RANGE})"
    if FIRST_INSTANT <= at < END_INSTANT:
        return None
    return f"is outside the dates subledger accepts ({DATE_RANGE}, UTC)"


NUL = "a NUL character (\\0)"
SURROGATE = "half of a UTF-16 surrogate pair (\\ud800-\\udfff)"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _text_problem(text: str) -> str | None:
    if text.isascii():
        return NUL if "\x00" in text else None
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return NUL if found.group() == "\x00" else SURROGATE


def unstorable_text(value: Any, path: str = "") -> tuple[str, str] | None:
    """The path of the first text (a value or a key) no database can store, and why; or None.

    Refused: a NUL character, and half of a UTF-16 surrogate pair (``"\\ud800"`` in JSON).
    ``""`` is the value itself; ``properties.a[2]`` a nested one.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return where, problem
        elif isinstance(item, Mapping):
            for key, child in item.items():
                shown = _UNSTORABLE.sub(lambda m: "\\0" if m.group() == "\x00" else "\ufffd", str(key))
                name = f"{where}.{shown}" if where else shown
                problem = _text_problem(key) if isinstance(key, str) else None
                if problem:
                    return name, problem
                stack.append((child, name))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def nul_path(value: Any, path: str = "") -> str | None:
    """The path of the first text holding a NUL character or half a surrogate pair, or None."""
    found = unstorable_text(value, path)
    return None if found is None else found[0]


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``value`` nests lists and mappings more than ``limit`` levels deep."""
    return nesting_depth(value, limit) > limit


__all__ = [
    "DATE_FIX",
    "DATE_RANGE",
    "END_INSTANT",
    "FIRST_DAY",
    "FIRST_INSTANT",
    "LAST_DAY",
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_MINOR",
    "MAX_NUMBER_TEXT",
    "NUMBER_FIX",
    "OutOfBounds",
    "bounded_decimal",
    "date_problem",
    "instant_problem",
    "int_problem",
    "money_fix",
    "money_problem",
    "nul_path",
    "number_problem",
    "text_problem",
    "too_deep",
    "unstorable_text",
]
