"""What every record file shares: the source being read, and a mapped record with its place.

Each record kind (customers, meters, contracts, invoices, payments, credit grants, credit
notes) is a :class:`RecordKind`: it names its CSV columns and maps rows of any format to
canonical records. The connector drives it file by file (see :mod:`subledger.plugins.files.reader`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from subledger.core.connector import Rejected
from subledger.plugins.files.documents import Row
from subledger.plugins.files.fields import RowError, shown_name


@dataclass(frozen=True)
class Source:
    """The file being read: the connection it belongs to, its relative path, the read time."""

    system: str
    location: str
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class Mapped:
    """A canonical record (or :class:`~subledger.core.connector.RecordGroup`) and where it was read."""

    line: int
    record: Any
    external_id: str
    payload_hash: str
    last_line: int  # the last line of the file the record (with all its rows) draws on


Namer = Callable[[str], str]


class RecordKind(ABC):
    """How one stream's files map to canonical records.

    Subclasses set the class attributes and implement :meth:`map_document`; kinds whose
    CSV rows are not one record each (invoices and their lines) override :meth:`from_csv`.
    """

    stream: ClassVar[str]
    record_type: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]  # CSV columns, required ones first
    required_columns: ClassVar[tuple[str, ...]]
    id_field: ClassVar[str] = "id"  # the field holding the record's external id
    metadata_columns: ClassVar[bool] = False  # accepts CSV columns named metadata.NAME
    csv_allowed: ClassVar[bool] = True
    example: ClassVar[str] = ""

    @abstractmethod
    def map_document(self, data: Any, src: Source) -> Any:
        """Map one record's data (a dict) to a canonical record, or raise :class:`RowError`."""

    def from_documents(self, rows: Iterable[Row], src: Source) -> Iterator[Mapped | Rejected]:
        """Map JSON, JSONL or YAML rows, one record each."""
        for row in rows:
            if row.error is not None:
                yield self.reject(src, row.line, row.error, row.raw)
                continue
            if not isinstance(row.data, dict):
                yield self.reject(src, row.line, RowError(
                    None, f"the record is a {type(row.data).__name__}, not an object",
                    f"write each record as an object of fields{self.example}",
                ), row.raw)
                continue
            try:
                record = self.map_document(row.data, src)
            except RowError as exc:
                yield self.reject(src, row.line, exc, row.raw)
                continue
            yield self.mapped(row.line, record, row.end_line)

    def from_csv(self, rows: Iterable[Row], src: Source) -> Iterator[Mapped | Rejected]:
        """Map CSV rows (dicts keyed by column), one record each by default."""
        return self.from_documents(rows, src)

    def grouped_csv(
        self, rows: Iterable[Row], src: Source, what: str
    ) -> Iterator[Rejected | tuple[str, list[Row]]]:
        """Group CSV rows by ``id`` (one record over several rows, e.g. an invoice's lines).

        Yields a :class:`Rejected` for each unreadable row or row without an id, then each
        ``(id, rows)`` group in the order the ids first appear.
        """
        groups: dict[str, list[Row]] = {}
        for row in rows:
            if row.error is not None:
                yield self.reject(src, row.line, row.error, row.raw)
                continue
            record_id = row.data.get("id")
            if not record_id:
                yield self.reject(src, row.line, RowError("id", "id is missing",
                                  f"write the {what} id on every row of the {what}"), row.raw)
                continue
            groups.setdefault(record_id, []).append(row)
        yield from groups.items()

    def from_grouped_csv(
        self,
        rows: Iterable[Row],
        src: Source,
        *,
        what: str,
        header_keys: tuple[str, ...],
        parse_header: Callable[[dict[str, Any]], Any],
        child_data: Callable[[dict[str, Any]], dict[str, Any]],
        parse_child: Callable[[dict[str, Any], Any, int], Any],
        build: Callable[[Any, list[Any], list[dict[str, Any]]], Any],
    ) -> Iterator[Mapped | Rejected]:
        """Map a record written over several CSV rows (an invoice and its lines, a payment
        and its applications): its own columns on the first row (repeated or left empty
        after it), one child per row. Any problem rejects the whole record, row by row.

        Args:
            what: the record's name in messages (``invoice``).
            header_keys: the record's own columns.
            parse_header: the validated record header from the first row's data.
            child_data: a row's child columns, renamed to the child's field names.
            parse_child: ``(data, header, index)`` -> the validated child.
            build: ``(header, children, rows' data)`` -> the canonical record.
        """
        for item in self.grouped_csv(rows, src, what):
            if isinstance(item, Rejected):
                yield item
                continue
            record_id, group = item
            first = group[0]
            problems: list[tuple[Row, RowError]] = []
            header = None
            try:
                header = parse_header(first.data)
            except RowError as exc:
                problems.append((first, exc))
            children: list[Any] = []
            for row in group:
                conflict = next((key for key in header_keys if row is not first and row.data.get(key)
                                 and row.data[key] != first.data.get(key)), None)
                if conflict is not None:
                    problems.append((row, RowError(
                        conflict, f"{conflict} {row.data[conflict]!r} differs from "
                        f"{first.data.get(conflict) or ''!r} on line {first.line}",
                        f"write the {what}'s own columns the same on each of its rows "
                        "(or leave them empty after the first)",
                    )))
                    continue
                part = child_data(row.data)
                if not part or header is None:
                    continue
                try:
                    children.append(parse_child(part, header, len(children)))
                except RowError as exc:
                    problems.append((row, exc))
            if header is not None and not problems:
                try:
                    record = build(header, children, [row.data for row in group])
                except RowError as exc:
                    problems.append((first, exc))
                else:
                    yield self.mapped(first.line, record, max(row.end_line for row in group))
                    continue
            for row, exc in problems:
                yield self.reject(src, row.line, RowError(
                    exc.field, f"{exc.reason}; {what} {record_id!r} was not loaded", exc.fix,
                ), row.raw)

    def check_header(self, header: list[str]) -> RowError | None:
        """Why a CSV header cannot be read for this kind, or None when it is fine."""
        if not self.csv_allowed:
            return RowError(None, f"{self.stream} cannot be written as CSV",
                            f"write {self.stream} as YAML or JSON files")
        known = ", ".join(self.columns)
        for name in header:
            if name not in self.columns and not (self.metadata_columns and name.startswith("metadata.")):
                extra = " or prefix it with metadata. to keep it as an attribute" if self.metadata_columns else ""
                shown = shown_name(name)
                return RowError(shown, f"unknown column {shown!r}",
                                f"rename it to one of {known}{extra}")
        for name in self.required_columns:
            if name not in header:
                return RowError(name, f"column {name!r} is missing", f"add a {name} column")
        if len(set(header)) != len(header):
            duplicate = next(n for n in header if header.count(n) > 1)
            return RowError(duplicate, f"column {duplicate!r} appears twice", "keep one column of each name")
        return None

    def mapped(self, line: int, record: Any, last_line: int) -> Mapped:
        parent = getattr(record, "record", record)
        return Mapped(line, record, parent.external_id, parent.payload_hash, last_line)

    def reject(self, src: Source, line: int | None, error: RowError, raw: str) -> Rejected:
        return Rejected(stream=self.stream, reason=error.reason, fix=error.fix, location=src.location,
                        line=line, field=error.field, raw=raw)
