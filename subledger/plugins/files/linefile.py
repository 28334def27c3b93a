"""Append-only line files (JSONL, CSV) read in large blocks from a resumable byte offset.

Usage files are logs: they grow at the end and can hold millions of lines. They are
streamed in blocks of complete lines (never loaded whole), and after every block the
reader knows the exact byte offset and line number consumed and the SHA-256 of the
consumed bytes, so a checkpoint can be taken between any two blocks and a later read
resumes right after it.

A last line without a newline may still be being written. The caller decides whether to
consume it (:meth:`LineSource.accept_tail`): consumed if it loads, left for the next
read if not.
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


@dataclass(slots=True)
class Block:
    """Lines read together: ``lines[i]`` is line ``first_line + i`` (no newline, no CR)."""

    lines: list[bytes]
    first_line: int
    complete: bool  # False for an unterminated last line at the end of the file


class LineSource:
    """One line file, opened where the previous read stopped (or at 0 if it changed).

    Attributes:
        status: ``new`` (never read), ``resumed`` (same prefix: appended, or a read that
            was interrupted) or ``changed`` (read again from the start).
        offset, line: bytes and lines consumed so far.
        columns: the CSV header remembered from an earlier read, when resuming.
    """

    def __init__(self, path: Path, previous: FileState | None, *, quote_aware: bool = False,
                 block_size: int | None = None) -> None:
        self.path = path
        self.quote_aware = quote_aware
        self.block_size = block_size or BLOCK_SIZE
        self._file: BinaryIO = path.open("rb")
        stat = os.fstat(self._file.fileno())
        self.size = stat.st_size
        self.mtime_ns = stat.st_mtime_ns
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
        """
        leftover = b""
        read = self._file.read
        while True:
            chunk = read(self.block_size)
            if not chunk:
                break
            data = leftover + chunk if leftover else chunk
            cut = data.rfind(b"\n") + 1
            if self.quote_aware and cut:
                cut = _record_boundary(data, cut)
            if not cut:
                leftover = data
                continue
            complete = data[:cut] if cut < len(data) else data
            leftover = data[cut:]
            self._hasher.update(complete)
            self.offset += cut
            lines = complete.split(b"\n")
            lines.pop()  # the empty piece after the last newline
            if b"\r" in complete:
                lines = [raw.removesuffix(b"\r") for raw in lines]
            first = self.line + 1
            self.line += len(lines)
            yield Block(lines, first, True)
        if leftover:
            yield Block([leftover.removesuffix(b"\r")], self.line + 1, False)

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


def _record_boundary(data: bytes, cut: int) -> int:
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
        end = data.find(b"\n", start, cut)
        if end < 0:
            return boundary
        quotes += data.count(b'"', start, end)
        if quotes % 2 == 0:
            boundary = end + 1
        start = end + 1


def line_text(raw: bytes) -> str:
    """A raw line as text for a reject, never failing on bad bytes."""
    return raw.decode("utf-8", errors="replace")

