"""The ``files`` connector: a folder of customers, contracts, usage, invoices, payments and credits.

It is the embedded default source: no account, no network, just files a finance team can
export or write by hand. See ``docs/connectors/files.md`` for the folder layout and
``docs/formats.md`` for every file format.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from subledger.core.connector import (
    Capabilities,
    CheckResult,
    Connector,
    ConnectorConfig,
    StreamSpec,
    WriteAction,
    WriteResult,
)
from subledger.core.errors import ConfigError
from subledger.plugins.files.credit_grants import CreditGrants
from subledger.plugins.files.credit_notes import CreditNoteRefunds, CreditNotes
from subledger.plugins.files.customers import Customers
from subledger.plugins.files.invoices import Invoices
from subledger.plugins.files.mapping import RecordKind
from subledger.plugins.files.meters import Meters
from subledger.plugins.files.payments import Payments
from subledger.plugins.files.reader import discover, read_records, read_usage
from subledger.plugins.files.writes import CREATE_INVOICE, find_invoice, write_invoice


def _patterns(stem: str, *extensions: str) -> tuple[str, ...]:
    """``customers*.csv`` at the top of the folder and any ``customers/**/*.csv`` below it."""
    return tuple(p for ext in extensions for p in (f"{stem}*.{ext}", f"{stem}/**/*.{ext}"))


FILE_POSITION = "file_position"
RECORD_FORMATS = ("csv", "json", "jsonl", "yaml", "yml")
DEFAULT_PATTERNS: dict[str, tuple[str, ...]] = {
    "customers": _patterns("customers", *RECORD_FORMATS),
    "meters": _patterns("meters", *RECORD_FORMATS),
    "contracts": _patterns("contracts", "yaml", "yml", "json", "jsonl"),
    "usage_events": _patterns("usage", "jsonl", "ndjson", "csv"),
    "invoices": _patterns("invoices", *RECORD_FORMATS),
    "payments": _patterns("payments", *RECORD_FORMATS),
    "credit_grants": _patterns("credit_grants", *RECORD_FORMATS),
    "credit_notes": _patterns("credit_notes", *RECORD_FORMATS),
}
PATTERN_FIELDS = tuple(DEFAULT_PATTERNS)
# "The files hold all usage": the coverage a pull states starts here unless usage_start says otherwise.
DEFAULT_USAGE_START = date(2000, 1, 1)


def _patterns_field(stream: str) -> Any:
    return Field(
        default=DEFAULT_PATTERNS[stream],
        description=f"glob patterns, relative to path, of the {stream} files",
    )


class FilesConfig(ConnectorConfig):
    """Where the folder is, and (optionally) which files hold which stream.

    ``path`` is made absolute when the config is created, so a connection keeps working
    from any directory.
    """

    path: Path = Field(description="the folder to read")
    customers: tuple[str, ...] = _patterns_field("customers")
    meters: tuple[str, ...] = _patterns_field("meters")
    contracts: tuple[str, ...] = _patterns_field("contracts")
    usage_events: tuple[str, ...] = _patterns_field("usage_events")
    invoices: tuple[str, ...] = _patterns_field("invoices")
    payments: tuple[str, ...] = _patterns_field("payments")
    credit_grants: tuple[str, ...] = _patterns_field("credit_grants")
    credit_notes: tuple[str, ...] = _patterns_field("credit_notes")
    checkpoint_every: int = Field(
        default=50_000, ge=1,
        description="usage lines (or records of other streams) read between two checkpoints",
    )
    usage_start: date = Field(
        default=DEFAULT_USAGE_START,
        description="the first day (UTC) whose usage the folder holds in full; each pull states the usage "
        "complete from this day to the moment of the pull. Default 2000-01-01: the files hold all usage",
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator(*PATTERN_FIELDS, mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        # A single pattern may be given as a plain string (e.g. on the command line).
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return value

    @field_validator(*PATTERN_FIELDS)
    @classmethod
    def _relative(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
                raise ValueError(f"pattern {pattern!r} must be relative to path and stay inside it")
        return value


_KINDS: dict[str, RecordKind] = {
    kind.stream: kind for kind in (Customers(), Meters(), Invoices(), Payments(), CreditGrants(), CreditNotes())
}
_REFUNDS = CreditNoteRefunds()


def _contract_kind() -> RecordKind:
    # Imported late: contract terms are the rating engine's model (subledger.core.terms).
    from subledger.plugins.files.contracts import Contracts

    return Contracts()


class FilesConnector(Connector):
    """Reads a folder of files; incremental by file fingerprint and byte offset."""

    name = "files"
    title = "Files (CSV, JSON, JSONL, YAML)"
    config_model = FilesConfig
    # The folder can stand in for a billing system: create_invoice writes an invoice file.
    capabilities = Capabilities(read=True, incremental=True, write=frozenset({CREATE_INVOICE}))
    config: FilesConfig

    def streams(self) -> list[StreamSpec]:
        # Every stream advances on the position reached in each file (size, mtime, hash,
        # byte offset), not on a field of its records.
        cursor = FILE_POSITION
        return [
            StreamSpec("customers", "customer", cursor_field=cursor),
            StreamSpec("meters", "meter", cursor_field=cursor),
            StreamSpec("contracts", "contract", cursor_field=cursor),
            StreamSpec("usage_events", "usage_event", primary_key=("event_id",), cursor_field=cursor),
            StreamSpec("invoices", "invoice", cursor_field=cursor),
            StreamSpec("payments", "payment", cursor_field=cursor),
            StreamSpec("credit_grants", "credit_grant", cursor_field=cursor),
            StreamSpec("credit_notes", "credit_note", cursor_field=cursor),
        ]

    def check(self) -> CheckResult:
        root = self.config.path
        problem = _folder_problem(root)
        if problem is not None:
            return CheckResult(False, f"{problem[0]}. Fix: {problem[1]}")
        counts = {spec.name: len(discover(root, getattr(self.config, spec.name))) for spec in self.streams()}
        total = sum(counts.values())
        found = ", ".join(f"{n} {stream}" for stream, n in counts.items() if n)
        if not total:
            return CheckResult(
                True, f"{root} is readable but holds no files subledger recognises yet "
                "(see docs/connectors/files.md for the layout)", {"files": counts},
            )
        return CheckResult(True, f"{root}: {total} file{'s' if total > 1 else ''} ({found})", {"files": counts})

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        self.stream(stream)  # unknown stream: ConfigError naming the known ones
        root = self.config.path
        problem = _folder_problem(root)
        if problem is not None:
            raise ConfigError(problem[0], fix=problem[1])
        files = discover(root, getattr(self.config, stream))
        if stream == "usage_events":
            start = self.config.usage_start
            return read_usage(files, state, checkpoint_every=self.config.checkpoint_every,
                              coverage_start=datetime(start.year, start.month, start.day, tzinfo=UTC))
        kind = _contract_kind() if stream == "contracts" else _KINDS[stream]
        # A credit note's refund is cash paid back: the payments stream reads it from the credit notes.
        derived = [(_REFUNDS, discover(root, self.config.credit_notes))] if stream == "payments" else []
        return read_records(kind, files, state, self.connection, checkpoint_every=self.config.checkpoint_every,
                            derived=derived)

    def write(self, action: WriteAction) -> WriteResult:
        if action.kind != CREATE_INVOICE:
            return super().write(action)
        return write_invoice(self.config.path, action)

    def find(self, action: WriteAction) -> WriteResult | None:
        if action.kind != CREATE_INVOICE:
            return None
        return find_invoice(self.config.path, action)


def _folder_problem(root: Path) -> tuple[str, str] | None:
    if not root.exists():
        return f"folder {root} does not exist", "create it, or point the connection's path at the data folder"
    if not root.is_dir():
        return f"{root} is a file, not a folder", "set path to the folder that holds the files"
    if not os.access(root, os.R_OK | os.X_OK):
        return f"folder {root} is not readable", f"give this user read access to {root}"
    return None
