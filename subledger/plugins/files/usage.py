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

from subledger.core.config_files import MAX_DEPTH
from subledger.core.connector import Rejected, UsageEventIn
from subledger.core.terms.bounds import END_INSTANT, FIRST_INSTANT, MAX_DIGITS, nul_path
from subledger.plugins.files.documents import json_problem, loads_exact
from subledger.plugins.files.fields import RowError, decimal_value, json_safe, parse_timestamp, shown_name
from subledger.plugins.files.linefile import MAX_LINE_BYTES, Block, line_text

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
_QUANTITY_LIMIT = 10**MAX_DIGITS  # a whole quantity is below this in size (subledger.core.terms.bounds)

# Event id -> payload hash of the first version read since the last checkpoint (jsonl_events).
Seen = dict[str, str]


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


def _nested_keys(value: Any, depth: int) -> int:
    """How many keys a property value writes, or -1 when the careful path must look at it:
    it holds a float or a NUL character, or nests too deep."""
    if depth > MAX_DEPTH:
        return -1
    kind = type(value)
    if kind is str:
        return -1 if "\x00" in value else 0
    if kind is float:
        return -1
    if kind is dict:
        total = len(value)
        for k, v in value.items():
            if "\x00" in k:
                return -1
            kind = type(v)
            if kind is str:
                if "\x00" in v:
                    return -1
            elif kind is float:
                return -1
            elif kind is dict or kind is list:
                inner = _nested_keys(v, depth + 1)
                if inner < 0:
                    return -1
                total += inner
        return total
    if kind is list:
        total = 0
        for v in value:
            inner = _nested_keys(v, depth + 1)
            if inner < 0:
                return -1
            total += inner
        return total
    return 0


class _Careful(Exception):
    """The fast path cannot map this line exactly; let the careful path decide."""


def jsonl_events(block: Block, location: str, seen: Seen | None = None) -> Iterator[UsageEventIn | Rejected]:
    """Map a block of JSONL lines to events, and bad lines to rejects. Blank lines are skipped.

    With ``seen``, an event id already read (in ``seen``) with a different line is
    rejected here, at its file and line, instead of reaching the store; the same line
    again is yielded (the store loads it once).
    """
    loads, fromiso, blake2b, small, utc = _fast_loads, datetime.fromisoformat, hashlib.blake2b, _SMALL, UTC
    new, cls = _new, UsageEventIn
    first_at, end_at, limit = FIRST_INSTANT, END_INSTANT, _QUANTITY_LIMIT
    s0, s1, s2, s3, s4, s5, s6 = _SET  # see _event(): inlined here, the hottest loop
    remember = seen.setdefault if seen is not None else None
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
            keys = len(obj)
            if (
                type(event_id) is not str or not event_id or len(event_id) > 255 or "\x00" in event_id
                or type(customer) is not str or not customer or len(customer) > 255 or "\x00" in customer
                or type(meter) is not str or not meter or len(meter) > 128 or "\x00" in meter
                or keys > 5 + ("properties" in obj)
            ):
                raise _Careful  # the careful path names what is wrong (a NUL character: \u0000)
            if type(quantity) is int:
                if not -limit < quantity < limit:
                    raise _Careful
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
            if not first_at <= at < end_at:
                raise _Careful
            if props is None:
                props = {}
            elif type(props) is not dict:
                raise _Careful
            elif props:
                keys += len(props)
                for k, v in props.items():
                    kind = type(v)
                    if kind is str:
                        if "\x00" in v:
                            raise _Careful
                    elif kind is float:
                        raise _Careful
                    elif kind is dict or kind is list:
                        nested = _nested_keys(v, 3)
                        if nested < 0:
                            raise _Careful
                        keys += nested
                    if "\x00" in k:
                        raise _Careful
            # Each key written is one '":' (an escaped quote inside a text adds one more, a
            # space before the colon one fewer: both take the careful path, which counts
            # exactly). One more than the keys parsed is a key written twice, which orjson
            # would let the last one win: the careful path refuses it.
            if raw.count(b'":') != keys:
                raise _Careful
            item: UsageEventIn | Rejected | None = new(cls)
            s0(item, event_id)
            s1(item, customer)
            s2(item, meter)
            s3(item, quantity)
            s4(item, at)
            s5(item, props)
            s6(item, blake2b(raw, digest_size=16).hexdigest())
        except (_Careful, _FastJSONError, KeyError, TypeError, ValueError, OverflowError, RowError,
                InvalidOperation, AttributeError):
            item = careful_event(raw, number, location)
            if item is None:
                continue
        if remember is not None and type(item) is cls:
            digest = item.payload_hash
            prior = remember(item.event_id, digest)
            if prior is not digest and prior != digest:
                item = conflicting_version(item.event_id, location, number, raw)
        yield item


