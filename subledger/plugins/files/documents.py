"""Reading whole record files (CSV, JSON, JSONL, YAML) into rows that know their line.

Every row carries the line it starts on and its raw text, so a rejected row can be
pointed at exactly. Numbers are parsed exactly: JSON with ``parse_float=Decimal``, YAML
with the terms module's loader that resolves floats to ``Decimal``.

A syntax error that makes the rest of a file unreadable raises :class:`FileUnreadable`
after the rows before it have been yielded, so those still load.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

from subledger.core.terms.parsing import ExactYamlLoader
from subledger.plugins.files.fields import RowError


@dataclass(frozen=True, slots=True)
class Row:
    """One record of a file: where it starts, its data (or why it is unreadable), its text."""

    line: int
    data: Any
    raw: str
    error: RowError | None = None
    node: Any = None  # the YAML node, to find the line of a field inside the record

    @property
    def end_line(self) -> int:
        """The line the record ends on (YAML's raw text runs on to the next token)."""
        return self.line + self.raw.rstrip().count("\n")

    def line_of(self, path: tuple[int | str, ...]) -> int:
        """The line of the field at ``path`` inside this record (YAML), else the record's line."""
        node = self.node
        line = self.line
        for segment in path:
            if isinstance(node, yaml.MappingNode) and isinstance(segment, str):
                node = next((v for k, v in node.value if getattr(k, "value", None) == segment), node)
            elif isinstance(node, yaml.SequenceNode) and isinstance(segment, int) and segment < len(node.value):
                node = node.value[segment]
            if node is not None:
                line = node.start_mark.line + 1
        return line


class FileUnreadable(Exception):
    """A file (or its remainder, from ``line`` on) cannot be parsed."""

    def __init__(self, line: int | None, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason
        self.fix = fix


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constants)
_WHITESPACE = " \t\r\n"


def loads_exact(text: str | bytes) -> Any:
    """Parse one JSON value with every non-integer number as an exact ``Decimal``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _DECODER.decode(text)


# --- CSV ------------------------------------------------------------------------------


@dataclass
class CsvTable:
    """A CSV file's header (with its line) and its rows as dicts keyed by column."""

    header: list[str]
    rows: Iterator[Row]


def csv_table(text: str) -> CsvTable:
    """Split CSV text into its header and rows. Cells are stripped; blank rows are skipped.

    Raises:
        FileUnreadable: the file has no header row.
    """
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines, strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise FileUnreadable(1, "the file is empty", "add a header row naming the columns") from None
    except csv.Error as exc:
        raise FileUnreadable(1, f"the header row is not valid CSV ({exc})", "fix the header row") from None
    return CsvTable(header, _csv_rows(reader, lines, header))


def _csv_rows(reader: Any, lines: list[str], header: list[str]) -> Iterator[Row]:
    width = len(header)
    end = reader.line_num
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileUnreadable(start, f"the file is not valid CSV from here on ({exc})",
                                 "close the quoted field (a quote inside a field is written twice: \"\")") from None
        end = reader.line_num
        raw = "".join(lines[start - 1 : end]).rstrip("\r\n")
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != width:
            error = RowError(None, f"the row has {len(cells)} fields but the header has {width}",
                             "give the row one value per header column (quote values that contain commas)")
            yield Row(start, None, raw, error)
            continue
        yield Row(start, {name: cell.strip() for name, cell in zip(header, cells, strict=True)}, raw)


# --- JSON and JSONL -----------------------------------------------------------------------


class _LineCounter:
    """Line numbers of character offsets, counted incrementally (offsets only grow)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def at(self, offset: int) -> int:
        self.line += self.text.count("\n", self.pos, offset)
        self.pos = offset
        return self.line


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def json_rows(text: str) -> Iterator[Row]:
    """Rows of a JSON file: the elements of a top-level array, or the one top-level object.

    Raises:
        FileUnreadable: at the first syntax error (rows before it have been yielded).
    """
    lines = _LineCounter(text)
    pos = _skip(text, 1 if text.startswith("\ufeff") else 0)
    if pos >= len(text):
        raise FileUnreadable(1, "the file is empty", "write a JSON array of records, or one record object")
    if text[pos] != "[":
        value, end = _decode_at(text, pos, lines)
        if _skip(text, end) != len(text):
            line = lines.at(_skip(text, end))
            raise FileUnreadable(line, "extra data after the JSON value",
                                 "put several records in one JSON array, or use a .jsonl file with one per line")
        yield Row(lines.at(pos), value, text[pos:end])
        return
    pos = _skip(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        value, end = _decode_at(text, pos, lines)
        yield Row(lines.at(pos), value, text[pos:end])
        pos = _skip(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        line = lines.at(min(pos, len(text)))
        raise FileUnreadable(line, "expected ',' or ']' after an array element",
                             "separate records with commas and close the array with ]")


def _decode_at(text: str, pos: int, lines: _LineCounter) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise FileUnreadable(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})",
                             "fix the JSON syntax at that line (a validator such as `python -m json.tool` "
                             "shows the spot)") from None
    except ValueError as exc:
        raise FileUnreadable(lines.at(pos), f"invalid JSON: {exc}", "write numbers as plain digits") from None


def jsonl_rows(text: str) -> Iterator[Row]:
    """Rows of a JSON Lines file: one JSON value per line; blank lines are skipped."""
    for number, line in enumerate(text.splitlines(), start=1):
        raw = line.lstrip("\ufeff") if number == 1 else line
        if not raw.strip():
            continue
        try:
            yield Row(number, loads_exact(raw), raw)
        except json.JSONDecodeError as exc:
            yield Row(number, None, raw, RowError(
                None, f"invalid JSON: {exc.msg} (column {exc.colno})",
                "write one complete JSON object per line",
            ))
        except ValueError as exc:
            yield Row(number, None, raw, RowError(None, f"invalid JSON: {exc}", "write numbers as plain digits"))


# --- YAML --------------------------------------------------------------------------------


def yaml_rows(text: str) -> Iterator[Row]:
    """Rows of a YAML file: each item of a top-level list, else each document (``---``).

    Raises:
        FileUnreadable: at a syntax error (rows of earlier documents have been yielded).
    """
    loader = ExactYamlLoader(text)  # a SafeLoader whose floats are Decimal
    try:
        while loader.check_node():
            node = loader.get_node()
            items = node.value if isinstance(node, yaml.SequenceNode) else [node]
            for item in items:
                raw = text[item.start_mark.index : item.end_mark.index]
                line = item.start_mark.line + 1
                try:
                    data = loader.construct_document(item)
                except yaml.constructor.ConstructorError as exc:
                    mark = exc.problem_mark
                    yield Row(mark.line + 1 if mark else line, None, raw, RowError(
                        None, f"invalid YAML value: {exc.problem}", "write numbers as plain digits",
                    ))
                    continue
                yield Row(line, data, raw, node=item)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise FileUnreadable(line, f"invalid YAML: {exc.problem or exc.context}",
                             "fix the YAML at that line (check indentation and quoting)") from None
    except yaml.YAMLError as exc:
        raise FileUnreadable(None, f"invalid YAML: {exc}", "fix the YAML syntax") from None
    finally:
        loader.dispose()


__all__ = [
    "CsvTable",
    "FileUnreadable",
    "Row",
    "csv_table",
    "json_rows",
    "jsonl_rows",
    "loads_exact",
    "yaml_rows",
]
