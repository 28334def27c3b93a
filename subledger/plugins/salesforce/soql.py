"""The subset of SOQL the Salesforce connector sends, parsed and evaluated (for the sandbox).

Deliberately small and strict, so a query outside the subset fails loudly in tests
instead of being half understood::

    SELECT COUNT() FROM Account [WHERE ...]
    SELECT Id, Name, SystemModstamp FROM Account
        [WHERE cond [AND|OR cond ...]]        -- parentheses group
        [ORDER BY field [ASC|DESC], ...]
        [LIMIT n] [OFFSET n]

    cond  := field op literal | field [NOT] IN (literal, ...)
    op    := = != <> < <= > >=
    literal := 'text' (\\' escapes) | 123 | 1.5 | TRUE | FALSE | NULL
             | 2026-01-01 | 2026-01-01T00:00:00Z | 2026-01-01T00:00:00.000+0000

Keywords are case-insensitive, as in Salesforce. Field names are resolved by the caller
(the sandbox matches them case-insensitively against the object's describe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "ORDER", "BY", "ASC", "DESC", "LIMIT",
             "OFFSET", "TRUE", "FALSE", "NULL", "COUNT", "NULLS", "FIRST", "LAST"}


class SoqlError(ValueError):
    """A query the subset does not accept; Salesforce answers ``MALFORMED_QUERY``."""


@dataclass(frozen=True)
class Condition:
    """``field op value`` (``op`` ``IN``/``NOT IN`` take a tuple)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class BoolExpr:
    """``AND``/``OR`` of conditions or nested expressions."""

    op: str
    parts: tuple[Condition | BoolExpr, ...]


@dataclass
class Query:
    """A parsed query."""

    sobject: str
    fields: list[str]
    count: bool = False
    where: Condition | BoolExpr | None = None
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int | None = None
    offset: int = 0

    def condition_fields(self) -> list[str]:
        """Every field the WHERE clause names."""
        found: list[str] = []

        def walk(node: Condition | BoolExpr | None) -> None:
            if isinstance(node, Condition):
                found.append(node.field)
            elif isinstance(node, BoolExpr):
                for part in node.parts:
                    walk(part)

        walk(self.where)
        return found


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise SoqlError(f"unexpected token at position {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        out.append((kind, value))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_datetime(text: str) -> datetime:
    """A SOQL/REST datetime (``2026-01-01T00:00:00.000+0000`` or ``...Z``) as aware UTC."""
    iso = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", iso):
        iso = iso[:-2] + ":" + iso[-2:]
    return datetime.fromisoformat(iso).astimezone(UTC)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise SoqlError("unexpected end of query")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok == ("kw", word):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, value: str | None = None) -> str:
        tok = self.take()
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise SoqlError(f"expected {value or kind}, found {tok[1]!r}")
        return tok[1]

    def parse(self) -> Query:
        self.expect("kw", "SELECT")
        fields: list[str] = []
        count = False
        if self.keyword("COUNT"):
            self.expect("punct", "(")
            self.expect("punct", ")")
            count = True
        else:
            fields.append(self.expect("word"))
            while self.peek() == ("punct", ","):
                self.take()
                fields.append(self.expect("word"))
        self.expect("kw", "FROM")
        query = Query(sobject=self.expect("word"), fields=fields, count=count)
        if self.keyword("WHERE"):
            query.where = self.expr()
        if self.keyword("ORDER"):
            self.expect("kw", "BY")
            while True:
                name = self.expect("word")
                desc = False
                if self.keyword("DESC"):
                    desc = True
                else:
                    self.keyword("ASC")
                if self.keyword("NULLS") and not (self.keyword("FIRST") or self.keyword("LAST")):
                    raise SoqlError("NULLS must be followed by FIRST or LAST")
                query.order_by.append((name, desc))
                if self.peek() != ("punct", ","):
                    break
                self.take()
        if self.keyword("LIMIT"):
            query.limit = int(self.expect("number"))
        if self.keyword("OFFSET"):
            query.offset = int(self.expect("number"))
        if self.peek() is not None:
            raise SoqlError(f"unexpected token {self.peek()[1]!r}")  # type: ignore[index]
        return query

    def expr(self) -> Condition | BoolExpr:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else BoolExpr("OR", tuple(parts))

    def conjunction(self) -> Condition | BoolExpr:
        parts = [self.term()]
        while self.keyword("AND"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else BoolExpr("AND", tuple(parts))

    def term(self) -> Condition | BoolExpr:
        if self.peek() == ("punct", "("):
            self.take()
            inner = self.expr()
            self.expect("punct", ")")
            return inner
        name = self.expect("word")
        negate = self.keyword("NOT")
        if self.keyword("IN"):
            self.expect("punct", "(")
            values = [self.literal()]
            while self.peek() == ("punct", ","):
                self.take()
                values.append(self.literal())
            self.expect("punct", ")")
            return Condition(name, "NOT IN" if negate else "IN", tuple(values))
        if negate:
            raise SoqlError("NOT is only supported as NOT IN")
        op = self.expect("op")
        return Condition(name, "!=" if op == "<>" else op, self.literal())

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", value[1:-1])
        if kind == "number":
            return Decimal(value)
        if kind == "datetime":
            return parse_datetime(value)
        if kind == "date":
            return date.fromisoformat(value)
        if kind == "kw" and value in ("TRUE", "FALSE"):
            return value == "TRUE"
        if kind == "kw" and value == "NULL":
            return None
        raise SoqlError(f"expected a literal, found {value!r}")


def parse(text: str) -> Query:
    """Parse one query of the subset.

    Raises:
        SoqlError: outside the subset, or malformed.
    """
    return _Parser(text).parse()


def quote(value: str) -> str:
    """A SOQL string literal (quotes and backslashes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal in UTC: ``2026-01-01T00:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
