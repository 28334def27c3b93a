"""Generators of broken input files, and independent counts of the rows a file holds.

A uniquely named module (not conftest) so the fuzz tests can import it. The files start
valid (every row loads) and are then broken by a few mutations, each a class of input the
issue-15 attack campaign used: truncation, garbled bytes, byte-order marks, unicode, huge
numbers, NUL characters, deep nesting, keys written twice, ids written twice, other line
endings.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

import yaml
from hypothesis import strategies as st

HUGE = ["1e999999", '"1e99999999999"', "1e30", "-1e30", "1" * 40, '"' + "9" * 300 + '"', "1e-31", "NaN",
        "Infinity", '"1_000"', "0.0000000000000000000000000000001", "999999999999999999999999999999", "-0",
        "1e29", '"12.5"', "true", "null", '""', "[1]", '{"a": 1}']
UNICODE = ["\u2028", "\u0085", "\ufeff", "é", "😀", "\u200b", "\\ud800", "\\udfff", "\\u0000", "\x00", "\x1c",
           "\r", "\n", '"', ",", "'", "\\", "\t", "\x0c", "\ufffd", "\uff51", "\U0010fffd"]
BYTES = [b"\xff", b"\xfe", b"\xc3", b"\x80", b"\xef\xbb\xbf", b"\x00", b"\r", b"\n", b'"', b",", b"{", b"}",
         b"[", b"]", b":", b"-", b" ", b"#", b"&", b"*", b"!", b"%", b"|", b">"]


@dataclass(frozen=True)
class Mutation:
    kind: str
    at: int  # a position or a row index, taken modulo the size
    pick: int  # which value from the lists above


MUTATIONS = st.builds(
    Mutation,
    kind=st.sampled_from(["truncate", "garble", "insert", "bom", "huge", "unicode", "nul", "deep", "dup_key",
                          "dup_id", "same_row", "long_key", "cr", "crlf", "blank", "strip_newline"]),
    at=st.integers(0, 10_000),
    pick=st.integers(0, 10_000),
)


# --- usage --------------------------------------------------------------------------------------


def usage_row(i: int, quantity: str, fmt: str) -> str:
    props = '{"region": "eu-west-1", "tier": 2}' if i % 2 else "{}"
    if fmt == "jsonl":
        return (f'{{"event_id": "evt-{i}", "customer": "acme", "meter": "api_calls", "quantity": {quantity}, '
                f'"timestamp": "2026-03-{i % 28 + 1:02d}T10:00:00Z", "properties": {props}}}')
    cell = '"' + props.replace('"', '""') + '"'
    return f"evt-{i},acme,api_calls,{quantity.strip(chr(34))},2026-03-{i % 28 + 1:02d}T10:00:00Z,{cell}"


CSV_HEADER = "event_id,customer,meter,quantity,timestamp,properties"


def mutate_rows(rows: list[str], mutations: list[Mutation], fmt: str) -> list[str]:
    """Row-level mutations (before the file is joined)."""
    rows = list(rows)
    copies = 0
    for m in mutations:
        if not rows:
            break
        i = m.at % len(rows)
        row = rows[i]
        if m.kind == "huge" and fmt in ("jsonl", "json"):
            rows[i] = re.sub(r'"quantity": [^,]+,', f'"quantity": {HUGE[m.pick % len(HUGE)]},', row, count=1)
        elif m.kind == "huge" and fmt == "csv":
            cells = row.split(",", 4)
            if len(cells) == 5:
                cells[3] = HUGE[m.pick % len(HUGE)].replace(",", "")
                rows[i] = ",".join(cells)
        elif m.kind == "nul":
            pos = m.pick % (len(row) + 1)
            rows[i] = row[:pos] + ("\\u0000" if fmt in ("jsonl", "json") and m.pick % 2 else "\x00") + row[pos:]
        elif m.kind == "deep" and fmt in ("jsonl", "json"):
            depth = [5, 30, 63, 64, 65, 200, 3000][m.pick % 7]
            nest = "[" * depth + "]" * depth
            rows[i] = row[:-1] + f', "metadata_x": {nest}}}' if fmt == "json" else row.replace(
                '"properties": ', f'"properties": {{"deep": {nest}, "rest": ', 1).removesuffix("}") + "}}"
        elif m.kind == "dup_key" and fmt in ("jsonl", "json"):
            key = ["quantity", "event_id", "customer", "name", "id"][m.pick % 5]
            rows[i] = row[:-1] + f', "{key}": "x"}}'
        elif m.kind == "dup_id":
            copies += 1  # each copy differs from the others: the same row again is "same_row"
            other = row.replace("10:00:00", f"10:{copies:02d}:00").replace("Corp", f"Inc{copies}")
            if other != row:  # the same id with other values
                rows.insert(i + 1, other)
        elif m.kind == "same_row" and fmt in ("jsonl", "csv"):
            rows.insert(i + 1, row)
        elif m.kind == "long_key" and fmt in ("jsonl", "json"):
            rows[i] = row[:-1] + ', "' + "k" * (200 + m.pick % 300) + '": 1}'
        elif m.kind == "unicode":
            pos = m.pick % (len(row) + 1)
            rows[i] = row[:pos] + UNICODE[m.pick % len(UNICODE)] + row[pos:]
        elif m.kind == "blank":
            rows.insert(i, ["", "   ", "\t"][m.pick % 3])
    return rows


def mutate_bytes(data: bytes, mutations: list[Mutation]) -> bytes:
    """Byte-level mutations of the whole file."""
    for m in mutations:
        if m.kind == "truncate" and data:
            data = data[: m.at % len(data)]
        elif m.kind == "garble" and data:
            pos = m.at % len(data)
            data = data[:pos] + BYTES[m.pick % len(BYTES)] + data[pos + 1 :]
        elif m.kind == "insert":
            pos = m.at % (len(data) + 1)
            data = data[:pos] + BYTES[m.pick % len(BYTES)] + data[pos:]
        elif m.kind == "bom":
            data = b"\xef\xbb\xbf" + data
        elif m.kind == "cr":
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r")
        elif m.kind == "crlf":
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        elif m.kind == "strip_newline":
            data = data.rstrip(b"\r\n")
    return data


def build_usage(fmt: str, count: int, mutations: list[Mutation]) -> bytes:
    rows = mutate_rows([usage_row(i, str(i * 7 + 1), fmt) for i in range(count)], mutations, fmt)
    if fmt == "csv":
        rows = [CSV_HEADER, *rows]
    return mutate_bytes(("\n".join(rows) + "\n").encode("utf-8", errors="surrogatepass"), mutations)


# --- records ----------------------------------------------------------------------------------------


def build_customers(fmt: str, count: int, mutations: list[Mutation]) -> bytes:
    records = [{"id": f"cus-{i}", "name": f"A{i} Corp", "email": f"ap{i}@a{i}.example", "currency": "USD",
                "metadata": {"crm": f"0015g{i}", "tier": i}} for i in range(count)]
    if fmt in ("jsonl", "json"):
        rows = [json.dumps(r) for r in records]
    elif fmt == "csv":
        rows = [f"cus-{i},A{i} Corp,ap{i}@a{i}.example,USD,0015g{i}" for i in range(count)]
    else:
        rows = [f"- id: cus-{i}\n  name: A{i} Corp\n  email: ap{i}@a{i}.example\n  currency: USD\n"
                f"  metadata: {{crm: 0015g{i}, tier: {i}}}" for i in range(count)]
    # The same record twice loads once, silently: not a row of its own to count here.
    mutations = [m for m in mutations if m.kind != "same_row"]
    rows = mutate_rows(rows, mutations, "json" if fmt in ("json", "yaml") else fmt)
    if fmt == "json":
        text = "[\n" + ",\n".join(rows) + "\n]\n"
    elif fmt == "csv":
        text = "id,name,email,currency,metadata.crm\n" + "\n".join(rows) + "\n"
    else:
        text = "\n".join(rows) + "\n"
    return mutate_bytes(text.encode("utf-8", errors="surrogatepass"), mutations)


# --- independent row counts -----------------------------------------------------------------------------


def _newline(data: bytes) -> bytes:
    cr, lf = data.find(b"\r", 0, 1 << 16), data.find(b"\n", 0, 1 << 16)
    if cr >= 0 and (lf < 0 or cr < lf) and data[cr + 1 : cr + 2] not in (b"\n", b""):
        return b"\r"
    return b"\n"


def _physical_lines(data: bytes) -> list[bytes]:
    newline = _newline(data)
    lines = data.split(newline)
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln.removesuffix(b"\r") for ln in lines] if newline == b"\n" else lines


def _blank(raw: bytes) -> bool:
    try:
        return not raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def usage_rows(data: bytes, fmt: str) -> tuple[int, bool]:
    """(rows the file holds, whether it is a CSV whose header can be read at all)."""
    lines = _physical_lines(data)
    if fmt == "jsonl":
        return sum(1 for ln in lines if ln and not _blank(ln)), True
    records: list[bytes] = []
    pending: list[bytes] = []
    quotes = 0
    for ln in lines:
        pending.append(ln)
        quotes += ln.count(b'"')
        if quotes % 2 == 0:
            records.append(b"\n".join(pending))
            pending, quotes = [], 0
    if pending:
        records.append(b"\n".join(pending))
    if not records:
        return 0, True
    rows = sum(1 for r in records[1:] if not _blank(r))
    return rows, True


def document_rows(data: bytes, fmt: str) -> int | None:
    """How many records a JSON, JSONL, YAML or CSV record file holds, read permissively
    (None when a permissive reader cannot tell)."""
    text = data.decode("utf-8-sig", errors="surrogateescape")
    if fmt == "jsonl":
        return sum(1 for ln in re.split(r"\r\n|\r|\n", text) if ln.lstrip("\ufeff").strip())
    if fmt == "csv":
        lines = re.split(r"(?<=\r\n)|(?<=\r)(?!\n)|(?<=\n)", text)
        try:
            rows = list(csv.reader([ln for ln in lines if ln], strict=True))
        except csv.Error:
            return None
        return sum(1 for r in rows[1:] if r and any(c.strip() for c in r))
    try:
        if fmt == "json":
            value = json.loads(text)
            return len(value) if isinstance(value, list) else 1
        docs = list(yaml.safe_load_all(io.StringIO(text)))
    except Exception:
        return None
    return sum(len(d) if isinstance(d, list) else 1 for d in docs)


# --- contracts ------------------------------------------------------------------------------------

PRICES = [
    {"model": "per_unit", "unit_price": "0.002"},
    {"model": "graduated", "tiers": [{"up_to": 1000, "unit_price": "0.01"}, {"up_to": None, "unit_price": "0.001"}]},
    {"model": "volume", "tiers": [{"up_to": 100, "unit_price": "2.50"},
                                  {"up_to": None, "unit_price": "2.00", "flat_fee": "10.00"}]},
    {"model": "package", "package_size": 100, "package_price": "2.00", "rounding": "up"},
    {"model": "percentage", "percent": "2.9", "fixed_fee": "0.30", "minimum_fee": "0.50"},
]
VALUES = ["1e999999", "1e30", "-1", "0", "9999-12-31", "0001-01-01", "2026-02-30", "USD", "XAU", "", None, True,
          [], {}, "1" * 90, "0.0000000000000000000000000000001", "999999999999999999999999999999", "\x00",
          "\u2028", "😀", 10**40, -(10**40), "2100-12-31", "1999-12-31", "inf", "NaN", {"a": [[[[1]]]]}]
FIELDS = ["currency", "start_date", "end_date", "rounding", "components", "commitments", "credits", "discounts",
          "billing", "id", "customer", "status", "version", "metadata", "extra_field"]
PERIODS = ["2026-03", "2026-01", "2026-12", "2027-01", "2025-12", "9999-12", "0000-01", "2026-13", "2026-02-30",
           "2026-03-15", "2100-12", "2101-01", "1999-12", "", "march", "2026-3", "20260301", "9999-12-31",
           "2026-03-01T00:00:00Z"]


def contract(price: dict, changes: list[tuple[str, object]], extras: bool) -> dict:
    doc: dict = {
        "id": "c1", "customer": "acme", "currency": "USD", "start_date": "2026-01-01", "end_date": "2026-12-31",
        "billing": {"interval": "month", "anchor_day": 1},
        "components": [
            {"type": "flat_fee", "id": "platform", "amount": "1000.00"},
            {"type": "usage", "id": "api", "meter": "api_calls", "price": price,
             **({} if price["model"] == "percentage" else {"allotment": {"quantity": 100, "rollover": True}})},
        ],
    }
    if extras:
        doc["commitments"] = [{"id": "min", "kind": "minimum", "amount": "1500.00"},
                              {"id": "cap", "kind": "maximum", "amount": "5000.00"}]
        doc["credits"] = [{"id": "pre", "amount": "200.00", "expires": "2027-01-01"}]
        doc["discounts"] = [{"id": "launch", "percent": "10", "periods": 2}]
    for field, value in changes:
        components = doc.get("components")
        if field == "components" and isinstance(value, str) and isinstance(components, list) and len(components) == 2:
            doc["components"][1]["price"] = {**price, next(iter(k for k in price if k != "model")): value}
        else:
            doc[field] = value
    return doc


def render(doc: dict, fmt: str, twice: str | None) -> str:
    if fmt == "json":
        text = json.dumps(doc, default=str, ensure_ascii=False)
        return text[:-1] + f', "{twice}": "x"}}' if twice else text
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    return text + f"{twice}: EUR\n" if twice else text
