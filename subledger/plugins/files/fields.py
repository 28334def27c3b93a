"""Field parsers for file rows: each returns a typed value or raises :class:`RowError`.

A row's values arrive as text (CSV) or as JSON/YAML values (numbers already exact
``Decimal`` or ``int``, never ``float``). An empty CSV cell and a JSON ``null`` both mean
"absent". Every error names the field, says what is wrong and how to fix it, so the
connector can turn it straight into a :class:`~subledger.core.connector.Rejected`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from subledger.core.errors import ConfigError
from subledger.core.money import exponent, normalize_currency, parse_major
from subledger.core.terms.bounds import (
    DATE_FIX,
    NUMBER_FIX,
    date_problem,
    instant_problem,
    int_problem,
    money_fix,
    money_problem,
    number_problem,
    text_problem,
)

MAX_NAME_SHOWN = 64
"""A field name written in a reject is cut to this many characters (the store keeps 255)."""


class RowError(ValueError):
    """A row cannot be loaded: which field, what is wrong, and the fix."""

    def __init__(self, field: str | None, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.fix = fix


def _shown(value: Any) -> str:
    if isinstance(value, Decimal):
        text = repr(str(value)) if len(value.as_tuple().digits) <= 60 else "a number of many digits"
    elif isinstance(value, int) and value.bit_length() > 200:
        text = "a number of many digits"
    else:
        text = repr(value if not isinstance(value, str) else value[:80])
    return text if len(text) <= 60 else text[:57] + "..."


def shown_name(name: Any) -> str:
    """A field name as a reject shows it: control characters escaped, cut to :data:`MAX_NAME_SHOWN`."""
    text = str(name).replace("\x00", "\\0")
    if _SURROGATE.search(text):  # half of a UTF-16 pair, or a byte that was not UTF-8
        text = _SURROGATE.sub("\ufffd", text)
    return text if len(text) <= MAX_NAME_SHOWN else text[: MAX_NAME_SHOWN - 3] + "..."


_SURROGATE = re.compile("[\ud800-\udfff]")


def is_absent(value: Any) -> bool:
    """True for a missing value: ``None`` or blank text."""
    return value is None or (isinstance(value, str) and not value.strip())


def text(
    row: Mapping[str, Any], key: str, *, required: bool = True, max_length: int = 255, name: str | None = None
) -> str | None:
    """A text field, stripped. ``name`` is how the field is called in errors (default ``key``)."""
    field = name or key
    value = row.get(key)
    if is_absent(value):
        if required:
            raise RowError(field, f"{field} is missing", f"fill in {field} on every row")
        return None
    if isinstance(value, bool):
        # YAML 1.1 reads unquoted NO, yes, off ... as booleans (Norway's country code!).
        raise RowError(field, f"{field} {_shown(value)} is a boolean, not text",
                       f"write {field} as text; in YAML, quote it (\"NO\", \"yes\")")
    if not isinstance(value, (str, int)):
        raise RowError(field, f"{field} {_shown(value)} is not text", f"write {field} as text")
    result = str(value).strip()
    if len(result) > max_length:
        raise RowError(
            field, f"{field} is {len(result)} characters long (at most {max_length})",
            f"shorten {field} to {max_length} characters",
        )
    return result


def required_text(row: Mapping[str, Any], key: str, *, max_length: int = 255, name: str | None = None) -> str:
    """A text field that must be present."""
    value = text(row, key, required=True, max_length=max_length, name=name)
    assert value is not None  # text() raised otherwise
    return value


def check_keys(data: Mapping[str, Any], known: Collection[str], *, metadata: bool = False,
               namer: Callable[[str], str] | None = None) -> None:
    """Refuse fields the format does not define (usually a misspelling)."""
    for key in data:
        if key in known or (metadata and (key == "metadata" or key.startswith("metadata."))):
            continue
        allowed = ", ".join(known) + (" and metadata" if metadata else "")
        where = shown_name(namer(key) if namer else key)
        raise RowError(where, f"unknown field {where!r}",
                       f"use only {allowed}" + ("; put anything else in metadata" if metadata else ""))


def decimal_value(value: Any, field: str) -> Decimal:
    """An exact decimal from text, an int or a ``Decimal`` (``"1.5"``, ``12``, ``Decimal('0.25')``).

    The number must lie within the bounds of :mod:`subledger.core.terms.bounds` (at most
    30 significant digits, below 10^30, nothing finer than 10^-30); over-long text and
    huge integers are refused before a ``Decimal`` is built.
    """
    if isinstance(value, (bool, float)):
        # A float has already lost the digits the file wrote; refuse it rather than guess.
        raise RowError(field, f"{field} {_shown(value)} is not an exact number",
                       f"write {field} as digits, such as 12 or 0.25")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        problem = int_problem(value)
        if problem:
            raise RowError(field, f"{field} {_shown(value)} {problem}", NUMBER_FIX)
        result = Decimal(value)
    elif isinstance(value, str):
        problem = text_problem(value.strip())
        if problem:
            raise RowError(field, f"{field} {_shown(value)} {problem}", NUMBER_FIX)
        try:
            # Decimal() also accepts "1_000"; a money file should not.
            if "_" in value:
                raise InvalidOperation
            result = Decimal(value.strip())
        except InvalidOperation:
            raise RowError(
                field, f"{field} {_shown(value)} is not a number",
                f"write {field} as plain digits with an optional decimal point, such as 12 or 0.25 "
                "(no currency symbol or thousands separator)",
            ) from None
    else:
        raise RowError(field, f"{field} {_shown(value)} is not a number",
                       f"write {field} as a number, such as 12 or 0.25")
    if not result.is_finite():
        raise RowError(field, f"{field} {_shown(value)} is not a finite number", f"write {field} as digits")
    problem = number_problem(result)
    if problem:
        raise RowError(field, f"{field} {_shown(value)} {problem}", NUMBER_FIX)
    return result


def optional_decimal(row: Mapping[str, Any], key: str, name: str | None = None) -> Decimal | None:
    """A decimal field that may be absent."""
    value = row.get(key)
    return None if is_absent(value) else decimal_value(value, name or key)


def integer(row: Mapping[str, Any], key: str, *, default: int, name: str | None = None) -> int:
    """A whole number (``3``, ``"-1"``), or ``default`` when absent."""
    field = name or key
    value = row.get(key)
    if is_absent(value):
        return default
    number = decimal_value(value, field)
    if number != number.to_integral_value():
        raise RowError(field, f"{field} {_shown(value)} is not a whole number",
                       f"write {field} as a whole number, such as 0 or 10")
    if abs(number) > MAX_INTEGER:
        raise RowError(field, f"{field} {_shown(value)} is not between -{MAX_INTEGER} and {MAX_INTEGER}",
                       f"write {field} as a smaller whole number, such as 0 or 10")
    return int(number)


MAX_INTEGER = 2**31 - 1


def currency(row: Mapping[str, Any], key: str = "currency", *, name: str | None = None,
             required: bool = True) -> str | None:
    """An ISO 4217 currency code with a known minor unit, upper-cased (``usd`` -> ``USD``)."""
    field = name or key
    value = text(row, key, required=required, max_length=16, name=field)
    if value is None:
        return None
    try:
        code = normalize_currency(value)
        exponent(code)
    except ConfigError as exc:
        # The money module's message already names the value: "currency 'EURO' is not ...".
        raise RowError(field, exc.message, exc.fix or "use an ISO 4217 code") from None
    return code


def money(value: Any, currency_code: str, field: str) -> int:
    """A major-unit amount (``"12.34"``) in integer minor units of ``currency_code``."""
    amount = decimal_value(value, field)
    try:
        minor = parse_major(amount, currency_code)
    except ValueError:
        places = exponent(currency_code)
        raise RowError(
            field, f"{field} {_shown(value)} has more than {places} decimal places for {currency_code}",
            f"round {field} to {places} decimal places",
        ) from None
    problem = money_problem(minor)
    if problem:
        raise RowError(field, f"{field} {_shown(value)} {problem}", money_fix(currency_code, exponent(currency_code)))
    return minor


def optional_money(row: Mapping[str, Any], key: str, currency_code: str, name: str | None = None) -> int | None:
    """A money field that may be absent."""
    value = row.get(key)
    return None if is_absent(value) else money(value, currency_code, name or key)


_COUNTRY = re.compile(r"^[A-Z]{2}$")


def country(row: Mapping[str, Any], key: str = "country") -> str | None:
    """An ISO 3166-1 alpha-2 country code, upper-cased, or None."""
    value = text(row, key, required=False, max_length=16)
    if value is None:
        return None
    code = value.upper()
    if not _COUNTRY.match(code):
        raise RowError(key, f"{key} {_shown(value)} is not a two-letter country code",
                       "write an ISO 3166-1 alpha-2 code such as US, DE or JP")
    return code


_EMAIL = re.compile(r"^[^@\s]+@([^@\s]+\.[^@\s]+)$")


def email(row: Mapping[str, Any], key: str = "email") -> tuple[str | None, str | None]:
    """An email address and its lower-cased domain, or ``(None, None)``."""
    value = text(row, key, required=False, max_length=320)
    if value is None:
        return None, None
    match = _EMAIL.match(value)
    if not match:
        raise RowError(key, f"{key} {_shown(value)} is not an email address",
                       "write an address such as billing@example.com, or leave it empty")
    return value, match.group(1).lower()


def choice(row: Mapping[str, Any], key: str, choices: Collection[str], *, default: str,
           name: str | None = None) -> str:
    """One of ``choices`` (case-insensitive), or ``default`` when absent."""
    field = name or key
    value = text(row, key, required=False, max_length=64, name=field)
    if value is None:
        return default
    lowered = value.lower()
    if lowered not in choices:
        raise RowError(field, f"{field} {_shown(value)} is not one of {', '.join(choices)}",
                       f"write one of: {', '.join(choices)}")
    return lowered


_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n"}


def boolean(row: Mapping[str, Any], key: str, *, default: bool = False, name: str | None = None) -> bool:
    """A yes/no field: true/false, yes/no, 1/0 (text or JSON boolean)."""
    field = name or key
    value = row.get(key)
    if is_absent(value):
        return default
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise RowError(field, f"{field} {_shown(value)} is not true or false", f"write {field} as true or false")


def date_value(row: Mapping[str, Any], key: str, *, required: bool = False, name: str | None = None) -> date | None:
    """A calendar date written ``YYYY-MM-DD``."""
    field = name or key
    value = row.get(key)
    if is_absent(value):
        if required:
            raise RowError(field, f"{field} is missing", f"write {field} as YYYY-MM-DD")
        return None
    parsed: date | None = None
    if isinstance(value, date) and not isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = date.fromisoformat(value.strip())
    if parsed is None:
        raise RowError(field, f"{field} {_shown(value)} is not a date",
                       f"write {field} as YYYY-MM-DD, e.g. 2026-03-31")
    problem = date_problem(parsed)
    if problem:
        raise RowError(field, f"{field} {parsed.isoformat()} {problem}", DATE_FIX)
    return parsed


def parse_timestamp(value: Any, field: str, *, allow_date: bool = False) -> datetime:
    """An ISO 8601 timestamp with a UTC offset, as an aware UTC datetime.

    With ``allow_date``, a bare ``YYYY-MM-DD`` means midnight UTC of that day.
    """
    if isinstance(value, datetime):
        parsed: datetime | None = value
    elif allow_date and isinstance(value, date):
        return _in_range(datetime(value.year, value.month, value.day, tzinfo=UTC), value, field)
    elif isinstance(value, str):
        raw = value.strip()
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None and allow_date and len(raw) == 10:
            return _in_range(parsed.replace(tzinfo=UTC), value, field)
    else:
        parsed = None
    if parsed is None:
        example = "2026-03-31T14:05:00Z"
        raise RowError(field, f"{field} {_shown(value)} is not an ISO 8601 timestamp",
                       f"write {field} like {example}" + (" or 2026-03-31" if allow_date else ""))
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise RowError(field, f"{field} {_shown(value)} has no UTC offset, so its instant is ambiguous",
                       f"add the offset: Z for UTC or +HH:MM, e.g. {str(value).strip().replace(' ', 'T')}Z")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        raise RowError(field, f"{field} {_shown(value)} is out of range in UTC", DATE_FIX) from None
    return _in_range(utc, value, field)


def _in_range(at: datetime, value: Any, field: str) -> datetime:
    problem = instant_problem(at)
    if problem:
        raise RowError(field, f"{field} {_shown(value)} {problem}", DATE_FIX)
    return at


def timestamp(row: Mapping[str, Any], key: str, *, required: bool = False, allow_date: bool = True,
              name: str | None = None) -> datetime | None:
    """A timestamp field (see :func:`parse_timestamp`), or None when absent and optional."""
    field = name or key
    value = row.get(key)
    if is_absent(value):
        if required:
            raise RowError(field, f"{field} is missing", f"write {field} like 2026-03-31T14:05:00Z")
        return None
    return parse_timestamp(value, field, allow_date=allow_date)


def metadata(row: Mapping[str, Any], key: str = "metadata") -> dict[str, Any]:
    """Free-form attributes: a JSON object under ``metadata``, plus CSV ``metadata.NAME`` columns."""
    result: dict[str, Any] = {}
    nested = row.get(key)
    if not is_absent(nested):
        if not isinstance(nested, Mapping):
            raise RowError(key, f"{key} must be an object of names to values",
                           f'write {key} as an object, e.g. {{"plan": "enterprise"}}')
        result.update({str(k): json_safe(v) for k, v in nested.items()})
    prefix = key + "."
    for column, value in row.items():
        if column.startswith(prefix) and not is_absent(value):
            result[column[len(prefix):]] = json_safe(value)
    return result


def json_safe(value: Any) -> Any:
    """A value a JSON column can hold without losing digits: Decimals become decimal text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


LineT = TypeVar("LineT")


def document_lines(
    data: Mapping[str, Any], line_keys: Collection[str],
    make: Callable[[dict[str, Any], Callable[[str], str], str], LineT],
) -> list[LineT]:
    """The ``lines`` of a JSON document (invoices, credit notes): each an object of ``line_keys``,
    built by ``make(item, namer, default_key)``, where ``namer`` names a field as ``lines[2].amount``
    and ``default_key`` is the line's position (``"3"``)."""
    raw = data.get("lines")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RowError("lines", "lines must be a list of line objects",
                       'write lines as a list, e.g. [{"amount": "10.00", "description": "Seats"}]')
    out: list[LineT] = []
    for i, item in enumerate(raw):
        def namer(key: str, i: int = i) -> str:
            return f"lines[{i}].{key}"

        if not isinstance(item, dict):
            raise RowError(f"lines[{i}]", "the line is not an object", "write each line as an object of fields")
        check_keys(item, line_keys, namer=namer)
        out.append(make(item, namer, str(i + 1)))
    return out
