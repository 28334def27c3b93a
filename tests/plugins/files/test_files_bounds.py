"""The files connector holds every value to the documented bounds (docs/formats.md#bounds).

Numbers, money, dates, nesting, NUL characters, keys written twice, line lengths and line
endings: each out-of-bounds value is a reject naming the file, line and field, and its
neighbours still load. The usage fast path and the careful path agree on every line.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subledger.core.connector import Rejected, UsageEventIn
from subledger.plugins.files.linefile import MAX_LINE_BYTES, Block
from subledger.plugins.files.usage import careful_event, jsonl_events


def line(quantity: str = "1", *, event_id: str = "e1", timestamp: str = "2026-03-01T00:00:00Z",
         extra: str = "") -> str:
    return (f'{{"event_id": "{event_id}", "customer": "acme", "meter": "api_calls", "quantity": {quantity}, '
            f'"timestamp": "{timestamp}"{extra}}}')


def one(raw: str | bytes) -> UsageEventIn | Rejected:
    """The fast path's answer for one line, checked against the careful path's."""
    data = raw.encode() if isinstance(raw, str) else raw
    [fast] = list(jsonl_events(Block([data], 1, True), "u.jsonl"))
    careful = careful_event(data, 1, "u.jsonl")
    assert fast == careful
    return fast


@pytest.mark.parametrize(("quantity", "ok"), [
    ("999999999999999999999999999999", True),  # 30 digits: the largest whole quantity
    ("1000000000000000000000000000000", False),  # 10^30
    ("1e29", True), ("1e30", False), ("-1e30", False), ('"1e30"', False),
    ("1e999999", False), ("-1e999999", False), ('"1e99999999999"', False),
    ("0.000000000000000000000000000001", True),  # 10^-30
    ("0.0000000000000000000000000000001", False),  # 10^-31
    ("1.00000000000000000000000000000000000", True),  # trailing zeros are not significant
    ("1234567890.12345678901234567890", True),  # 30 significant digits
    ("1234567890.123456789012345678901", False),  # 31
    ('"' + "1" * 81 + '"', False),  # over 80 characters: refused unread
    ("1" * 5000, False),  # more digits than Python reads from JSON
    ("0e-99999", True), ("-0", True),
])
def test_quantities_are_bounded(quantity: str, ok: bool) -> None:
    result = one(line(quantity))
    if ok:
        assert isinstance(result, UsageEventIn)
    else:
        assert isinstance(result, Rejected) and result.line == 1, result
        assert result.field in ("quantity", None) and result.fix


def test_a_huge_quantity_costs_nothing_to_refuse() -> None:
    import time

    started = time.monotonic()
    for quantity in ('"' + "9" * 1_000_000 + '"', "9" * 1_000_000 + ".5", "1e99999999999"):
        assert isinstance(one(line(quantity)), Rejected)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("timestamp", "ok"), [
    ("2000-01-01T00:00:00Z", True), ("1999-12-31T23:59:59Z", False),
    ("2100-12-31T23:59:59Z", True), ("2101-01-01T00:00:00Z", False),
    ("2100-12-31T23:00:00-05:00", False),  # 2101-01-01 04:00 in UTC
    ("0001-01-01T00:00:00+01:00", False), ("9999-12-31T23:59:59-05:00", False),
])
def test_usage_timestamps_lie_in_the_accepted_range(timestamp: str, ok: bool) -> None:
    result = one(line(timestamp=timestamp))
    assert isinstance(result, UsageEventIn) == ok
    if not ok:
        assert isinstance(result, Rejected) and result.field == "timestamp" and "2000-01-01" in result.fix


@pytest.mark.parametrize("raw", [
    line(extra=', "properties": {"url": "https://x.example:443/a", "k:v": "a:b:c"}'),
    line(event_id="urn:evt:1"),
    line(extra=', "properties": {"t": "\\u003a"}'),  # an escaped colon
    line(extra=', "properties": {"nested": {"a:b": [1, "c:d", {"e": "f:g"}]}}'),
    line('"2.5"'),
])
def test_colons_in_values_never_look_like_a_key_twice(raw: str) -> None:
    assert isinstance(one(raw), UsageEventIn)


@pytest.mark.parametrize(("raw", "field"), [
    ('{"event_id": "e1", "customer": "acme", "meter": "m", "quantity": 1, "quantity": 1000, '
     '"timestamp": "2026-03-01T00:00:00Z"}', "quantity"),
    ('{"event_id": "e1", "event_id": "e2", "customer": "acme", "meter": "m", "quantity": 1, '
     '"timestamp": "2026-03-01T00:00:00Z"}', "event_id"),
    (line(extra=', "properties": {"region": "eu", "region": "us"}'), "region"),
])
def test_a_key_written_twice_in_a_usage_line_is_refused(raw: str, field: str) -> None:
    result = one(raw)
    assert isinstance(result, Rejected) and result.field == field and "appears twice" in result.reason


@pytest.mark.parametrize("extra", [
    ', "properties": {"a": "x\\u0000y"}', ', "properties": {"a\\u0000": 1}', ', "properties": {"a": ["\\u0000"]}',
])
def test_nul_anywhere_in_a_usage_line_is_refused(extra: str) -> None:
    result = one(line(extra=extra))
    assert isinstance(result, Rejected) and result.field and result.field.startswith("properties.")


def test_properties_nested_past_the_limit_are_refused_and_within_it_kept() -> None:
    def nested(depth: int) -> str:
        return '{"a": ' * depth + "1" + "}" * depth

    assert isinstance(one(line(extra=f', "properties": {nested(60)}')), UsageEventIn)
    assert isinstance(one(line(extra=f', "properties": {nested(70)}')), Rejected)
    assert isinstance(one(line(extra=f', "properties": {nested(3000)}')), Rejected)
    assert isinstance(one(line(extra=', "properties": {"a": ' + "[" * 3000 + "]" * 3000 + "}")), Rejected)


def test_an_overlong_usage_line_is_a_reject_and_the_next_lines_load(folder, read) -> None:
    huge = line(extra=', "properties": {"blob": "' + "x" * (MAX_LINE_BYTES + 10) + '"}')
    folder.write("usage.jsonl", line(event_id="a") + "\n" + huge + "\n" + line(event_id="b") + "\n" + huge)
    result = read("usage_events")
    assert result.event_ids == ["a", "b"]
    assert [(r.line, "1024 KiB" in r.reason) for r in result.rejects] == [(2, True), (4, True)]
    assert result.state["files"]["usage.jsonl"]["offset"] == (folder.root / "usage.jsonl").stat().st_size


def test_cr_only_usage_files_keep_their_lines_and_resume_after_an_append(folder, read) -> None:
    folder.write("usage.jsonl", line(event_id="a") + "\r" + line(event_id="b") + "\r")
    first = read("usage_events")
    assert first.event_ids == ["a", "b"] and first.rejects == []
    folder.append("usage.jsonl", line(event_id="c") + "\r" + line(event_id="d"))  # d: no line end yet
    second = read("usage_events", first.state)
    assert second.event_ids == ["c", "d"] and second.rejects == []
    assert second.state["files"]["usage.jsonl"]["line"] == 3


def test_a_usage_csv_header_that_is_not_csv_is_a_reject_not_a_crash(folder, read) -> None:
    folder.write("usage.csv", 'event_id,"customer\rmeter,quantity,timestamp\ne1,acme,m,1,2026-03-01T00:00:00Z\n')
    result = read("usage_events")
    assert result.events == [] and [r.line for r in result.rejects] == [1]


def test_a_line_separator_inside_a_jsonl_value_is_not_a_line_break(folder, read) -> None:
    # JSON allows U+2028 and U+0085 raw inside a string; str.splitlines() would break the line there.
    folder.write("customers.jsonl", '{"id": "a", "name": "A\u2028B\u0085C"}\n{"id": "b", "name": "B"}\n')
    result = read("customers")
    assert result.rejects == [] and [c.name for c in result.parents] == ["A\u2028B\u0085C", "B"]


def test_money_and_whole_numbers_are_bounded(folder, read) -> None:
    folder.write("invoices.json", json.dumps([
        {"id": "ok", "customer": "a", "currency": "USD", "lines": [{"amount": "9999999999999.99"}]},
        {"id": "big", "customer": "a", "currency": "USD", "lines": [{"amount": "10000000000000.00"}]},
        {"id": "yen", "customer": "a", "currency": "JPY", "lines": [{"amount": "1000000000000000"}]},
    ], indent=1))
    result = read("invoices")
    assert [i.external_id for i in result.parents] == ["ok"]
    assert {r.field for r in result.rejects} == {"lines[0].amount"}
    assert all("10^15 minor units" in r.reason for r in result.rejects)
    folder.write("credit_grants.csv", "id,customer,currency,amount,priority,effective_at\n"
                 "g1,a,USD,10.00,3000000000,2026-01-01\ng2,a,USD,10.00,-5,2026-01-01\n")
    grants = read("credit_grants")
    assert [g.external_id for g in grants.parents] == ["g2"] and grants.rejects[0].field == "priority"


def test_dates_of_records_lie_in_the_accepted_range(folder, read) -> None:
    folder.write("invoices.csv", "id,customer,currency,issued_at,line_amount,line_service_start\n"
                 "i1,a,USD,2026-01-05,1.00,2026-01-01\ni2,a,USD,9999-12-31,1.00,2026-01-01\n"
                 "i3,a,USD,2026-01-05,1.00,1899-01-01\n")
    result = read("invoices")
    assert [i.external_id for i in result.parents] == ["i1"]
    assert sorted((r.line, r.field) for r in result.rejects) == [(3, "issued_at"), (4, "line_service_start")]


def test_yaml_records_refuse_keys_twice_recursive_aliases_and_control_characters(folder, read) -> None:
    folder.write("customers.yaml", "- {id: a, name: A}\n- id: b\n  name: B\n  email: b@x.example\n  name: C\n")
    result = read("customers")
    assert [c.external_id for c in result.parents] == ["a"]
    assert [(r.line, r.field) for r in result.rejects] == [(5, "name")]
    folder.write("customers.yaml", "- &a {id: a, name: A, metadata: {self: *a}}\n")
    [reject] = read("customers").rejects
    assert "inside its own anchor" in reject.reason
    folder.write("customers.yaml", "- {id: a, name: A}\n- {id: b, name: \"B\x01\"}\n")
    [reject] = read("customers").rejects
    assert reject.line == 2 and "control character" in reject.reason


def test_yaml_merge_keys_may_still_be_overridden(folder, read) -> None:
    folder.write("customers.yaml", "- &base {id: a, name: A, currency: USD}\n- {<<: *base, id: b, name: B}\n")
    result = read("customers")
    assert result.rejects == [] and [(c.external_id, c.name, c.currency) for c in result.parents] == [
        ("a", "A", "USD"), ("b", "B", "USD"),
    ]


def test_json_records_refuse_a_key_twice_and_keep_the_rest(folder, read) -> None:
    folder.write("customers.json", '[{"id": "a", "name": "A"},\n{"id": "b", "name": "B", "name": "C"},\n'
                 '{"id": "c", "name": "C"}]')
    result = read("customers")
    assert [c.external_id for c in result.parents] == ["a", "c"]
    assert [(r.line, r.field) for r in result.rejects] == [(2, "name")]


_CHARS = st.characters(blacklist_categories=("Cs",), max_codepoint=0x2FFF)


@settings(max_examples=150, deadline=None)
@given(
    props=st.dictionaries(st.text(_CHARS, max_size=6), st.one_of(
        st.text(_CHARS, max_size=8), st.integers(-(10**40), 10**40), st.booleans(), st.none(),
        st.lists(st.text(_CHARS, max_size=4), max_size=3),
        st.dictionaries(st.text(_CHARS, max_size=4), st.text(_CHARS, max_size=4), max_size=2),
    ), max_size=4),
    quantity=st.one_of(st.integers(-(10**35), 10**35), st.decimals(allow_nan=False, allow_infinity=False).map(str)),
    event_id=st.text(_CHARS, min_size=1, max_size=10),
    twice=st.sampled_from([None, "quantity", "meter", "properties"]),
)
def test_the_fast_and_careful_paths_agree_on_any_line(props, quantity, event_id, twice) -> None:
    doc = {"event_id": event_id, "customer": "acme:1", "meter": "m", "quantity": quantity,
           "timestamp": "2026-03-01T00:00:00+01:00", "properties": props}
    raw = json.dumps(doc, ensure_ascii=False)
    if twice is not None:
        raw = raw[:-1] + f", {json.dumps(twice)}: {json.dumps(doc[twice])}}}"
    result = one(raw)  # asserts fast == careful
    if twice is not None:
        assert isinstance(result, Rejected) and "appears twice" in result.reason
    if isinstance(result, UsageEventIn):
        assert abs(result.quantity) < Decimal(10) ** 30


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("block_size", [7, 16, 64, 1 << 20])
def test_overlong_lines_and_records_are_rejects_in_any_block_size(folder, read, monkeypatch, newline, block_size):
    from subledger.plugins.files import linefile

    monkeypatch.setattr(linefile, "BLOCK_SIZE", block_size)
    monkeypatch.setattr(linefile, "MAX_LINE_BYTES", 50)
    rows = [
        "event_id,customer,meter,quantity,timestamp",  # line 1
        "e1,acme,m,1,2026-03-01T00:00:00Z",  # 2
        "e2,acme," + "m" * 60 + ",1,2026-03-01T00:00:00Z",  # 3: over 50 bytes
        "e3,acme,m,1,2026-03-01T00:00:00Z",  # 4
        'e4,"acme' + newline + "x" * 30 + '",m,1,2026-03-01T00:00:00Z',  # 5-6: a record over 50 bytes
        "e5,acme,m,1,2026-03-01T00:00:00Z",  # 7
        "e6,acme,m,1," + "9" * 60,  # 8, the last line, without its line end
    ]
    folder.write("usage.csv", newline.join(rows).encode())
    result = read("usage_events")
    assert result.event_ids == ["e1", "e3", "e5"]
    assert sorted(r.line for r in result.rejects) == [3, 5, 8]
    assert all("KiB" in r.reason for r in result.rejects)
