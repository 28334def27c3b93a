"""The SuiteQL subset the sandbox answers, parsed deliberately.

Exactly the shapes the connector sends (and a little around them), nothing more, so a
query the connector should not send fails the way NetSuite fails it::

    SELECT <column | TO_CHAR(column, 'format') [AS alias]>, ...
    FROM <table>
    [WHERE <column> <op> <value> [AND ...]]        op: = != <> < <= > >= | IN ('a', 'b')
    [ORDER BY <column> [ASC|DESC], ...]

Values are 'strings', numbers, TO_TIMESTAMP('2026-01-01 00:00:00', 'YYYY-MM-DD HH24:MI:SS')
and TO_DATE('2026-01-01', 'YYYY-MM-DD'). Row values come back as SuiteQL renders them:
strings, booleans as ``T``/``F``, dates in the account's date format (``1/15/2026``)
unless the query formats them with TO_CHAR.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|>=|<=|=|<|>)"
    r"|(?P<punct>[(),*])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
FORMATS = {"YYYY-MM-DD HH24:MI:SS": "%Y-%m-%d %H:%M:%S", "YYYY-MM-DD": "%Y-%m-%d"}
KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "ORDER", "BY", "ASC", "DESC", "AS", "IN"}


class SuiteQLError(ValueError):
    """A query NetSuite would refuse; the message is NetSuite's."""


@dataclass
class Column:
    name: str
    alias: str
    to_char: str | None = None


@dataclass
class Condition:
    column: str
    op: str
    value: Any


@dataclass
class Query:
    table: str
    columns: list[Column]
    where: list[Condition] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SuiteQLError(f"Invalid search query. Syntax error near '{text[pos:pos + 20]}'.")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def keyword(self, *words: str) -> str | None:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() in words:
            self.i += 1
            return tok[1].upper()
        return None

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise SuiteQLError(f"Invalid search query. Expected {word} near {self._here()}.")

    def expect(self, kind: str, text: str | None = None) -> str:
        tok = self.peek()
        if tok is None or tok[0] != kind or (text is not None and tok[1] != text):
            raise SuiteQLError(f"Invalid search query. Unexpected {self._here()}.")
        self.i += 1
        return tok[1]

    def _here(self) -> str:
        tok = self.peek()
        return f"'{tok[1]}'" if tok else "end of query"

    def identifier(self) -> str:
        name = self.expect("word")
        if name.upper() in KEYWORDS:
            raise SuiteQLError(f"Invalid search query. Unexpected keyword '{name}'.")
        return name.lower()

    def string(self) -> str:
        return self.expect("str")[1:-1].replace("''", "'")

    def column(self) -> Column:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() == "TO_CHAR":
            self.i += 1
            self.expect("punct", "(")
            name = self.identifier()
            self.expect("punct", ",")
            fmt = self.string()
            if fmt not in FORMATS:
                raise SuiteQLError(f"Invalid search query. Unsupported date format '{fmt}'.")
            self.expect("punct", ")")
            col = Column(name, name, fmt)
        else:
            name = self.identifier()
            col = Column(name, name)
        if self.keyword("AS"):
            col.alias = self.identifier()
        return col

    def value(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise SuiteQLError("Invalid search query. Missing value at end of query.")
        if tok[0] == "str":
            return self.string()
        if tok[0] == "num":
            self.i += 1
            return Decimal(tok[1])
        if tok[0] == "word" and tok[1].upper() in ("TO_TIMESTAMP", "TO_DATE"):
            func = tok[1].upper()
            self.i += 1
            self.expect("punct", "(")
            text = self.string()
            self.expect("punct", ",")
            fmt = self.string()
            self.expect("punct", ")")
            if fmt not in FORMATS:
                raise SuiteQLError(f"Invalid search query. Unsupported date format '{fmt}' in {func}.")
            try:
                parsed = datetime.strptime(text, FORMATS[fmt]).replace(tzinfo=UTC)
            except ValueError:
                raise SuiteQLError(f"Invalid search query. '{text}' does not match format '{fmt}'.") from None
            return parsed if func == "TO_TIMESTAMP" else parsed.date()
        raise SuiteQLError(f"Invalid search query. Unexpected {self._here()}.")

    def condition(self) -> Condition:
        name = self.identifier()
        if self.keyword("IN"):
            self.expect("punct", "(")
            values = [self.value()]
            while self.peek() == ("punct", ","):
                self.i += 1
                values.append(self.value())
            self.expect("punct", ")")
            return Condition(name, "IN", values)
        op = self.expect("op")
        return Condition(name, "!=" if op == "<>" else op, self.value())

    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        columns = [self.column()]
        while self.peek() == ("punct", ","):
            self.i += 1
            columns.append(self.column())
        self.expect_keyword("FROM")
        table = self.identifier()
        query = Query(table, columns)
        if self.keyword("WHERE"):
            query.where.append(self.condition())
            while self.keyword("AND"):
                query.where.append(self.condition())
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            while True:
                name = self.identifier()
                descending = self.keyword("ASC", "DESC") == "DESC"
                query.order.append((name, descending))
                if self.peek() != ("punct", ","):
                    break
                self.i += 1
        if self.peek() is not None:
            raise SuiteQLError(f"Invalid search query. Unexpected {self._here()}.")
        return query


def parse(text: str) -> Query:
    """Parse a query of the supported subset, or raise :class:`SuiteQLError`."""
    return _Parser(text).parse()


def _comparable(value: Any, against: Any) -> Any:
    """``value`` (a row's) made comparable with ``against`` (the query's)."""
    if isinstance(against, datetime) and isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(against, Decimal) and isinstance(value, int | str):
        return Decimal(value)
    if isinstance(against, str) and isinstance(value, bool):
        return "T" if value else "F"
    return value


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _render(value: Any, fmt: str | None) -> Any:
    if value is None:
        return None
    if fmt is not None:
        if not isinstance(value, date):
            raise SuiteQLError("Invalid search query. TO_CHAR needs a date or timestamp column.")
        return value.strftime(FORMATS[fmt])
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, datetime):
        return f"{value.month}/{value.day}/{value.year}"
    if isinstance(value, date):
        return f"{value.month}/{value.day}/{value.year}"
    if isinstance(value, Decimal):
        return value
    return str(value)


