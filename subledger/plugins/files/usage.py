"""Usage event lines (JSONL and CSV) to :class:`~subledger.core.connector.UsageEventIn`.

This is the hot path: a usage file can hold millions of events. Each JSONL line goes
through a lean fast path (orjson when installed, ``datetime.fromisoformat``, a BLAKE2b
hash of the raw bytes) that only accepts what it can map exactly. Anything else (a
float quantity, a float in the properties, a missing or wrong field) falls back to
:func:`careful_event`, the reference implementation, which either maps the line
exactly or explains what is wrong. Both paths give the same result for the same line.

Line format (JSONL keys, or CSV columns)::

    event_id   text, unique per source          customer   the customer's external id
    meter      the meter key                    quantity   exact decimal: 3, "2.5" or 2.5
    timestamp  ISO 8601 with offset (...Z)      properties optional JSON object

Non-integer numbers in ``properties`` are kept as exact decimal strings (``12.30`` ->
``"12.30"``), so no binary float ever reaches the store.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from subledger.core.connector import Rejected, UsageEventIn
from subledger.plugins.files.documents import loads_exact
from subledger.plugins.files.fields import RowError, decimal_value, json_safe, parse_timestamp
from subledger.plugins.files.linefile import Block, line_text

try:  # orjson parses several times faster than the standard library.
    from orjson import JSONDecodeError as _FastJSONError
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    _fast_loads = json.loads
    _FastJSONError = json.JSONDecodeError

STREAM = "usage_events"
COLUMNS = ("event_id", "customer", "meter", "quantity", "timestamp", "properties")
REQUIRED = COLUMNS[:5]
_LIMITS = {"event_id": 255, "customer": 255, "meter": 128}
_BOM = b"\xef\xbb\xbf"
_FIX_FIELDS = (
    "use only event_id, customer, meter, quantity, timestamp and properties; put anything else inside properties"
)

# Small whole quantities (counts) are by far the most common; share their Decimals.
_SMALL = [Decimal(i) for i in range(1024)]


def event_hash(raw: bytes) -> str:
    """The payload hash of a usage line: BLAKE2b-128 of its raw bytes (cheap, 32 hex digits)."""
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


_new = object.__new__
_SET = tuple(UsageEventIn.__dict__[name].__set__ for name in (
    "event_id", "customer_external_id", "meter", "quantity", "occurred_at", "properties", "payload_hash",
))


def _event(event_id: str, customer: str, meter: str, quantity: Decimal, occurred_at: datetime,
           properties: dict[str, Any], payload_hash: str) -> UsageEventIn:
    # A frozen dataclass's __init__ routes every field through object.__setattr__, which
    # costs more than parsing the line; filling the slots directly builds the same object.
    event = _new(UsageEventIn)
    s0, s1, s2, s3, s4, s5, s6 = _SET
    s0(event, event_id)
    s1(event, customer)
    s2(event, meter)
    s3(event, quantity)
    s4(event, occurred_at)
    s5(event, properties)
    s6(event, payload_hash)
    return event


def _has_float(value: Any) -> bool:
    if type(value) is float:
        return True
    if type(value) is dict:
        return any(_has_float(v) for v in value.values())
    if type(value) is list:
        return any(_has_float(v) for v in value)
    return False


class _Careful(Exception):
    """The fast path cannot map this line exactly; let the careful path decide."""


def jsonl_events(block: Block, location: str) -> Iterator[UsageEventIn | Rejected]:
    """Map a block of JSONL lines to events, and bad lines to rejects. Blank lines are skipped."""
    loads, fromiso, blake2b, small, utc = _fast_loads, datetime.fromisoformat, hashlib.blake2b, _SMALL, UTC
    new, cls = _new, UsageEventIn
    s0, s1, s2, s3, s4, s5, s6 = _SET  # see _event(): inlined here, the hottest loop
    number = block.first_line - 1
    for raw in block.lines:
        number += 1
        if not raw:
            continue
        try:
            obj = loads(raw)
            event_id = obj["event_id"]
            customer = obj["customer"]
            meter = obj["meter"]
            quantity = obj["quantity"]
            props = obj.get("properties")
            if (
                type(event_id) is not str or not event_id or len(event_id) > 255
                or type(customer) is not str or not customer or len(customer) > 255
                or type(meter) is not str or not meter or len(meter) > 128
                or len(obj) > 5 + ("properties" in obj)
            ):
                raise _Careful
            if type(quantity) is int:
                quantity = small[quantity] if 0 <= quantity < 1024 else Decimal(quantity)
            elif type(quantity) is str:
                quantity = decimal_value(quantity, "quantity")
            else:
                raise _Careful
            at = fromiso(obj["timestamp"])
            tz = at.tzinfo
            if tz is not utc:
                if tz is None or at.utcoffset() is None:
                    raise _Careful
                at = at.astimezone(utc)
            if props is None:
                props = {}
            elif type(props) is not dict:
                raise _Careful
            else:
                for v in props.values():
                    if type(v) is float or ((type(v) is dict or type(v) is list) and _has_float(v)):
                        raise _Careful
            event = new(cls)
            s0(event, event_id)
            s1(event, customer)
            s2(event, meter)
            s3(event, quantity)
            s4(event, at)
            s5(event, props)
            s6(event, blake2b(raw, digest_size=16).hexdigest())
            yield event
        except (_Careful, _FastJSONError, KeyError, TypeError, ValueError, OverflowError, RowError,
                InvalidOperation):
            result = careful_event(raw, number, location)
            if result is not None:
                yield result


def careful_event(raw: bytes, line: int, location: str) -> UsageEventIn | Rejected | None:
    """Map one JSONL line exactly, or say precisely why it cannot be loaded (None: a blank line)."""
    try:
        text = raw.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        return _reject(location, line, None, f"the line is not valid UTF-8 (byte {exc.start + 1})",
                       "save the file as UTF-8", raw)
    if not text.strip():
        return None
    try:
        obj = loads_exact(text)
    except json.JSONDecodeError as exc:
        return _reject(location, line, None, f"invalid JSON: {exc.msg} (column {exc.colno})",
                       "write one complete JSON object per line", raw)
    except ValueError as exc:
        return _reject(location, line, None, f"invalid JSON: {exc}", "write numbers as plain digits", raw)
    if not isinstance(obj, dict):
        return _reject(location, line, None, f"the line is a JSON {type(obj).__name__}, not an object",
                       'write each event as an object: {"event_id": ..., "customer": ..., ...}', raw)
    try:
        return map_event(obj, raw.removeprefix(_BOM))
    except RowError as exc:
        return _reject(location, line, exc.field, exc.reason, exc.fix, raw)


def _has_lone_surrogate(obj: Any) -> bool:
    # The standard library decodes a lone "\ud800"; no database can store the result.
    try:
        json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def map_event(obj: dict[str, Any], raw: bytes) -> UsageEventIn:
    """Validate one event's fields (exact numbers already parsed) and build the event.

    Raises:
        RowError: naming the first bad field.
    """
    for key in obj:
        if key not in COLUMNS:
            raise RowError(key, f"unknown field {key!r}", _FIX_FIELDS)
    if b"\\u" in raw and _has_lone_surrogate(obj):
        raise RowError(None, "the line escapes half of a UTF-16 surrogate pair (\\ud800-\\udfff)",
                       "write the character itself, or escape both halves of the pair")
    ids = [_identifier(obj, key) for key in ("event_id", "customer", "meter")]
    if "quantity" not in obj or obj["quantity"] is None or obj["quantity"] == "":
        raise RowError("quantity", "quantity is missing", "add quantity to every event, such as 1 or 2.5")
    quantity = decimal_value(obj["quantity"], "quantity")
    stamp = obj.get("timestamp")
    if stamp is None or stamp == "":
        raise RowError("timestamp", "timestamp is missing",
                       "add timestamp to every event: ISO 8601 with offset, such as 2026-03-31T14:05:00Z")
    if not isinstance(stamp, str):
        raise RowError("timestamp", f"timestamp {stamp!r} is not text",
                       "write the timestamp as ISO 8601 text, such as 2026-03-31T14:05:00Z")
    occurred_at = parse_timestamp(stamp, "timestamp")
    props = obj.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise RowError("properties", f"properties is a {type(props).__name__}, not an object",
                       'write properties as a JSON object, e.g. {"region": "eu-west-1"}')
    else:
        props = json_safe(props)
    return _event(ids[0], ids[1], ids[2], quantity, occurred_at, props, event_hash(raw))


def _identifier(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None or value == "":
        raise RowError(key, f"{key} is missing", f"add {key} to every event")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(key, f"{key} {value!r} is not text", f"write {key} as text")
    value = str(value)
    limit = _LIMITS[key]
    if len(value) > limit:
        raise RowError(key, f"{key} is {len(value)} characters long (at most {limit})",
                       f"shorten {key} to {limit} characters")
    return value


def _reject(location: str, line: int, field: str | None, reason: str, fix: str, raw: bytes) -> Rejected:
    return Rejected(stream=STREAM, reason=reason, fix=fix, location=location, line=line, field=field,
                    raw=line_text(raw))


# --- CSV ---------------------------------------------------------------------------------


def check_csv_header(header: list[str]) -> RowError | None:
    """Why a usage CSV header cannot be read, or None when it is fine."""
    for name in header:
        if name not in COLUMNS:
            return RowError(name, f"unknown column {name!r}", _FIX_FIELDS.replace("fields", "columns"))
    for name in REQUIRED:
        if name not in header:
            return RowError(name, f"column {name!r} is missing",
                            f"add a {name} column (columns: {', '.join(COLUMNS)})")
    if len(set(header)) != len(header):
        duplicate = next(n for n in header if header.count(n) > 1)
        return RowError(duplicate, f"column {duplicate!r} appears twice", "keep one column of each name")
    return None


def parse_header(raw: bytes) -> list[str]:
    """The column names of a CSV header line."""
    text = raw.removeprefix(_BOM).decode("utf-8", errors="replace")
    return [name.strip() for name in next(csv.reader([text]))]


def csv_records(block: Block) -> Iterator[tuple[int, bytes]]:
    """Group a block's physical lines into CSV records: (first line, raw record bytes)."""
    pending: list[bytes] = []
    start = block.first_line
    quotes = 0
    for offset, raw in enumerate(block.lines):
        if not pending:
            start = block.first_line + offset
        pending.append(raw)
        quotes += raw.count(b'"')
        if quotes % 2 == 0:
            yield start, b"\n".join(pending)
            pending, quotes = [], 0
    if pending:  # only at the end of a file: an unterminated quoted field
        yield start, b"\n".join(pending)


