"""Column types that keep money, rates and time exact on SQLite and PostgreSQL.

* :class:`ExactDecimal`: ``NUMERIC`` (unbounded precision) on PostgreSQL; canonical
  decimal text on SQLite, whose ``NUMERIC`` affinity would turn values into floats.
* :class:`UTCDateTime`: refuses naive datetimes, stores UTC, and reads back aware UTC.
* :data:`JSONDoc`: JSON on SQLite, JSONB on PostgreSQL.

Money itself is an ``int`` column of minor units plus a currency column, so it never
needs a special type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

JSONDoc = JSON().with_variant(JSONB(), "postgresql")


def decimal_text(value: Decimal) -> str:
    """Plain (non-scientific) text of a Decimal: ``Decimal('1E+3') -> '1000'``."""
    text = format(value, "f")
    return text


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact Decimal column: NUMERIC on PostgreSQL, canonical text on SQLite."""

    impl = String(80)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(80))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("refusing to store a float in an exact Decimal column")
        if not isinstance(value, Decimal):
            value = Decimal(str(value))
        if not value.is_finite():
            raise ValueError(f"refusing to store non-finite Decimal {value!r}")
        if dialect.name == "postgresql":
            return value
        return decimal_text(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        return Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; naive datetimes are refused on write."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing naive datetime {value.isoformat()}; attach a timezone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


# SQLite only auto-increments a column declared exactly ``INTEGER PRIMARY KEY``.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
