"""What the connector remembers about each file it has read, and how it spots changes.

A stream's state (the checkpoint the engine commits) maps each file's path, relative to
the folder, to a :class:`FileState`: its size and modification time when read, how many
bytes and lines were consumed (``offset``, ``line``), and a SHA-256 of those consumed
bytes. That is enough to tell apart:

* unchanged: same size and mtime, everything consumed; the file is not even opened;
* appended (or a read interrupted mid-file): the first ``offset`` bytes still hash the
  same, so reading resumes at ``offset``;
* changed: anything else; the file is read again from the start (records are upserted
  by key, and usage events deduplicated by id, so nothing is loaded twice).

A record file that only grew is parsed whole again (records can span lines, and an
invoice's rows can be anywhere in the file), but only the records reaching past the old
end are yielded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1


def content_hasher() -> Any:
    """The hash of consumed file bytes (SHA-256: hardware-accelerated on most CPUs)."""
    return hashlib.sha256()


@dataclass
class FileState:
    """One file's read position and fingerprint. JSON-safe through :meth:`to_json`."""

    size: int
    mtime_ns: int
    offset: int
    line: int
    sha256: str
    columns: list[str] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.columns is None:
            del data["columns"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileState:
        return cls(
            size=int(data["size"]), mtime_ns=int(data["mtime_ns"]), offset=int(data["offset"]),
            line=int(data["line"]), sha256=str(data["sha256"]), columns=data.get("columns"),
        )

    def unchanged(self, stat: os.stat_result) -> bool:
        """True when the file looks untouched since it was fully read (no need to open it)."""
        return stat.st_size == self.size and stat.st_mtime_ns == self.mtime_ns and self.offset == self.size


def load_files(state: dict[str, Any] | None) -> dict[str, FileState]:
    """The per-file states of a stream checkpoint (empty for a first read or an old format)."""
    if not state or state.get("version") != STATE_VERSION:
        return {}
    return {path: FileState.from_json(data) for path, data in state.get("files", {}).items()}


def dump_files(files: dict[str, FileState]) -> dict[str, Any]:
    """The stream checkpoint of these per-file states (a fresh, JSON-safe dict)."""
    return {"version": STATE_VERSION, "files": {path: fs.to_json() for path, fs in sorted(files.items())}}


@dataclass(frozen=True)
class WholeFile:
    """A small file read in one piece: its bytes (None when unchanged) and its new state.

    ``appended_after`` is set when the file only grew: the number of complete lines the
    previous read had seen, all still there byte for byte.
    """

    data: bytes | None
    state: FileState
    status: str  # new, changed, appended or unchanged
    appended_after: int | None = None


def read_whole(path: Path, previous: FileState | None) -> WholeFile:
    """Read a record file whole unless it is unchanged since ``previous``."""
    stat = path.stat()
    if previous is not None and previous.unchanged(stat):
        return WholeFile(None, previous, "unchanged")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    state = FileState(
        size=len(data), mtime_ns=stat.st_mtime_ns, offset=len(data), line=data.count(b"\n"), sha256=digest
    )
    if previous is None:
        return WholeFile(data, state, "new")
    if previous.sha256 == digest and previous.offset == previous.size:
        return WholeFile(None, state, "unchanged")  # touched, not edited
    if previous.offset < len(data) and hashlib.sha256(data[: previous.offset]).hexdigest() == previous.sha256:
        return WholeFile(data, state, "appended", appended_after=previous.line)
    return WholeFile(data, state, "changed")
