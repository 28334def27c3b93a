"""Issue 15, failure C: one bad row never blocks a load. Every case, pulled into the store.

Each case is a file of good rows and one (or more) bad ones, pulled through the engine on
SQLite and PostgreSQL. It must not fail the pull; the bad row is a reject naming the file,
the line, the field and the fix; the good rows load; and loaded + rejected = input rows.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func
from sqlmodel import Session, select

from subledger.core.model import Contract, Customer, Invoice, Reject, StreamState, UsageEvent
from subledger.plugins.files import FilesConfig, FilesConnector
from subledger.sync.pull import StreamReport, pull_stream


def event(event_id: str, quantity: str = "1", *, extra: str = "", timestamp: str = "2026-03-01T00:00:00Z") -> str:
    return (f'{{"event_id": "{event_id}", "customer": "acme", "meter": "api_calls", "quantity": {quantity}, '
            f'"timestamp": "{timestamp}"{extra}}}')


GOOD = event("good-1") + "\n"
GOOD_LAST = event("good-2") + "\n"
CONTRACT = (
    "id: {id}\ncustomer: acme\ncurrency: USD\nstart_date: 2026-01-01\n{extra}"
    "components:\n  - {{type: flat_fee, id: platform, amount: \"100.00\"}}\n"
)


@dataclass
class Pulled:
    report: StreamReport
    loaded: int
    rejects: list[Reject]

    def at(self, line: int) -> Reject:
        found = [r for r in self.rejects if r.line == line]
        assert len(found) == 1, f"expected one reject at line {line}: {[(r.line, r.reason) for r in self.rejects]}"
        return found[0]


MODELS = {"usage_events": UsageEvent, "customers": Customer, "contracts": Contract, "invoices": Invoice}


def pull(engine: Engine, root: Path, stream: str) -> Pulled:
    connector = FilesConnector(FilesConfig(path=root), connection="files")
    report = pull_stream(engine, connector, stream)  # must not raise, whatever the files hold
    with Session(engine) as session:
        loaded = session.exec(select(func.count()).select_from(MODELS[stream])).one()
        rejects = list(session.exec(select(Reject).order_by(Reject.line)).all())
    return Pulled(report, loaded, rejects)


def write(root: Path, name: str, data: str | bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def usage_case(engine: Engine, root: Path, bad: str | bytes, *, name: str = "usage.jsonl") -> Pulled:
    body = bad if isinstance(bad, bytes) else bad.encode()
    write(root, name, GOOD.encode() + body + GOOD_LAST.encode())
    pulled = pull(engine, root, "usage_events")
    assert pulled.loaded == 2, [(r.line, r.reason) for r in pulled.rejects]
    assert pulled.loaded + len(pulled.rejects) == 3  # loaded + rejected = input
    reject = pulled.at(2)
    assert reject.location == name and reject.fix
    return pulled


# --- crashes of the whole pull on PostgreSQL ------------------------------------------------


def test_a_nul_character_is_a_reject_not_a_crash(engine: Engine, root: Path) -> None:
    pulled = usage_case(engine, root, event("e\\u0000x") + "\n")
    assert pulled.at(2).field == "event_id" and "NUL" in pulled.at(2).reason


def test_a_nul_character_in_properties_or_a_property_name_is_a_reject(engine: Engine, root: Path) -> None:
    write(root, "usage.jsonl", GOOD + event("e2", extra=', "properties": {"region": "x\\u0000"}') + "\n"
          + event("e3", extra=', "properties": {"re\\u0000gion": "x"}') + "\n" + GOOD_LAST)
    pulled = pull(engine, root, "usage_events")
    assert pulled.loaded == 2
    assert pulled.at(2).field == "properties.region" and pulled.at(3).field == "properties.re\\0gion"
    assert "\x00" not in pulled.at(3).field  # stored as the two characters \0


def test_a_raw_nul_byte_in_a_csv_usage_file_is_a_reject(engine: Engine, root: Path) -> None:
    write(root, "usage.csv", b"event_id,customer,meter,quantity,timestamp\n"
          b"e1,acme,api_calls,1,2026-03-01T00:00:00Z\ne\x002,acme,api_calls,1,2026-03-01T00:00:00Z\n")
    pulled = pull(engine, root, "usage_events")
    assert pulled.loaded == 1 and pulled.at(3).field == "event_id"


@pytest.mark.parametrize("fmt", ["csv", "json", "yaml"])
def test_a_nul_in_a_customer_record_is_a_reject(engine: Engine, root: Path, fmt: str) -> None:
    data = {
        "csv": b"id,name\na,A\nb,B\x00C\nc,C\n",
        "json": b'[{"id": "a", "name": "A"},\n{"id": "b", "name": "B\\u0000C"},\n{"id": "c", "name": "C"}]',
        "yaml": b'- {id: a, name: A}\n- {id: b, name: "B\\0C"}\n- {id: c, name: C}\n',
    }[fmt]
    write(root, f"customers.{fmt}", data)
    pulled = pull(engine, root, "customers")
    assert pulled.loaded == 2 and len(pulled.rejects) == 1
    assert pulled.rejects[0].field == "name" and pulled.rejects[0].line == (3 if fmt == "csv" else 2)


def test_quantity_1e999999_is_a_reject_not_a_crash(engine: Engine, root: Path) -> None:
    pulled = usage_case(engine, root, event("e2", "1e999999") + "\n")
    assert pulled.at(2).field == "quantity" and "10^30" in pulled.at(2).reason


def test_a_field_name_over_255_characters_is_a_reject_the_store_can_hold(engine: Engine, root: Path) -> None:
    long = "x" * 300
    pulled = usage_case(engine, root, event("e2", extra=f', "{long}": 1') + "\n")
    reject = pulled.at(2)
    assert reject.field is not None and len(reject.field) <= 64 and reject.field.startswith("xxx")
    write(root, "customers.csv", f"id,name,{long}\nacme,Acme,1\n")
    write(root, "customers.json", json.dumps([{"id": "b", "name": "B", long: 1}]))
    customers = pull(engine, root, "customers")
    header = next(r for r in customers.rejects if r.location == "customers.csv")
    assert header.line == 1 and len(header.field or "") <= 64
    assert any(r.location == "customers.json" and r.line == 1 for r in customers.rejects)


# --- crashes of the whole pull on both stores -------------------------------------------------


def test_bytes_that_are_not_utf8_in_csv_and_yaml_are_rejects_with_their_line(engine: Engine, root: Path) -> None:
    write(root, "customers.csv", b"id,name\na,A\nb,\xff\xfe\nc,C\n")
    write(root, "customers.yaml", b"- id: d\n  name: D\n- id: e\n  name: \xff\xfe\n- id: f\n  name: F\n")
    pulled = pull(engine, root, "customers")
    assert pulled.loaded == 4
    assert {(r.location, r.line) for r in pulled.rejects} == {("customers.csv", 3), ("customers.yaml", 3)}
    assert all("UTF-8" in r.reason and r.fix == "save the file as UTF-8" for r in pulled.rejects)
    assert all("\ufffd" in r.raw for r in pulled.rejects)


def test_bytes_that_are_not_utf8_in_usage_are_a_reject(engine: Engine, root: Path) -> None:
    usage_case(engine, root, b'{"event_id": "e2", "customer": "\xff", "meter": "m", "quantity": 1, '
               b'"timestamp": "2026-03-01T00:00:00Z"}\n')
    assert "UTF-8" in pull(engine, root, "usage_events").at(2).reason


def test_json_nested_5000_deep_is_a_reject(engine: Engine, root: Path) -> None:
    deep = "[" * 5000 + "]" * 5000
    usage_case(engine, root, event("e2", extra=f', "properties": {{"a": {deep}}}') + "\n")
    write(root, "customers.json", '[{"id": "a", "name": "A"},\n' + deep + "]")
    pulled = pull(engine, root, "customers")
    assert pulled.loaded == 1
    [reject] = [r for r in pulled.rejects if r.location == "customers.json"]
    assert reject.line == 2 and "nested" in reject.reason


def test_json_nested_past_the_limit_but_parseable_rejects_the_record_alone(engine: Engine, root: Path) -> None:
    deep = '{"a": ' * 100 + "1" + "}" * 100
    write(root, "customers.json", f'[{{"id": "a", "name": "A"}},\n{{"id": "b", "name": "B", "metadata": {deep}}},\n'
          '{"id": "c", "name": "C"}]')
    pulled = pull(engine, root, "customers")
    assert pulled.loaded == 2 and pulled.at(2).reason.startswith("values are nested more than 64")


def test_quantity_1e99999999999_is_refused_cheaply(engine: Engine, root: Path) -> None:
    # A 75-byte line once took 1 GB and 28 s. Now it is a reject, before any huge Decimal.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    write(root, "usage.jsonl", GOOD + event("e2", '"1e99999999999"') + "\n" + event("e3", "1e99999999") + "\n"
          + event("e4", '"' + "9" * 100_000 + '"') + "\n" + event("e5", "9" * 100_000) + "\n" + GOOD_LAST)
    pulled = pull(engine, root, "usage_events")
    assert time.monotonic() - started < 5
    assert pulled.loaded == 2 and [r.line for r in pulled.rejects] == [2, 3, 4, 5]
    assert all(r.field == "quantity" or "digits" in r.reason for r in pulled.rejects), [
        r.reason for r in pulled.rejects]
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: well under 200 MB


# --- accepted rows that made every later sync fail -------------------------------------------------


def test_quantity_1e30_is_refused_so_it_never_reaches_a_64_bit_column(engine: Engine, root: Path) -> None:
    write(root, "usage.jsonl", GOOD + event("e2", "1e30") + "\n" + event("e3", "1000000000000000000000000000000")
          + "\n" + event("e4", "999999999999999999999999999999") + "\n")
    pulled = pull(engine, root, "usage_events")
    assert pulled.loaded == 2  # good-1 and the largest quantity allowed (30 nines)
    assert {r.line for r in pulled.rejects} == {2, 3}


def test_a_contract_ending_9999_12_31_or_starting_0001_01_01_is_refused_with_the_fix(
        engine: Engine, root: Path) -> None:
    write(root, "contracts/ok.yaml", CONTRACT.format(id="ok", extra=""))
    write(root, "contracts/end.yaml", CONTRACT.format(id="end", extra="end_date: 9999-12-31\n"))
    write(root, "contracts/start.yaml", CONTRACT.format(id="start", extra="").replace("2026-01-01", "0001-01-01"))
    pulled = pull(engine, root, "contracts")
    assert pulled.loaded == 1
    by_file = {r.location: r for r in pulled.rejects}
    assert by_file["contracts/end.yaml"].line == 5 and by_file["contracts/end.yaml"].field == "end_date"
    assert by_file["contracts/start.yaml"].field == "start_date"
    assert all("2000-01-01 to 2100-12-31" in r.fix for r in pulled.rejects)


def test_a_duplicate_currency_in_a_contract_is_refused_not_last_wins(engine: Engine, root: Path) -> None:
    write(root, "contracts/dup.yaml", CONTRACT.format(id="dup", extra="currency: EUR\n"))
    pulled = pull(engine, root, "contracts")
    assert pulled.loaded == 0
    [reject] = pulled.rejects
    assert (reject.line, reject.field) == (5, "currency") and "appears twice" in reject.reason


# --- ids, lines and accounting ---------------------------------------------------------------------------


def test_a_duplicate_event_id_with_different_content_is_a_reject_with_file_and_line(
        engine: Engine, root: Path) -> None:
    write(root, "usage.jsonl", event("e1") + "\n" + event("e1", "2") + "\n")
    pulled = pull(engine, root, "usage_events")
    assert pulled.loaded == 1
    [reject] = pulled.rejects
    assert (reject.location, reject.line, reject.field) == ("usage.jsonl", 2, "event_id")
    assert "already read with different content" in reject.reason


def test_three_versions_of_one_id_leave_no_row_unaccounted(engine: Engine, root: Path) -> None:
    write(root, "usage.jsonl", event("e1") + "\n" + event("e1", "2") + "\n" + event("e1", "3") + "\n"
          + event("e1") + "\n")  # the first version again: the same event, loaded once
    pulled = pull(engine, root, "usage_events")
    assert pulled.loaded == 1 and pulled.report.usage_duplicates == 1
    assert [r.line for r in pulled.rejects] == [2, 3]
    assert pulled.loaded + pulled.report.usage_duplicates + len(pulled.rejects) == 4


def test_versions_in_two_usage_files_name_both_files(engine: Engine, root: Path) -> None:
    write(root, "usage/a.jsonl", event("e1") + "\n")
    write(root, "usage/b.jsonl", GOOD + event("e1", "9") + "\n")
    pulled = pull(engine, root, "usage_events")
    [reject] = pulled.rejects
    assert (reject.location, reject.line) == ("usage/b.jsonl", 2) and "earlier usage file" in reject.reason


@pytest.mark.parametrize("name", ["usage.jsonl", "usage.csv"])
def test_cr_only_line_endings_keep_two_rows_two_rows(engine: Engine, root: Path, name: str) -> None:
    if name.endswith(".csv"):
        data = ("event_id,customer,meter,quantity,timestamp\re1,acme,m,1,2026-03-01T00:00:00Z\r"
                "e2,acme,m,2,2026-03-01T00:00:00Z\r")
    else:
        data = event("e1") + "\r" + event("e2") + "\r"
    write(root, name, data)
    pulled = pull(engine, root, "usage_events")
    assert (pulled.loaded, pulled.rejects) == (2, [])
    write(root, "customers.csv", "id,name\ra,A\rb,B\r")
    write(root, "customers.jsonl", '{"id": "c", "name": "C"}\r{"id": "d", "name": "D"}\r')
    assert pull(engine, root, "customers").loaded == 4


def test_a_yaml_alias_bomb_is_refused_with_a_reject(engine: Engine, root: Path) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)
    ]
    write(root, "customers.yaml", "- id: ok\n  name: OK\n---\n- id: bomb\n  name: B\n  metadata:\n"
          + "".join(f"    {line}\n" for line in levels))
    pulled = pull(engine, root, "customers")
    assert pulled.loaded == 1  # the document before the bomb
    [reject] = pulled.rejects
    assert "alias" in reject.reason and reject.line is not None and reject.line > 3


def test_rejects_of_bad_rows_are_stored_once_however_many_pulls(engine: Engine, root: Path) -> None:
    write(root, "usage.jsonl", GOOD.encode() + event("e\\u0000", extra=', "' + "y" * 400 + '": 1').encode()
          + b"\n\xff\xfe\n" + event("e1", "1e999999").encode() + b"\n")
    first = pull(engine, root, "usage_events")
    assert first.loaded == 1 and [r.line for r in first.rejects] == [2, 3, 4]
    with Session(engine) as session, session.begin():  # forget the checkpoint: read it all again
        session.execute(delete(StreamState))
    second = pull(engine, root, "usage_events")
    assert second.loaded == 1 and [r.id for r in second.rejects] == [r.id for r in first.rejects]