def csv_event(raw: bytes, line: int, header: list[str], location: str) -> UsageEventIn | Rejected | None:
    """Map one CSV record; None for a blank record."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _reject(location, line, None, f"the line is not valid UTF-8 (byte {exc.start + 1})",
                       "save the file as UTF-8", raw)
    if not text.strip():
        return None
    try:
        cells = next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration) as exc:
        return _reject(location, line, None, f"the row is not valid CSV ({exc})",
                       'quote fields that contain commas or quotes, and double inner quotes ("")', raw)
    if len(cells) != len(header):
        return _reject(location, line, None, f"the row has {len(cells)} fields but the header has {len(header)}",
                       "give the row one value per header column (quote values that contain commas)", raw)
    row: dict[str, Any] = {}
    for name, cell in zip(header, cells, strict=True):
        value = cell.strip()
        if value:
            row[name] = value
    try:
        if "properties" in row:
            try:
                row["properties"] = loads_exact(row["properties"])
            except ValueError as exc:
                raise RowError("properties", f"properties is not valid JSON ({exc})",
                               'write properties as a JSON object, e.g. {"region": "eu-west-1"} '
                               '(inside a CSV field, double each quote: "{""region"": ""eu-west-1""}")') from None
        return map_event(row, raw)
    except RowError as exc:
        return _reject(location, line, exc.field, exc.reason, exc.fix, raw)
