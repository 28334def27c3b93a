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
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

from subledger.core.config_files import MAX_DEPTH, DuplicateKeyError, JsonKeys, nesting_depth
from subledger.core.terms.bounds import MAX_NUMBER_TEXT
from subledger.core.terms.parsing import ExactYamlLoader
from subledger.plugins.files.fields import RowError, shown_name

# Line breaks of every file: \n, \r\n and a lone \r (old Mac). Not str.splitlines(), which
# also breaks at form feeds, U+2028 and other characters a value may hold.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


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


def _exact_float(text: str) -> Any:
    # Over-long number text stays text: the field parser refuses it without building it.
    return text if len(text) > MAX_NUMBER_TEXT else Decimal(text)


_WHITESPACE = " \t\r\n"


class DuplicateKey(ValueError):
    """A JSON object holds the same key twice (JSON readers keep the last one silently)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the key {shown_name(key)!r} appears twice in one object")
        self.key = key


class TooDeep(ValueError):
    """A JSON value nests objects and lists more than :data:`MAX_DEPTH` levels deep."""

    def __init__(self) -> None:
        super().__init__(f"values are nested more than {MAX_DEPTH} levels deep")


def _decoder() -> tuple[json.JSONDecoder, JsonKeys]:
    keys = JsonKeys()
    return json.JSONDecoder(parse_float=_exact_float, parse_constant=_no_constants, object_pairs_hook=keys), keys


def _checked(value: Any, keys: JsonKeys) -> Any:
    if keys.duplicates:
        raise DuplicateKey(keys.duplicates[0])
    if isinstance(value, dict | list) and nesting_depth(value) > MAX_DEPTH:
        raise TooDeep
    return value


def loads_exact(text: str | bytes) -> Any:
    """Parse one JSON value with every non-integer number as an exact ``Decimal``.

    Raises:
        json.JSONDecodeError: the text is not JSON.
        ValueError: it holds a key twice in one object (:class:`DuplicateKey`), nests more
            than :data:`MAX_DEPTH` levels deep (:class:`TooDeep`), or a number JSON allows
            but Python cannot read (an integer of more than 4300 digits).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    decoder, keys = _decoder()
    try:
        value = decoder.decode(text)
    except RecursionError:
        raise TooDeep from None
    return _checked(value, keys)


def json_problem(exc: ValueError) -> RowError:
    """The reject of a JSON value :func:`loads_exact` refused (not a syntax error)."""
    if isinstance(exc, DuplicateKey):
        return RowError(shown_name(exc.key), str(exc),
                        f"keep one {shown_name(exc.key)!r} in the object (JSON would silently keep the last)")
    if isinstance(exc, TooDeep):
        return RowError(None, str(exc), f"nest objects and lists at most {MAX_DEPTH} levels deep")
    return RowError(None, f"invalid JSON: {exc}", "write numbers as plain digits")


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
    lines = _split_keep(text)
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


