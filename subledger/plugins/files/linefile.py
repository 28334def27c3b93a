"""Append-only line files (JSONL, CSV) read in large blocks from a resumable byte offset.

Usage files are logs: they grow at the end and can hold millions of lines. They are
streamed in blocks of complete lines (never loaded whole), and after every block the
reader knows the exact byte offset and line number consumed and the SHA-256 of the
consumed bytes, so a checkpoint can be taken between any two blocks and a later read
resumes right after it.

A last line without a newline may still be being written. The caller decides whether to
consume it (:meth:`LineSource.accept_tail`): consumed if it loads, left for the next
read if not.

Lines end with ``\n`` or ``\r\n``; a file whose first line ends with a lone ``\r`` (old
Mac line endings) is read with ``\r`` as its line end, so its two rows stay two rows. A
line longer than :data:`MAX_LINE_BYTES` is never held beyond its block: it is consumed
as it streams by and handed out empty, its index in :attr:`Block.overlong`, for the
caller to reject (a CSV record, which may span lines, is measured whole by the caller).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from subledger.plugins.files.filestate import FileState, content_hasher

BLOCK_SIZE = 1 << 20
MAX_LINE_BYTES = 1 << 20
"""The longest line (a CSV record) a usage file may hold: 1 MiB."""

_PEEK = 1 << 16  # bytes looked at to tell a CR-only file


@dataclass(slots=True)
class Block:
    """Lines read together: ``lines[i]`` is line ``first_line + i`` (no newline, no CR).

    ``overlong`` lists the indexes of lines longer than :data:`MAX_LINE_BYTES`, handed
    out as ``b""``; ``newline`` is the file's line end (``b"\r"`` for a CR-only file).
    """

    lines: list[bytes]
    first_line: int
    complete: bool  # False for an unterminated last line at the end of the file
    overlong: tuple[int, ...] = ()
    newline: bytes = b"\n"


class LineSource:
    """One line file, opened where the previous read stopped (or at 0 if it changed).

    Attributes:
        status: ``new`` (never read), ``resumed`` (same prefix: appended, or a read that
            was interrupted) or ``changed`` (read again from the start).
        offset, line: bytes and lines consumed so far.
        columns: the CSV header remembered from an earlier read, when resuming.
    """

    def __init__(self, path: Path, previous: FileState | None, *, quote_aware: bool = False,
                 block_size: int | None = None, max_line: int | None = None) -> None:
        self.path = path
        self.quote_aware = quote_aware
        self.block_size = block_size or BLOCK_SIZE
        self.max_line = max_line or MAX_LINE_BYTES
        self._file: BinaryIO = path.open("rb")
        stat = os.fstat(self._file.fileno())
        self.size = stat.st_size
        self.mtime_ns = stat.st_mtime_ns
        try:
            self.newline = _newline(os.pread(self._file.fileno(), _PEEK, 0))
        except BaseException:
            self._file.close()
            raise
        self.offset = 0
        self.line = 0
        self.columns: list[str] | None = None
        self._hasher = content_hasher()
        self.status = "new"
        if previous is not None:
            try:
                self.status = "resumed" if self._verify_prefix(previous) else "changed"
            except BaseException:
                self._file.close()
                raise

    def _verify_prefix(self, previous: FileState) -> bool:
        if previous.offset > self.size:
            return False
        remaining = previous.offset
        while remaining:
            chunk = self._file.read(min(self.block_size, remaining))
            if not chunk:
                break
            self._hasher.update(chunk)
            remaining -= len(chunk)
        if remaining == 0 and self._hasher.hexdigest() == previous.sha256:
            self.offset, self.line, self.columns = previous.offset, previous.line, previous.columns
            return True
        self._file.seek(0)
        self._hasher = content_hasher()
        return False

    def __enter__(self) -> LineSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def state(self) -> FileState:
        """The state to checkpoint after everything consumed so far."""
        return FileState(size=self.size, mtime_ns=self.mtime_ns, offset=self.offset, line=self.line,
                         sha256=self._hasher.hexdigest(), columns=self.columns)

    def blocks(self) -> Iterator[Block]:
        """Blocks of complete lines from the current offset to the end of the file.

        A block is consumed (offset, line and hash advance) as it is handed out; the
        caller takes its checkpoint after processing it. With ``quote_aware`` (CSV), a
        block never ends inside a quoted field, so a record spanning lines stays whole.
        A line longer than ``max_line`` is consumed without being kept (see :class:`Block`).
        """
        newline = self.newline
        leftover = b""
        skipping = 0  # inside an over-long line (or CSV record): the line it starts on; consumed, never kept
        read = self._file.read
        while True:
            chunk = read(self.block_size)
            if not chunk:
                break
            if skipping:
                end = chunk.find(newline)
                if end < 0:
                    self._consume(chunk)
                    continue
                self._consume(chunk[: end + 1])
                chunk = chunk[end + 1 :]
                self.line += 1
                yield Block([b""], skipping, True, (0,), newline)
                skipping = 0
                if not chunk:
                    continue
            data = leftover + chunk if leftover else chunk
            cut = data.rfind(newline) + 1
            if self.quote_aware and cut:
                cut = _record_boundary(data, cut, newline)
            if not cut:
                if len(data) > self.max_line:
                    skipping = self._skip(data)
                    leftover = b""
                    continue
                leftover = data
                continue
            complete = data[:cut] if cut < len(data) else data
            leftover = data[cut:]
            self._consume(complete)
            lines = complete.split(newline)
            lines.pop()  # the empty piece after the last newline
            if newline == b"\n" and b"\r" in complete:
                lines = [raw.removesuffix(b"\r") for raw in lines]
            overlong: tuple[int, ...] = ()
            # A CSV record may span lines: the caller measures whole records (blanking one of
            # its lines here would unpair its quotes).
            if not self.quote_aware and len(complete) > self.max_line and max(map(len, lines)) > self.max_line:
                overlong = tuple(i for i, raw in enumerate(lines) if len(raw) > self.max_line)
                for i in overlong:
                    lines[i] = b""
            first = self.line + 1
            self.line += len(lines)
            yield Block(lines, first, True, overlong, newline)
            if len(leftover) > self.max_line:  # a quoted CSV field that never closes
                skipping = self._skip(leftover)
                leftover = b""
        if skipping:
            # An over-long last line without its line end: consumed (it was never kept).
            self.line += 1
            yield Block([b""], skipping, True, (0,), newline)
        elif leftover:
            tail = leftover.removesuffix(b"\r") if newline == b"\n" else leftover
            yield Block([tail], self.line + 1, False, (), newline)

    def _skip(self, data: bytes) -> int:
        """Consume the start of an over-long line (or CSV record); the line it starts on."""
        start = self.line + 1
        self.line += data.count(self.newline)  # the lines of a CSV record that spans several
        self._consume(data)
        return start

    def _consume(self, data: bytes) -> None:
        self._hasher.update(data)
        self.offset += len(data)

    def accept_tail(self) -> None:
        """Consume the unterminated last line, once it has loaded (see :meth:`blocks`).

        ``line`` still counts complete lines only: if the file grows, the newline that
        ends this line comes first, and the lines after it keep their true numbers.
        """
        # Re-read the tail rather than trust the block: its stripped CR must be hashed too.
        self._file.seek(self.offset)
        data = self._file.read()
        self._hasher.update(data)
        self.offset += len(data)


def _newline(head: bytes) -> bytes:
    """The line end of a file from its first bytes: ``b"\\r"`` when its first line ends with a lone CR."""
    cr = head.find(b"\r")
    if cr < 0:
        return b"\n"
    lf = head.find(b"\n")
    if (lf < 0 or cr < lf) and head[cr + 1 : cr + 2] not in (b"\n", b""):
        return b"\r"
    return b"\n"


def _record_boundary(data: bytes, cut: int, newline: bytes = b"\n") -> int:
    """The end of the last complete CSV record within ``data[:cut]`` (0 if none).

    A newline inside a quoted field does not end a record; quotes pair up (an escaped
    quote is two quotes), so a record ends at a newline with an even quote count before it.
    """
    if data.count(b'"', 0, cut) % 2 == 0:
        return cut
    quotes = 0
    boundary = 0
    start = 0
    while True:
        end = data.find(newline, start, cut)
        if end < 0:
            return boundary
        quotes += data.count(b'"', start, end)
        if quotes % 2 == 0:
            boundary = end + 1
        start = end + 1


def line_text(raw: bytes) -> str:
    """A raw line as text for a reject, never failing on bad bytes."""
    return raw.decode("utf-8", errors="replace")

