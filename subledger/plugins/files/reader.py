"""Reading a stream's files incrementally: which files changed, what they hold, checkpoints.

Two ways of reading, by the nature of the stream:

* Record streams (customers, meters, contracts, invoices, payments, credit grants, credit
  notes) are small and edited in place. A new or changed file is read whole and every record in it yielded again (the
  store upserts by key and skips records whose payload hash has not changed); a file that
  only grew yields just the records reaching into the new part; an unchanged file is not
  opened. Checkpoints fall between files.
* Usage is an append-only log that can hold millions of lines. A file is read from where
  the last read stopped (see :mod:`~subledger.plugins.files.linefile`), in blocks, with a
  checkpoint every ``checkpoint_every`` lines, so an interrupted read resumes exactly.
  A read that reaches the end of every file states the usage complete up to its start
  (a :class:`~subledger.core.connector.UsageCoverage`, before the last checkpoint).

Every checkpoint holds the state of every file of the stream, so a crash between two
checkpoints loses nothing and re-reads nothing more than the lines after the last one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from subledger.core.config_files import MAX_DEPTH
from subledger.core.connector import Checkpoint, Rejected, UsageCoverage, UsageEventIn
from subledger.core.db_types import utcnow
from subledger.core.terms.bounds import NUL, too_deep, unstorable_text
from subledger.plugins.files import usage
from subledger.plugins.files.documents import (
    FileUnreadable,
    Row,
    csv_table,
    json_rows,
    jsonl_rows,
    yaml_rows,
)
from subledger.plugins.files.fields import RowError, shown_name
from subledger.plugins.files.filestate import FileState, dump_files, load_files, read_whole
from subledger.plugins.files.linefile import Block, LineSource
from subledger.plugins.files.mapping import Mapped, RecordKind, Source

FORMATS = {
    ".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".yaml": "yaml", ".yml": "yaml",
}

FileList = list[tuple[str, Path]]


def file_format(path: Path) -> str | None:
    """The format of a file from its extension (csv, json, jsonl, yaml), or None."""
    return FORMATS.get(path.suffix.lower())


def discover(root: Path, patterns: Iterable[str]) -> FileList:
    """The files under ``root`` matching any of ``patterns``, as sorted (relative path, path) pairs.

    Hidden files and editor backups (``.name``, ``~name``, ``name~``) are left out.
    """
    found: dict[str, Path] = {}
    for pattern in patterns:
        for path in root.glob(pattern):
            rel = path.relative_to(root)
            if any(part.startswith((".", "~")) or part.endswith("~") for part in rel.parts):
                continue
            if path.is_file():
                found[rel.as_posix()] = path
    return sorted(found.items())


def _file_reject(stream: str, location: str, line: int | None, reason: str, fix: str) -> Rejected:
    return Rejected(stream=stream, reason=reason, fix=fix, location=location, line=line)


def _carried(files: FileList, state: dict[str, Any] | None) -> tuple[dict[str, FileState], dict[str, FileState]]:
    """The previous per-file states, and those of files still present (the checkpoint base)."""
    known = load_files(state)
    present = {rel for rel, _ in files}
    return known, {rel: fs for rel, fs in known.items() if rel in present}


class _Checkpoints:
    """Builds checkpoints of the per-file states; the last one is not repeated needlessly."""

    def __init__(self) -> None:
        self.last: dict[str, Any] | None = None

    def take(self, files: dict[str, FileState]) -> Checkpoint:
        self.last = dump_files(files)
        return Checkpoint(self.last)

    def final(self, files: dict[str, FileState]) -> Iterator[Checkpoint]:
        """The closing checkpoint, unless the last one taken already says the same."""
        state = dump_files(files)
        if state != self.last:
            yield Checkpoint(state)


# --- Record streams ----------------------------------------------------------------------


def read_records(kind: RecordKind, files: FileList, state: dict[str, Any] | None, system: str, *,
                 checkpoint_every: int, derived: Sequence[tuple[RecordKind, FileList]] = ()) -> Iterator[Any]:
    """Yield the records of every new or changed file of a record stream, with checkpoints.

    A checkpoint follows the first file that brings the records since the last one to
    ``checkpoint_every``, and the end of the stream (a file's records are never split).
    A record whose id was already read in this pass is loaded once if it is the same, and
    rejected if it differs (two files disagreeing about one customer is a mistake to fix).

    ``derived`` adds files of another stream from which this stream derives records of
    its own (the payments stream reads the refunds of credit notes), each with the kind
    that maps them. Their files are tracked in this stream's state like its own; problems
    with them are left to their own stream to report (a file also in ``files`` is read as
    one of this stream's).
    """
    own = {rel for rel, _ in files}
    sources: list[tuple[RecordKind, str, Path, bool]] = [(kind, rel, path, False) for rel, path in files]
    for other, other_files in derived:
        sources += [(other, rel, path, True) for rel, path in other_files if rel not in own]
        own.update(rel for rel, _ in other_files)
    known, current = _carried([(rel, path) for _, rel, path, _ in sources], state)
    checkpoints = _Checkpoints()
    fetched_at = utcnow()
    seen: dict[str, tuple[str, int, str]] = {}
    since = 0
    for source_kind, rel, path, quiet in sources:
        fmt = file_format(path)
        if fmt is None:
            if not quiet:
                yield _file_reject(kind.stream, rel, None, f"{path.suffix or 'a file without extension'} is not a "
                                   "format subledger reads", "use .csv, .json, .jsonl, .yaml or .yml, or narrow the "
                                   f"{kind.stream} patterns of the connection")
            continue
        try:
            whole = read_whole(path, known.get(rel))
        except OSError as exc:
            if not quiet:
                yield _file_reject(kind.stream, rel, None, f"cannot read the file: {exc.strerror or exc}",
                                   "check that the file exists and is readable by this user")
            continue
        if whole.data is not None:
            for item in _map_file(source_kind, whole.data, fmt, Source(system, rel, fetched_at)):
                if not isinstance(item, Mapped):
                    if not quiet:
                        yield item  # a reject seen before is only counted again by the store
                    continue
                if whole.appended_after is not None and item.last_line <= whole.appended_after:
                    continue  # wholly in the part read before, which has not changed
                prior = seen.get(item.external_id)
                if prior is None:
                    seen[item.external_id] = (rel, item.line, item.payload_hash)
                    since += 1
                    yield item.record
                elif prior[2] != item.payload_hash:
                    yield _conflicting_duplicate(kind, item, rel, prior)
        current[rel] = whole.state
        if since >= checkpoint_every:
            yield checkpoints.take(current)
            since = 0
    yield from checkpoints.final(current)


def _conflicting_duplicate(kind: RecordKind, item: Mapped, rel: str, prior: tuple[str, int, str]) -> Rejected:
    return Rejected(
        stream=kind.stream,
        reason=f"{kind.record_type} {item.external_id!r} was already read from {prior[0]} line {prior[1]} "
        "with different values; this one was not loaded",
        fix=f"keep one record per {kind.id_field}: merge the two or remove one",
        location=rel, line=item.line, field=kind.id_field,
    )


# Stands in for each byte that is not UTF-8 while a YAML file is parsed (YAML refuses the
# surrogates Python decodes such bytes to); a row holding one is rejected.
_BAD_BYTE = "\U0010fffd"
_SURROGATES = {code: _BAD_BYTE for code in range(0xDC80, 0xDD00)}


def _map_file(kind: RecordKind, data: bytes, fmt: str, src: Source) -> Iterator[Mapped | Rejected]:
    try:
        text = data.decode("utf-8-sig")
        mojibake = False
    except UnicodeDecodeError:
        # Keep going: only the rows holding the bad bytes are rejected.
        text = data.decode("utf-8-sig", errors="surrogateescape")
        mojibake = True
        if fmt == "yaml":
            text = text.translate(_SURROGATES)
    rows: list[Row] = []
    unreadable: FileUnreadable | None = None
    try:
        if fmt == "csv":
            table = csv_table(text)
            problem = kind.check_header(table.header)
            if problem is not None:
                yield Rejected(stream=kind.stream, reason=f"{problem.reason}; the file was not loaded",
                               fix=problem.fix, location=src.location, line=1, field=problem.field,
                               raw=text.split("\n", 1)[0].rstrip("\r"))
                return
            source_rows: Iterable[Row] = table.rows
        elif fmt == "json":
            source_rows = json_rows(text)
        elif fmt == "jsonl":
            source_rows = jsonl_rows(text)
        else:
            source_rows = yaml_rows(text)
        rows.extend(source_rows)
    except FileUnreadable as exc:
        unreadable = exc
    if mojibake:
        rows = [_check_encoding(row) for row in rows]
    rows = [_check_values(row) for row in rows]
    mapper = kind.from_csv if fmt == "csv" else kind.from_documents
    yield from mapper(rows, src)
    if unreadable is not None:
        rest = " from this line on" if rows else ""
        yield _file_reject(kind.stream, src.location, unreadable.line,
                           f"{unreadable.reason}; the file was not loaded{rest}", unreadable.fix)


def _check_encoding(row: Row) -> Row:
    bad = next((i for i, ch in enumerate(row.raw) if "\udc80" <= ch <= "\udcff" or ch == _BAD_BYTE), None)
    if bad is None:
        return row
    raw = row.raw.replace(_BAD_BYTE, "\ufffd")
    raw = raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return Row(row.line, None, raw, RowError(None, f"the row is not valid UTF-8 (character {bad + 1})",
                                             "save the file as UTF-8"))


def _check_values(row: Row) -> Row:
    """Refuse a row holding a NUL character (no database stores one in text) or nesting too deep."""
    if row.error is not None or row.data is None:
        return row
    found = unstorable_text(row.data)
    if found is not None:
        where, problem = found
        return Row(row.line, None, row.raw, RowError(
            where or None, f"{where or 'the row'} holds {problem}, which cannot be stored",
            "remove the NUL character (a file saved by a text editor as UTF-8 has none)" if problem == NUL
            else "write the character itself, or escape both halves of the pair",
        ))
    if too_deep(row.data):
        return Row(row.line, None, row.raw, RowError(
            None, f"the record's values are nested more than {MAX_DEPTH} levels deep",
            f"nest objects and lists at most {MAX_DEPTH} levels deep",
        ))
    shape = _shape_problem(row.data)
    if shape is not None:
        return Row(row.line, None, row.raw, RowError(shape[0] or None, shape[1], shape[2]))
    return row


_PLAIN = (str, int, Decimal, float, bool, date, type(None))  # datetime is a date


def _shape_problem(value: Any) -> tuple[str, str, str] | None:
    """(where, why, fix) for data a record cannot hold: a key that is not text (YAML allows
    ``1:`` or ``null:`` as keys), or a YAML-only value such as a set or binary data."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    shown = shown_name(repr(key))
                    return (where or "", f"the key {shown} {'of ' + where + ' ' if where else ''}is not text",
                            "write every key as text (in YAML, quote a key such as \"1\" or \"null\")")
                stack.append((child, f"{where}.{shown_name(key)}" if where else shown_name(key)))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
        elif not isinstance(item, _PLAIN):
            return (where, f"{where or 'the record'} is a YAML {type(item).__name__}, which the format does not hold",
                    "write a text, number, list or mapping instead (no !!set, !!binary or other YAML tags)")
    return None


# --- Usage -------------------------------------------------------------------------------


TAIL_NOTE = " (this is the last line and has no newline at its end)"


def read_usage(files: FileList, state: dict[str, Any] | None, *, checkpoint_every: int,
               coverage_start: datetime | None = None) -> Iterator[Any]:
    """Yield the usage events appended to (or in new or changed) usage files, with checkpoints.

    With ``coverage_start``, a read that gets to the end of every file closes with a
    :class:`~subledger.core.connector.UsageCoverage` for every meter from
    ``coverage_start`` to the instant the read began, then a last checkpoint: the folder
    is taken to hold all usage up to that instant (docs/connectors/files.md#usage-coverage).
    An interrupted read states nothing.
    """
    read_at = utcnow()
    known, current = _carried(files, state)
    checkpoints = _Checkpoints()
    since = 0  # lines since the last checkpoint, across files: many small files are common
    # Event ids read since the last checkpoint: a second, different version of one is rejected
    # at its file and line. Versions in different checkpoints meet in the store, which reports
    # the later one as a conflict (the events between two checkpoints are held in memory anyway).
    seen: usage.Seen = {}
    for rel, path in files:
        fmt = file_format(path)
        if fmt not in ("jsonl", "csv"):
            yield _file_reject(usage.STREAM, rel, None, f"{path.suffix or 'a file without extension'} is not a "
                               "usage format", "write usage as .jsonl (or .ndjson) or .csv files")
            continue
        previous = known.get(rel)
        try:
            if previous is not None and previous.unchanged(path.stat()):
                continue
            source = LineSource(path, previous, quote_aware=fmt == "csv")
        except OSError as exc:
            yield _file_reject(usage.STREAM, rel, None, f"cannot read the file: {exc.strerror or exc}",
                               "check that the file exists and is readable by this user")
            continue
        with source:
            parse = _jsonl_block if fmt == "jsonl" else _csv_block
            for block in source.blocks():
                for index in block.overlong:
                    yield usage.overlong_line(rel, block.first_line + index)
                yield from parse(block, source, rel, seen)
                since += len(block.lines)
                if since >= checkpoint_every:
                    current[rel] = source.state()
                    yield checkpoints.take(current)
                    since = 0
                    seen.clear()
            current[rel] = source.state()
    if coverage_start is not None and coverage_start < read_at:
        yield UsageCoverage(start=coverage_start, end=read_at)
        yield checkpoints.take(current)  # the window is committed with this checkpoint
        return
    yield from checkpoints.final(current)


def _jsonl_block(block: Block, source: LineSource, rel: str,
                 seen: usage.Seen) -> Iterator[UsageEventIn | Rejected]:
    if block.complete:
        yield from usage.jsonl_events(block, rel, seen)
        return
    items = list(usage.jsonl_events(block, rel, seen))
    yield from _tail(items, source)


def _tail(items: list[UsageEventIn | Rejected], source: LineSource) -> Iterator[UsageEventIn | Rejected]:
    # An unterminated last line is consumed only once it loads; until then it is reported
    # (it may be a writer's half-written line) and read again next time.
    bad = [item for item in items if isinstance(item, Rejected)]
    if not bad:
        source.accept_tail()
        yield from items
        return
    for item in bad:
        yield Rejected(stream=item.stream, reason=item.reason + TAIL_NOTE, fix=item.fix, location=item.location,
                       line=item.line, field=item.field, raw=item.raw)


def _csv_block(block: Block, source: LineSource, rel: str,
               seen: usage.Seen) -> Iterator[UsageEventIn | Rejected]:
    items: list[UsageEventIn | Rejected] = []
    header_ok = source.columns is not None and usage.check_csv_header(source.columns) is None
    for line, raw in usage.csv_records(block):
        if source.columns is None:
            source.columns = usage.parse_header(raw)
            problem = usage.check_csv_header(source.columns)
            if problem is not None:
                items.append(_header_reject(problem, rel, raw))
            header_ok = problem is None
            continue
        if not header_ok:
            continue  # reported with the header; nothing loads until it is fixed
        if len(raw) > source.max_line:  # a record of lines each short enough, too long together
            items.append(usage.overlong_line(rel, line))
            continue
        item = usage.csv_event(raw, line, source.columns, rel)
        if isinstance(item, UsageEventIn):
            prior = seen.setdefault(item.event_id, item.payload_hash)
            if prior != item.payload_hash:
                item = usage.conflicting_version(item.event_id, rel, line, raw)
        if item is not None:
            items.append(item)
    if block.complete:
        yield from items
    else:
        yield from _tail(items, source)


def _header_reject(problem: usage.RowError, rel: str, raw: bytes) -> Rejected:
    return Rejected(stream=usage.STREAM, reason=f"{problem.reason}; no row of the file was loaded",
                    fix=problem.fix, location=rel, line=1, field=problem.field,
                    raw=raw.decode("utf-8", errors="replace"))