def _split_keep(text: str) -> list[str]:
    """Lines with their line breaks (\\n, \\r\\n or \\r), like ``splitlines(keepends=True)``
    without breaking at the other characters ``splitlines`` counts as line ends."""
    lines: list[str] = []
    start = 0
    for match in _LINE_BREAK.finditer(text):
        lines.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        lines.append(text[start:])
    return lines


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
        value, end, error = _decode_at(text, pos, lines)
        if _skip(text, end) != len(text):
            line = lines.at(_skip(text, end))
            raise FileUnreadable(line, "extra data after the JSON value",
                                 "put several records in one JSON array, or use a .jsonl file with one per line")
        yield Row(lines.at(pos), value if error is None else None, text[pos:end], error)
        return
    pos = _skip(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        value, end, error = _decode_at(text, pos, lines)
        yield Row(lines.at(pos), value if error is None else None, text[pos:end], error)
        pos = _skip(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            return
        line = lines.at(min(pos, len(text)))
        raise FileUnreadable(line, "expected ',' or ']' after an array element",
                             "separate records with commas and close the array with ]")


def _decode_at(text: str, pos: int, lines: _LineCounter) -> tuple[Any, int, RowError | None]:
    """The value starting at ``pos``, where it ends, and why the record cannot load (or None).

    A key written twice, or nesting too deep (but still parsed), rejects the record alone.
    """
    decoder, keys = _decoder()
    try:
        value, end = decoder.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise FileUnreadable(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})",
                             "fix the JSON syntax at that line (a validator such as `python -m json.tool` "
                             "shows the spot)") from None
    except RecursionError:
        raise FileUnreadable(lines.at(pos), f"the record's values are nested more than {MAX_DEPTH} levels deep",
                             f"nest objects and lists at most {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise FileUnreadable(lines.at(pos), f"invalid JSON: {exc}", "write numbers as plain digits") from None
    try:
        _checked(value, keys)
    except ValueError as exc:
        return value, end, json_problem(exc)
    return value, end, None


def jsonl_rows(text: str) -> Iterator[Row]:
    """Rows of a JSON Lines file: one JSON value per line; blank lines are skipped."""
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
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
            yield Row(number, None, raw, json_problem(exc))


# --- YAML --------------------------------------------------------------------------------


def yaml_rows(text: str) -> Iterator[Row]:
    """Rows of a YAML file: each item of a top-level list, else each document (``---``).

    Raises:
        FileUnreadable: at a syntax error (rows of earlier documents have been yielded).
    """
    try:
        # A strict SafeLoader whose floats are Decimal: a key twice in one record, an alias
        # bomb, a recursive alias and nesting deeper than MAX_DEPTH are refused.
        loader = ExactYamlLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        raise _unreadable(exc, text) from None
    try:
        while loader.check_node():
            node = loader.get_node()
            items = node.value if isinstance(node, yaml.SequenceNode) else [node]
            for item in items:
                raw = text[item.start_mark.index : item.end_mark.index]
                line = item.start_mark.line + 1
                try:
                    data = loader.construct_document(item)
                except DuplicateKeyError as exc:
                    key = shown_name(exc.key)
                    yield Row(exc.problem_mark.line + 1, None, raw, RowError(
                        key, f"the key {key!r} appears twice in the record (first on line {exc.first_line})",
                        f"keep one {key!r} in the record (YAML would silently keep the last)",
                    ))
                    continue
                except yaml.constructor.ConstructorError as exc:
                    mark = exc.problem_mark
                    yield Row(mark.line + 1 if mark else line, None, raw, RowError(
                        None, f"invalid YAML value: {exc.problem}", "write numbers as plain digits",
                    ))
                    continue
                yield Row(line, data, raw, node=item)
    except yaml.YAMLError as exc:
        raise _unreadable(exc, text) from None
    except RecursionError:
        raise FileUnreadable(None, f"values are nested more than {MAX_DEPTH} levels deep",
                             f"nest mappings and lists at most {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()


def _unreadable(exc: yaml.YAMLError, text: str) -> FileUnreadable:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or ""
        if "alias" in problem:
            fix = "write the values out instead of repeating them with aliases (*name)"
        elif "nested" in problem:
            fix = f"nest mappings and lists at most {MAX_DEPTH} levels deep"
        else:
            fix = "fix the YAML at that line (check indentation and quoting)"
        return FileUnreadable(line, f"invalid YAML: {problem}", fix)
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return FileUnreadable(line, f"invalid YAML: the file holds the control character {char!r}, which YAML "
                              "does not allow", "remove the control character (in a quoted value, write it as "
                              "an escape such as \\t)")
    return FileUnreadable(None, f"invalid YAML: {exc}", "fix the YAML syntax")


__all__ = [
    "CsvTable",
    "FileUnreadable",
    "Row",
    "csv_table",
    "json_problem",
    "json_rows",
    "jsonl_rows",
    "loads_exact",
    "yaml_rows",
]
