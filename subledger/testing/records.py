"""What a valid record from a connector looks like: the kit's record checks.

A stream of record type ``invoice`` yields :class:`~subledger.core.model.Invoice` records and
may follow each with its :class:`~subledger.core.model.InvoiceLine` s (a ``payment`` stream
likewise with :class:`~subledger.core.model.PaymentApplication` s); a ``usage_event``
stream yields :class:`~subledger.core.connector.UsageEventIn`.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlmodel import SQLModel

from subledger.core.connector import UsageEventIn
from subledger.core.model import (
    Contract,
    CreditGrant,
    CreditLedgerEntry,
    CreditNote,
    Customer,
    Invoice,
    InvoiceLine,
    Meter,
    Payment,
    PaymentApplication,
    Provenance,
    record_id,
)
from subledger.core.model.base import canonical_json
from subledger.core.money import is_currency

CANONICAL_TYPES: dict[str, type[Any]] = {
    "customer": Customer,
    "contract": Contract,
    "meter": Meter,
    "invoice": Invoice,
    "credit_note": CreditNote,
    "payment": Payment,
    "credit_grant": CreditGrant,
    "usage_event": UsageEventIn,
}
"""Record type names a :class:`~subledger.core.connector.StreamSpec` may declare."""

RELATED_TYPES: dict[str, tuple[type[Any], ...]] = {
    "invoice": (InvoiceLine,),
    "payment": (PaymentApplication,),
    "credit_grant": (CreditLedgerEntry,),
}
"""Child records a stream may yield after each of its records."""


def is_primary(record: Any, record_type: str) -> bool:
    """Whether ``record`` is of the stream's own type (not a child record)."""
    return isinstance(record, CANONICAL_TYPES[record_type])


def record_key(record: Any, primary_key: tuple[str, ...]) -> tuple[Any, ...]:
    """The values of ``primary_key`` on ``record`` (AttributeError if a field is missing)."""
    return tuple(getattr(record, f) for f in primary_key)


def fingerprint(record: Any) -> str:
    """What identifies a record's *content*: its payload hash, else its fields minus fetch time."""
    digest = getattr(record, "payload_hash", "")
    if digest:
        return str(digest)
    if isinstance(record, SQLModel):
        data = record.model_dump(exclude={"fetched_at"}, warnings=False)
    else:
        data = {k: getattr(record, k) for k in getattr(record, "__slots__", ())}
    return canonical_json(data)


def _value_problems(name: str, value: Any) -> list[str]:
    if isinstance(value, float):
        return [f"{name} is a float ({value!r}); money is int minor units, rates and quantities Decimal"]
    if isinstance(value, datetime) and (value.tzinfo is None or value.utcoffset() is None):
        return [f"{name} is a naive datetime ({value.isoformat()}); attach a timezone (UTC)"]
    if isinstance(value, Decimal) and not value.is_finite():
        return [f"{name} is not a finite Decimal ({value!r})"]
    if isinstance(value, (dict, list)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return [f"{name} is not JSON-safe ({exc}); write decimals as strings, times as ISO text"]
    return []


def record_problems(record: Any, *, record_type: str, connection: str) -> list[str]:
    """Everything wrong with one record of a ``record_type`` stream; empty when valid."""
    allowed = (CANONICAL_TYPES[record_type], *RELATED_TYPES.get(record_type, ()))
    if not isinstance(record, allowed):
        names = ", ".join(t.__name__ for t in allowed)
        return [f"{type(record).__name__} in a {record_type!r} stream; expected {names}"]
    if isinstance(record, UsageEventIn):
        return _usage_problems(record)
    problems: list[str] = []
    try:
        type(record).model_validate(record.model_dump(warnings=False))
    except ValidationError as exc:
        problems.extend(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
        )
    for name in type(record).model_fields:
        value = getattr(record, name, None)
        problems.extend(_value_problems(name, value))
        if name == "currency" and value is not None and not (isinstance(value, str) and is_currency(value)):
            problems.append(f"currency {value!r} is not an ISO 4217 code")
    if isinstance(record, Provenance):
        problems.extend(_provenance_problems(record, connection))
    return problems


def _provenance_problems(record: Any, connection: str) -> list[str]:
    problems = []
    if record.system != connection:
        problems.append(f"system is {record.system!r}; it must be the connection's name {connection!r}")
    if not record.external_id:
        problems.append("external_id is empty")
    if not record.payload_hash:
        problems.append("payload_hash is empty; hash the source payload (subledger.core.model.payload_hash)")
    rid = getattr(record, "id", "") or ""
    prefix = rid.split("_", 1)[0]
    if not rid or rid != record_id(prefix, record.system, record.external_id):
        problems.append(
            f"id {rid!r} is not deterministic; use subledger.core.model.record_id(prefix, system, external_id)"
        )
    return problems


def _usage_problems(event: UsageEventIn) -> list[str]:
    problems = []
    for name in ("event_id", "customer_external_id", "meter", "payload_hash"):
        value = getattr(event, name)
        if not isinstance(value, str) or not value:
            problems.append(f"{name} must be a non-empty string, not {value!r}")
    if not isinstance(event.quantity, Decimal) or isinstance(event.quantity, bool):
        problems.append(f"quantity must be a Decimal, not {type(event.quantity).__name__} ({event.quantity!r})")
    elif not event.quantity.is_finite():
        problems.append(f"quantity {event.quantity!r} is not finite")
    if not isinstance(event.occurred_at, datetime):
        problems.append(f"occurred_at must be a datetime, not {type(event.occurred_at).__name__}")
    else:
        problems.extend(_value_problems("occurred_at", event.occurred_at))
    if not isinstance(event.properties, dict):
        problems.append(f"properties must be a dict, not {type(event.properties).__name__}")
    else:
        problems.extend(_value_problems("properties", event.properties))
    return problems


def push_to_far_future(state: Any) -> tuple[Any, bool]:
    """``state`` with every time-like value moved to the year 9999; and whether any was.

    ISO date-times and dates become 9999-12-31; integers that look like epoch seconds or
    milliseconds become the epoch of 9999-12-31.
    """
    if isinstance(state, dict):
        changed = False
        out = {}
        for key, value in state.items():
            out[key], moved = push_to_far_future(value)
            changed = changed or moved
        return out, changed
    if isinstance(state, list):
        pairs = [push_to_far_future(v) for v in state]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    if isinstance(state, str):
        try:
            parsed = datetime.fromisoformat(state)
        except ValueError:
            pass
        else:
            if "T" in state or " " in state:
                return parsed.replace(year=9999, month=12, day=31).isoformat(), True
        try:
            date.fromisoformat(state)
        except ValueError:
            return state, False
        return "9999-12-31", True
    if isinstance(state, int) and not isinstance(state, bool):
        if state >= 10**12:
            return 253402300799000, True
        if state >= 10**9:
            return 253402300799, True
    return state, False


def flatten(items: Any) -> Any:
    """Yield what a connector read yields, with each RecordGroup as its parent then its children."""
    from subledger.core.connector import RecordGroup

    for item in items:
        if isinstance(item, RecordGroup):
            yield item.record
            yield from item.children
        else:
            yield item