def run(query: Query, tables: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Evaluate ``query`` over ``tables`` (rows keyed by lower-case column name)."""
    if query.table not in tables:
        raise SuiteQLError(
            f"Invalid search query. Detailed unprocessed description follows. Search error occurred: "
            f"Record '{query.table}' was not found."
        )
    rows = tables[query.table]
    known = set().union(*(r.keys() for r in rows)) if rows else set()
    used = [c.name for c in query.columns] + [c.column for c in query.where] + [n for n, _ in query.order]
    for name in used:
        if rows and name not in known:
            raise SuiteQLError(
                f"Invalid search query. Detailed unprocessed description follows. Search error occurred: "
                f"Field '{name}' for record '{query.table}' was not found."
            )
    out = []
    for row in rows:
        keep = True
        for cond in query.where:
            value = row.get(cond.column)
            if cond.op == "IN":
                keep = any(_comparable(value, v) == v for v in cond.value)
            else:
                keep = False if value is None else _OPS[cond.op](_comparable(value, cond.value), cond.value)
            if not keep:
                break
        if keep:
            out.append(row)
    for name, descending in reversed(query.order):
        out.sort(key=lambda r, n=name: _sort_key(r.get(n)), reverse=descending)
    return [{c.alias: _render(row.get(c.name), c.to_char) for c in query.columns} for row in out]


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (1, "")
    if isinstance(value, str) and value.isdigit():
        return (0, (len(value), value))
    if isinstance(value, int):
        return (0, (len(str(value)), str(value)))
    return (0, value)
