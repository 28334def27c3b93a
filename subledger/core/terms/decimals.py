"""Exact decimal fields for contract terms: rates, quantities and major-unit amounts.

Terms files write numbers as decimal strings (``"0.05"``) or integers (``1000``). A
binary float is refused: ``0.1`` as a float is not one tenth, and a contract must say
exactly what it means. YAML and JSON parsers turn ``0.05`` into a float unless told
otherwise, so :mod:`subledger.core.terms.parsing` loads both with floats parsed as
``Decimal``; callers with their own parser must do the same (``json.loads(text,
parse_float=Decimal)``) or quote the numbers.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, PlainValidator, WithJsonSchema

from subledger.core.db_types import decimal_text
from subledger.core.terms.bounds import DATE_FIX, NUMBER_FIX, date_problem, int_problem, number_problem, text_problem

DECIMAL_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)


class TermError(ValueError):
    """A terms value is wrong; ``fix`` says what to write instead."""

    def __init__(self, message: str, *, fix: str, at: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.fix = fix
        self.at = at  # path below the validated object, e.g. "tiers[1].up_to"
        self.value = value


def _bounded(value: Decimal) -> Decimal:
    problem = number_problem(value)
    if problem:
        raise TermError(f"the number {problem}", fix=NUMBER_FIX)
    return value


def exact_decimal(value: Any) -> Decimal:
    """Parse an exact decimal from an int, a decimal string or a ``Decimal``, within the bounds.

    The bounds (:mod:`subledger.core.terms.bounds`): at most 30 significant digits, below
    10^30, no digit finer than 10^-30; text is checked for length before it is read.

    Raises:
        TermError: the value is a float, a boolean, not a number, not finite, or out of bounds.
    """
    if isinstance(value, bool):
        raise TermError(f"{value!r} is a boolean, not a number", fix="write a number such as 10 or \"0.05\"")
    if isinstance(value, float):
        raise TermError(
            f"{value!r} arrived as a binary float, which cannot hold a decimal amount exactly",
            fix=f"quote it (\"{value!r}\"), or load the file with subledger.core.terms.parse_terms_text, "
            "which reads numbers as exact decimals",
        )
    if isinstance(value, int):
        problem = int_problem(value)
        if problem:  # checked before a Decimal is built
            raise TermError(f"the number {problem}", fix=NUMBER_FIX)
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TermError(f"{value!r} is not a finite number", fix="write a finite number such as \"0.05\"")
        return _bounded(value)
    if isinstance(value, str):
        text = value.strip()
        problem = text_problem(text)
        if problem:
            raise TermError(f"the number {problem}", fix=NUMBER_FIX)
        if _DECIMAL_RE.match(text):
            try:
                return _bounded(Decimal(text))
            except InvalidOperation:  # pragma: no cover - the pattern admits only valid text
                pass
        raise TermError(
            f"{value!r} is not a decimal number",
            fix="write plain digits with an optional point, such as \"0.05\" or \"1000\" "
            "(no currency symbols, thousands separators or exponents)",
        )
    raise TermError(
        f"{value!r} ({type(value).__name__}) is not a number", fix="write a number such as 10 or \"0.05\""
    )


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise TermError(
            f"{decimal_text(value)} is negative",
            fix="prices, amounts and quantities are zero or more; model a reduction as a discount",
        )
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise TermError(f"{decimal_text(value)} is not above zero", fix="use a number greater than zero")
    return value


_SCHEMA = {
    "anyOf": [{"type": "string", "pattern": DECIMAL_PATTERN}, {"type": "integer"}],
    "description": "an exact decimal: a string such as \"0.05\" or an integer",
}

ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(exact_decimal),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
    WithJsonSchema(_SCHEMA),
]
"""Any exact decimal (may be negative)."""

NonNegativeDecimal = Annotated[ExactDecimal, AfterValidator(_non_negative)]
"""A price, amount or quantity: zero or more."""

PositiveDecimal = Annotated[ExactDecimal, AfterValidator(_positive)]
"""A size or count that must be above zero (e.g. a package size)."""


def _up_to(value: Any) -> Decimal | None:
    # Stripe writes the open-ended last tier as "inf"; accept it as null.
    if value is None or (isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "+inf")):
        return None
    return _positive(exact_decimal(value))


def _up_to_text(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


UpTo = Annotated[
    Decimal | None,
    PlainValidator(_up_to),
    PlainSerializer(_up_to_text, return_type=str | None, when_used="json"),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": DECIMAL_PATTERN},
            {"type": "integer"},
            {"type": "string", "enum": ["inf"]},
            {"type": "null"},
        ],
        "description": "inclusive upper bound of the tier; null or \"inf\" for the last, open tier",
    }),
]
"""A tier's inclusive upper bound; ``None`` is the open-ended last tier."""


def _in_range(value: date) -> date:
    problem = date_problem(value)
    if problem:
        raise TermError(f"the date {problem}", fix=DATE_FIX)
    return value


TermDate = Annotated[date, AfterValidator(_in_range)]
"""A date in the terms: from 2000-01-01 to 2100-12-31 (see :mod:`subledger.core.terms.bounds`)."""
