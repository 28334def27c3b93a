"""The connector API: what a plugin implements to read from and write to one system.

A connector is a typed class. It declares its config model, its streams and its
capabilities; the engine (``subledger.sync``) drives it. Reading follows the
Airbyte/Singer shape: :meth:`Connector.read` yields canonical records, rejected
records and checkpoints; the engine commits each checkpoint in the same transaction
as the records before it, so a crash loses nothing and duplicates nothing.

Writing is idempotent by construction: every :class:`WriteAction` carries a
deterministic ``idempotency_key``; connectors pass it to the vendor and expose
:meth:`Connector.find` so the engine can look a write up before (re)creating it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from subledger.core.errors import ConfigError


class ConnectorConfig(BaseModel):
    """Base of every connector's config. Secrets are ``pydantic.SecretStr`` fields.

    A secret may be given as a value or as ``env:NAME`` (read from the environment when
    the config is loaded); see :mod:`subledger.core.secrets`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def model_post_init(self, context: Any, /) -> None:
        # However a config is built, its secrets become known to log and error redaction.
        from subledger.core.secrets import remember_secrets

        remember_secrets(self)


@dataclass(frozen=True)
class StreamSpec:
    """A stream a connector can read.

    Attributes:
        name: stream name, unique within the connector (``customers``, ``usage_events``).
        record_type: the canonical type its records map to (``customer``, ``usage_event``,
            ``contract``, ``invoice``, ``credit_note``, ``payment``, ``meter``,
            ``credit_grant``).
        primary_key: fields of the canonical record that identify it within the system.
        cursor_field: the field incremental reads advance on, or None for full refresh.
    """

    name: str
    record_type: str
    primary_key: tuple[str, ...] = ("external_id",)
    cursor_field: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do. ``write`` names the :class:`WriteAction` kinds it accepts.

    ``resend_safe`` names write kinds whose result the vendor cannot show afterwards (Stripe
    meter events cannot be listed), so :meth:`Connector.find` never finds them; a write of
    such a kind whose outcome is unknown is recovered by sending it again, which the vendor
    deduplicates (by the action's idempotency key or the events' own identifiers).
    """

    read: bool = True
    incremental: bool = False
    write: frozenset[str] = frozenset()
    webhooks: bool = False
    resend_safe: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class UsageEventIn:
    """A usage event as a connector yields it (a light record: there are millions).

    The engine stores it as a :class:`~subledger.core.model.UsageEvent`.
    """

    event_id: str
    customer_external_id: str
    meter: str
    quantity: Decimal
    occurred_at: datetime
    properties: dict[str, Any]
    payload_hash: str


@dataclass(frozen=True)
class RecordGroup:
    """A parent record with the complete set of its children (an invoice and its lines).

    The engine upserts the parent and replaces every child it stored before, so a line
    removed at the source disappears here too.
    """

    record: Any
    children: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record the connector could not map, with where it was and how to fix it."""

    stream: str
    reason: str
    fix: str
    location: str = ""
    line: int | None = None
    field: str | None = None
    raw: str = ""


@dataclass(frozen=True, slots=True)
class UsageCoverage:
    """A metering stream's statement that its usage is complete for ``[start, end)``.

    A usage stream yields one whenever it has read every event of a window (for one
    ``meter``, or for every meter when ``meter`` is None). The engine stores it with the
    next checkpoint, in the same transaction as the events before it, and merges it with
    the windows already recorded. Reconciliation judges a billing period only when the
    period's usage is covered; a period outside every window is reported as "not
    covered", never as a finding. ``start`` and ``end`` are aware UTC instants.
    """

    start: datetime
    end: datetime
    meter: str | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The stream's state after every record yielded so far. Opaque to the engine."""

    state: dict[str, Any]


@dataclass
class CheckResult:
    """The outcome of :meth:`Connector.check`."""

    ok: bool
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteAction:
    """One write the engine asks a connector to make.

    Attributes:
        kind: what to do (``create_invoice``, ``update_customer_fields``, ...), one of the
            connector's ``capabilities.write``.
        idempotency_key: deterministic, derived from the content; the same action always
            has the same key.
        payload: the canonical content of the write.
        target_external_id: the record to update, for updates.
        base_version: for updates, the value the engine last saw, so a connector can
            report a conflict instead of overwriting someone else's change.
    """

    kind: str
    idempotency_key: str
    payload: dict[str, Any]
    target_external_id: str | None = None
    base_version: dict[str, Any] | None = None


@dataclass
class WriteResult:
    """What a write produced: the external id, and the record as re-read after the write."""

    external_id: str
    created: bool
    record: dict[str, Any] = field(default_factory=dict)


class WriteConflict(ConfigError):
    """The target changed since the engine last read it; nothing was overwritten."""


class Connector(ABC):
    """Base class of every connector.

    Subclasses set the class attributes and implement :meth:`streams`, :meth:`check` and
    :meth:`read`; writable connectors also implement :meth:`write` and :meth:`find`.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    config_model: ClassVar[type[ConnectorConfig]]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, config: ConnectorConfig, *, connection: str | None = None) -> None:
        if not isinstance(config, self.config_model):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_model.__name__}, "
                f"not {type(config).__name__}"
            )
        self.config = config
        self.connection = connection or self.name

    def __repr__(self) -> str:
        # The config's own repr masks SecretStr fields.
        return f"{type(self).__name__}(connection={self.connection!r}, config={self.config!r})"

    @abstractmethod
    def streams(self) -> list[StreamSpec]:
        """The streams this connector can read."""

    @abstractmethod
    def check(self) -> CheckResult:
        """Verify the config and credentials with one cheap call.

        Returns a failed :class:`CheckResult` (never raises) for bad credentials or an
        unreachable source, with a message that names the fix.
        """

    @abstractmethod
    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        """Yield canonical records, :class:`Rejected` items and :class:`Checkpoint` s.

        A usage stream also yields :class:`UsageCoverage` for each window it has read whole.

        ``state`` is the last committed checkpoint of this stream (None on a first read).
        Records are canonical model instances (``Customer``, ``Contract``, ...) with
        provenance filled in, or :class:`UsageEventIn` for usage. A stream should yield a
        checkpoint at least at its end; everything yielded before a checkpoint is
        committed with it.
        """

    def write(self, action: WriteAction) -> WriteResult:
        """Perform one write idempotently. Connectors with write capabilities override it."""
        raise ConfigError(
            f"connector {self.name!r} cannot {action.kind!r}",
            fix=f"choose a connection whose connector supports {action.kind!r}",
        )

    def find(self, action: WriteAction) -> WriteResult | None:
        """Look up the result of an earlier attempt at ``action`` (find-before-create)."""
        return None

    def stream(self, name: str) -> StreamSpec:
        """The declared stream called ``name``."""
        for spec in self.streams():
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.streams())
        raise ConfigError(f"connector {self.name!r} has no stream {name!r}", fix=f"use one of: {known}")