def conflicting_version(event_id: str, location: str, line: int, raw: bytes) -> Rejected:
    """The reject of a second, different version of an event id read in the same pull."""
    return _reject(location, line, "event_id",
                   f"event_id {shown_name(event_id)!r} was already read with different content (earlier in this "
                   "file, or in an earlier usage file of this pull); this version was not loaded",
                   "usage events are immutable: give this event its own event_id, or remove the line if it is a "
                   "mistaken copy", raw)


def overlong_line(location: str, line: int) -> Rejected:
    """The reject of a usage line longer than :data:`~subledger.plugins.files.linefile.MAX_LINE_BYTES`."""
    return Rejected(stream=STREAM, reason=f"the line is longer than {MAX_LINE_BYTES // 1024} KiB; it was not "
                    "read", fix="keep each usage event on one line of at most 1 MiB (large data does not belong "
                    "in properties)", location=location, line=line, field=None, raw="")


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
        problem = json_problem(exc)
        return _reject(location, line, problem.field, problem.reason, problem.fix, raw)
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
            name = shown_name(key)
            raise RowError(name, f"unknown field {name!r}", _FIX_FIELDS)
    if b"\\u" in raw and _has_lone_surrogate(obj):
        raise RowError(None, "the line escapes half of a UTF-16 surrogate pair (\\ud800-\\udfff)",
                       "write the character itself, or escape both halves of the pair")
    where = nul_path(obj)
    if where is not None:  # a NUL character: a lone surrogate was refused above
        raise RowError(where or None, f"{where or 'the line'} holds a NUL character (\\0), which cannot be stored",
                       "remove the NUL character (\\u0000) from the event")
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
            shown = shown_name(name)
            return RowError(shown, f"unknown column {shown!r}", _FIX_FIELDS.replace("fields", "columns"))
    for name in REQUIRED:
        if name not in header:
            return RowError(name, f"column {name!r} is missing",
                            f"add a {name} column (columns: {', '.join(COLUMNS)})")
    if len(set(header)) != len(header):
        duplicate = next(n for n in header if header.count(n) > 1)
        return RowError(duplicate, f"column {duplicate!r} appears twice", "keep one column of each name")
    return None


def parse_header(raw: bytes) -> list[str]:
    """The column names of a CSV header line (a header that is not CSV names no known column)."""
    # NUL shown as \0: the header is kept in the stream's state, which a database must hold.
    text = raw.removeprefix(_BOM).decode("utf-8", errors="replace").replace("\x00", "\\0")
    try:
        return [name.strip() for name in next(csv.reader([text], strict=True))]
    except (csv.Error, StopIteration):
        return [text.strip() or "(empty header)"]


def csv_records(block: Block) -> Iterator[tuple[int, bytes]]:
    """Group a block's physical lines into CSV records: (first line, raw record bytes)."""
    pending: list[bytes] = []
    start = block.first_line
    quotes = 0
    newline = block.newline
    for offset, raw in enumerate(block.lines):
        if not pending:
            start = block.first_line + offset
        pending.append(raw)
        quotes += raw.count(b'"')
        if quotes % 2 == 0:
            yield start, newline.join(pending)
            pending, quotes = [], 0
    if pending:  # only at the end of a file: an unterminated quoted field
        yield start, newline.join(pending)


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
                if not isinstance(exc, json.JSONDecodeError):
                    problem = json_problem(exc)
                    raise RowError("properties", f"properties: {problem.reason}", problem.fix) from None
                raise RowError("properties", f"properties is not valid JSON ({exc})",
                               'write properties as a JSON object, e.g. {"region": "eu-west-1"} '
                               '(inside a CSV field, double each quote: "{""region"": ""eu-west-1""}")') from None
        return map_event(row, raw)
    except RowError as exc:
        return _reject(location, line, exc.field, exc.reason, exc.fix, raw)
