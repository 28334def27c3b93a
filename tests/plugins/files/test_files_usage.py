"""Usage files (JSONL and CSV) become exact UsageEventIn records; bad lines become rejects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from subledger.core.connector import Rejected, UsageEventIn
from subledger.plugins.files.linefile import Block
from subledger.plugins.files.usage import careful_event, event_hash, jsonl_events

GOOD = """
    {"event_id": "e1", "customer": "acme", "meter": "api_calls", "quantity": 1200, "timestamp": "2026-03-01T10:00:00Z"}
    {"event_id": "e2", "customer": "acme", "meter": "storage_gb", "quantity": 2.5, "timestamp": "2026-03-01T12:00:00+02:00", "properties": {"region": "eu", "price": 0.10}}
    {"event_id": "e3", "customer": "beta", "meter": "api_calls", "quantity": "0.001", "timestamp": "2026-03-31T23:59:59.250-05:00", "properties": {"tags": [1, 2.50]}}
"""  # noqa: E501


def test_jsonl_events_map_exactly(folder, read):
    folder.write("usage/2026-03.jsonl", GOOD)
    result = read("usage_events")
    assert result.rejects == []
    e1, e2, e3 = result.events
    assert e1 == UsageEventIn(
        event_id="e1", customer_external_id="acme", meter="api_calls", quantity=Decimal("1200"),
        occurred_at=datetime(2026, 3, 1, 10, 0, tzinfo=UTC), properties={},
        payload_hash=event_hash(b'{"event_id": "e1", "customer": "acme", "meter": "api_calls", '
                                b'"quantity": 1200, "timestamp": "2026-03-01T10:00:00Z"}'),
    )
    # 2.5 is read as the decimal 2.5, never as a float; 12:00+02:00 is 10:00 UTC.
    assert e2.quantity == Decimal("2.5") and isinstance(e2.quantity, Decimal)
    assert e2.occurred_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert e2.occurred_at.tzinfo is UTC
    # Non-integer numbers in properties stay exact, as the decimal text the file wrote.
    assert e2.properties == {"region": "eu", "price": "0.10"}
    assert e3.quantity == Decimal("0.001")
    assert e3.occurred_at == datetime(2026, 4, 1, 4, 59, 59, 250000, tzinfo=UTC)
    assert e3.properties == {"tags": [1, "2.50"]}


def test_csv_events_map_exactly_with_quoted_json_properties(folder, read):
    folder.write("usage/march.csv", '''
        event_id,customer,meter,quantity,timestamp,properties
        c1,acme,api_calls,3,2026-03-02T00:00:00Z,"{""region"": ""us"", ""amount"": 19.99}"
        c2,acme,api_calls,0.75,2026-03-02T01:00:00+01:00,
    ''')
    result = read("usage_events")
    assert result.rejects == []
    c1, c2 = result.events
    assert (c1.event_id, c1.quantity, c1.properties) == ("c1", Decimal(3), {"region": "us", "amount": "19.99"})
    assert (c2.quantity, c2.occurred_at, c2.properties) == (
        Decimal("0.75"), datetime(2026, 3, 2, 0, 0, tzinfo=UTC), {},
    )


def test_csv_columns_may_come_in_any_order_and_properties_is_optional(folder, read):
    folder.write("usage.csv", """
        timestamp,quantity,meter,customer,event_id
        2026-03-02T00:00:00Z,4,seats,acme,s1
    """)
    [event] = read("usage_events").events
    assert (event.event_id, event.customer_external_id, event.meter, event.quantity) == (
        "s1", "acme", "seats", Decimal(4),
    )


def test_blank_lines_crlf_and_a_byte_order_mark_are_tolerated(folder, read):
    line = '{"event_id": "b1", "customer": "acme", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z"}'
    second = line.replace("b1", "b2").encode()
    folder.write("usage/bom.jsonl", b"\xef\xbb\xbf" + line.encode() + b"\r\n\r\n  \t\n" + second + b"\r\n")
    result = read("usage_events")
    assert result.rejects == []
    assert result.event_ids == ["b1", "b2"]
    # The hash is of the line itself: no BOM, no CR, so the same line hashes the same anywhere.
    assert result.events[0].payload_hash == event_hash(line.encode())


BAD_LINES = [
    # (line text, field, words in the reason, words in the fix)
    ("not json", None, "invalid JSON", "one complete JSON object per line"),
    ('["e1", "acme"]', None, "not an object", "write each event as an object"),
    ('{"customer": "acme", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z"}',
     "event_id", "event_id is missing", "add event_id to every event"),
    ('{"event_id": "x", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z"}',
     "customer", "customer is missing", "add customer to every event"),
    ('{"event_id": "x", "customer": "a", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z"}',
     "meter", "meter is missing", "add meter to every event"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "timestamp": "2026-03-01T00:00:00Z"}',
     "quantity", "quantity is missing", "add quantity to every event"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": "ten", "timestamp": "2026-03-01T00:00:00Z"}',
     "quantity", "'ten' is not a number", "plain digits"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": "NaN", "timestamp": "2026-03-01T00:00:00Z"}',
     "quantity", "not a finite number", "as digits"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": true, "timestamp": "2026-03-01T00:00:00Z"}',
     "quantity", "is not an exact number", "as digits"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": 1}',
     "timestamp", "timestamp is missing", "add timestamp to every event: ISO 8601 with offset"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00"}',
     "timestamp", "has no UTC offset", "add the offset: Z for UTC"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": 1, "timestamp": "yesterday"}',
     "timestamp", "is not an ISO 8601 timestamp", "write timestamp like 2026-03-31T14:05:00Z"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": 1, "timestamp": 1772323200}',
     "timestamp", "is not text", "ISO 8601 text"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z", '
     '"properties": [1]}', "properties", "properties is a list, not an object", "write properties as a JSON object"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z", '
     '"qty": 2}', "qty", "unknown field 'qty'", "put anything else inside properties"),
    ('{"event_id": "' + "x" * 256 + '", "customer": "a", "meter": "m", "quantity": 1, '
     '"timestamp": "2026-03-01T00:00:00Z"}', "event_id", "256 characters long (at most 255)", "shorten event_id"),
    ('{"event_id": "x", "customer": "a", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z", '
     '"properties": {"v": NaN}}', None, "invalid JSON", "plain digits"),
    ('{"event_id": "\\ud800", "customer": "a", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z"}',
     None, "half of a UTF-16 surrogate pair", "escape both halves of the pair"),
]


def test_each_kind_of_bad_line_is_rejected_with_file_line_field_and_fix(folder, read):
    good = '{"event_id": "ok-%d", "customer": "a", "meter": "m", "quantity": 1, "timestamp": "2026-03-01T00:00:00Z"}'
    lines = []
    for i, (text, *_rest) in enumerate(BAD_LINES):
        lines += [good % i, text]
    folder.write("usage/mixed.jsonl", "\n".join(lines) + "\n")
    result = read("usage_events")
    # Every good line still loads.
    assert result.event_ids == [f"ok-{i}" for i in range(len(BAD_LINES))]
    assert len(result.rejects) == len(BAD_LINES)
    for i, (text, field, reason, fix) in enumerate(BAD_LINES):
        reject = result.reject_at(2 * i + 2)
        assert reject.stream == "usage_events"
        assert reject.location == "usage/mixed.jsonl"
        assert reject.field == field, text
        assert reason in reject.reason, (text, reject.reason)
        assert fix in reject.fix, (text, reject.fix)
        assert reject.raw == text


def test_invalid_utf8_is_rejected_and_names_the_byte(folder, read):
    folder.write("usage/latin1.jsonl", b'{"event_id": "x", "customer": "caf\xe9", "meter": "m", "quantity": 1, '
                 b'"timestamp": "2026-03-01T00:00:00Z"}\n')
    [reject] = read("usage_events").rejects
    assert (reject.line, reject.field) == (1, None)
    assert reject.reason == "the line is not valid UTF-8 (byte 35)"
    assert reject.fix == "save the file as UTF-8"


def test_bad_csv_rows_are_rejected_and_the_rest_loads(folder, read):
    folder.write("usage/bad.csv", """
        event_id,customer,meter,quantity,timestamp,properties
        r1,acme,api_calls,1,2026-03-01T00:00:00Z,
        r2,acme,api_calls,1,2026-03-01T00:00:00Z
        r3,acme,api_calls,1.5.2,2026-03-01T00:00:00Z,
        r4,acme,api_calls,1,2026-03-01T00:00:00Z,{not json}
        r5,acme,api_calls,1,2026-03-01T00:00:00Z,
    """)
    result = read("usage_events")
    assert result.event_ids == ["r1", "r5"]
    assert result.reject_at(3).reason == "the row has 5 fields but the header has 6"
    assert (result.reject_at(4).field, result.reject_at(4).reason) == ("quantity", "quantity '1.5.2' is not a number")
    assert result.reject_at(5).field == "properties"
    assert "double each quote" in result.reject_at(5).fix


def test_a_csv_header_with_an_unknown_or_missing_column_loads_nothing_and_says_why(folder, read):
    folder.write("usage/typo.csv", """
        event_id,customer,meter,qty,timestamp
        r1,acme,api_calls,1,2026-03-01T00:00:00Z
    """)
    folder.write("usage/short.csv", """
        event_id,customer,meter,quantity
        r1,acme,api_calls,1
    """)
    result = read("usage_events")
    assert result.events == []
    short, typo = sorted(result.rejects, key=lambda r: r.location)
    assert (typo.location, typo.line, typo.field) == ("usage/typo.csv", 1, "qty")
    assert typo.reason == "unknown column 'qty'; no row of the file was loaded"
    assert (short.location, short.line, short.field) == ("usage/short.csv", 1, "timestamp")
    assert short.reason == "column 'timestamp' is missing; no row of the file was loaded"


def test_a_quoted_csv_field_may_span_lines(folder, read):
    folder.write("usage/multi.csv", 'event_id,customer,meter,quantity,timestamp,properties\n'
                 'm1,acme,api,1,2026-03-01T00:00:00Z,"{""note"":\n ""two lines""}"\n'
                 'm2,acme,api,2,2026-03-01T00:00:00Z,\n'
                 'm3,acme,api,x,2026-03-01T00:00:00Z,\n')
    result = read("usage_events")
    assert result.event_ids == ["m1", "m2"]
    assert result.events[0].properties == {"note": "two lines"}
    # Line numbers count physical lines: m3 is on line 5.
    assert result.reject_at(5).field == "quantity"


# --- The fast path and the careful path agree --------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)
_quantity = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**9, max_value=10**9),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.booleans(),
    st.none(),
    _text,
)
_zones = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
_stamp = st.one_of(
    st.datetimes(timezones=_zones).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # naive: rejected
    _text,
)
_props = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), _text, st.decimals(
        allow_nan=False, allow_infinity=False, places=3, min_value=-1000, max_value=1000,
    )), max_size=3),
    st.lists(st.integers(), max_size=2),
)


def _dumps(obj: dict) -> bytes:
    # Write Decimals as JSON numbers (the way a producer would write 2.5), not strings.
    return json.dumps(obj, default=lambda d: float(d) if abs(d) < 1e15 else int(d)).encode()


@settings(max_examples=300, deadline=None)
@given(
    event_id=st.one_of(_text, st.integers(0, 10**6)),
    customer=_text,
    meter=_text,
    quantity=_quantity,
    stamp=_stamp,
    props=_props,
    extra=st.booleans(),
)
def test_fast_path_and_careful_path_give_the_same_result(event_id, customer, meter, quantity, stamp, props, extra):
    obj = {"event_id": event_id, "customer": customer, "meter": meter, "quantity": quantity, "timestamp": stamp}
    if props is not None:
        obj["properties"] = props
    if extra:
        obj["source"] = "x"
    raw = _dumps(obj)
    [fast] = list(jsonl_events(Block([raw], 7, True), "usage/x.jsonl"))
    careful = careful_event(raw, 7, "usage/x.jsonl")
    assert fast == careful
    if isinstance(fast, UsageEventIn):
        assert isinstance(fast.quantity, Decimal)
        assert fast.occurred_at.tzinfo is UTC
        assert "float" not in repr(fast.properties)
    else:
        assert isinstance(fast, Rejected) and fast.line == 7 and fast.fix
