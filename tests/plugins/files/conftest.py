"""Helpers for the files connector tests: a folder to write into and a reader of streams."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from subledger.core.connector import Checkpoint, RecordGroup, Rejected, UsageCoverage, UsageEventIn
from subledger.plugins.files import FilesConfig, FilesConnector


@dataclass
class Read:
    """Everything one read of a stream yielded, sorted by kind."""

    records: list[Any] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    coverage: list[UsageCoverage] = field(default_factory=list)

    @property
    def state(self) -> dict[str, Any] | None:
        return self.checkpoints[-1] if self.checkpoints else None

    @property
    def events(self) -> list[UsageEventIn]:
        return [r for r in self.records if isinstance(r, UsageEventIn)]

    @property
    def event_ids(self) -> list[str]:
        return [e.event_id for e in self.events]

    @property
    def parents(self) -> list[Any]:
        return [r.record if isinstance(r, RecordGroup) else r for r in self.records]

    def reject_at(self, line: int) -> Rejected:
        matches = [r for r in self.rejects if r.line == line]
        assert len(matches) == 1, f"expected one reject at line {line}, got {self.rejects}"
        return matches[0]


def collect_items(items: Iterable[Any]) -> Read:
    """Sort what a read yielded into records, rejects and checkpoints."""
    read = Read()
    for item in items:
        if isinstance(item, Checkpoint):
            read.checkpoints.append(item.state)
        elif isinstance(item, Rejected):
            read.rejects.append(item)
        elif isinstance(item, UsageCoverage):
            read.coverage.append(item)
        else:
            read.records.append(item)
    return read


Reader = Callable[..., Read]


@dataclass
class Folder:
    """The data folder a test writes its files into."""

    root: Path

    def write(self, name: str, text: str | bytes) -> Path:
        """Write a file, creating directories. Text starting with a newline is dedented first."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_bytes(text))
        return path

    def append(self, name: str, text: str | bytes) -> None:
        with (self.root / name).open("ab") as f:
            f.write(text if isinstance(text, bytes) else text.encode("utf-8"))

    def connector(self, **config: Any) -> FilesConnector:
        return FilesConnector(FilesConfig(path=self.root, **config), connection="files")


def _bytes(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        return text
    if text.startswith("\n"):  # an indented triple-quoted block in a test
        text = textwrap.dedent(text)[1:]
    return text.encode("utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    root = tmp_path / "data"
    root.mkdir()
    return Folder(root)


@pytest.fixture
def read(folder: Folder) -> Reader:
    """``read(stream, state=None, **config)``: read a stream of the folder with a fresh connector."""

    def _read(stream: str, state: dict[str, Any] | None = None, **config: Any) -> Read:
        return collect_items(folder.connector(**config).read(stream, state))

    return _read


@pytest.fixture
def collect() -> Callable[[Iterable[Any]], Read]:
    """``collect(connector.read(...))``: sort what a read yielded (see :class:`Read`)."""
    return collect_items
