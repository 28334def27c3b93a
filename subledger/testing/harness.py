"""The harness a connector gives the conformance kit: configs, fixture data, faults.

Subclass :class:`ConnectorHarness`, fill in what your connector supports, and hand the
class to :func:`subledger.testing.conformance_suite`. See ``docs/conformance-kit.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from subledger.core.connector import Connector, WriteAction
from subledger.core.plugins import get_connector_class
from subledger.core.secrets import load_config
from subledger.testing.faults import Fault
from subledger.testing.records import CANONICAL_TYPES, flatten, is_primary, push_to_far_future, record_key


class ConnectorHarness:
    """How the kit drives one connector. One instance per test; ``setup`` runs first.

    Class attributes:
        connector_name: the name the connector registers under (``Connector.name``).
        connection: the connection name records must carry as ``system``.
        retries_not_applicable: set to the reason when the connector does no network I/O
            (``"reads local files"``); the retry checks then report themselves as not
            applicable, with the reason. Leave None and implement :meth:`inject_fault`
            otherwise.
        empty_streams: streams the fixture data leaves empty on purpose; every other
            stream must yield at least one record, so no check passes vacuously.
        public_fields: config fields whose names look like secrets (``sort_key``) but
            are not; every other field named like a key, token, secret, password or
            credential must be a ``SecretStr``.
    """

    connector_name: ClassVar[str]
    connection: ClassVar[str] = "conformance"
    retries_not_applicable: ClassVar[str | None] = None
    empty_streams: ClassVar[frozenset[str]] = frozenset()
    public_fields: ClassVar[frozenset[str]] = frozenset()

    # -- what a harness provides ------------------------------------------------------------

    def setup(self, tmp_path: Path) -> None:
        """Start the sandbox (or write fixture files) and seed fixture data.

        Expensive resources (a sandbox server) may be cached on the class and reused.
        """

    def teardown(self) -> None:
        """Release what :meth:`setup` took."""

    def plugins(self) -> list[object]:
        """Plugin objects to register for the test (connectors not installed as entry points).

        A published connector returns ``[]``: the kit then checks it is found through its
        installed ``subledger`` entry point.
        """
        return []

    def good_config(self) -> dict[str, Any]:
        """A raw config (as a user would give it) that works against the fixture."""
        raise NotImplementedError("ConnectorHarness.good_config() must return a working raw config")

    def bad_configs(self) -> dict[str, dict[str, Any]]:
        """Raw configs ``check`` must refuse, by label (``{"wrong api key": {...}}``)."""
        raise NotImplementedError(
            "ConnectorHarness.bad_configs() must return at least one config check() refuses "
            "(bad credentials, or an unreachable source)"
        )

    def add_records(self, stream: str) -> None:
        """Add at least one new record to ``stream`` in the source (incremental checks)."""
        raise NotImplementedError(
            f"ConnectorHarness.add_records({stream!r}) must add a record to the source, so the "
            "kit can prove an incremental read picks it up"
        )

    def far_future_state(self, stream: str, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` moved past every record. Default: time-like values set to the year 9999."""
        moved, changed = push_to_far_future(state)
        if not changed:
            raise NotImplementedError(
                f"the {stream!r} checkpoint {state!r} has no date, time or epoch value the kit can "
                "move to the far future; override ConnectorHarness.far_future_state()"
            )
        return moved

    def write_actions(self) -> list[WriteAction]:
        """One sample action per kind in ``capabilities.write``.

        Creates need no target; updates target a fixture record and carry the
        ``base_version`` that matches it now.
        """
        return []

    def stale_update(self) -> WriteAction | None:
        """An update whose ``base_version`` does not match its target (a conflict)."""
        return None

    def stream_for_kind(self, kind: str, connector: Connector) -> str:
        """The stream that shows the records a write kind creates or changes.

        Default: the stream whose record type is named in the kind
        (``create_invoice`` -> the ``invoice`` stream).
        """
        words = kind.split("_")
        for size in range(len(words), 0, -1):
            for start in range(len(words) - size + 1):
                record_type = "_".join(words[start:start + size])
                if record_type in CANONICAL_TYPES:
                    for spec in connector.streams():
                        if spec.record_type == record_type:
                            return spec.name
        raise NotImplementedError(
            f"cannot tell which stream shows {kind!r}; override ConnectorHarness.stream_for_kind()"
        )

    def count_written(self, kind: str, connector: Connector) -> int | None:
        """How many records of what ``kind`` writes the system holds now, for writes no stream
        shows (journal entries posted to an ERP, say). None: count through :meth:`stream_for_kind`."""
        return None

    def inject_fault(self, fault: Fault) -> None:
        """Make the next ``fault.times`` requests fail with ``fault.status`` (and
        ``Retry-After: fault.retry_after``); increment ``fault.served`` each time."""
        raise NotImplementedError(
            "implement ConnectorHarness.inject_fault(), or set retries_not_applicable to the reason "
            "the connector does no network I/O"
        )

    def fault_probe(self, connector: Connector) -> Any:
        """The operation the retry checks run under a fault; returns a comparable result.

        Default: a full read of the first stream with records; returns its sorted keys.
        """
        spec = next(s for s in connector.streams() if s.name not in self.empty_streams)
        keys = [
            record_key(r, spec.primary_key)
            for r in flatten(connector.read(spec.name, None))
            if is_primary(r, spec.record_type)
        ]
        return sorted(keys, key=repr)

    # -- helpers the kit uses -----------------------------------------------------------------

    def connector_class(self) -> type[Connector]:
        """The class the plugin host resolves for :attr:`connector_name`."""
        return get_connector_class(self.connector_name)

    def connect(self, raw: dict[str, Any] | None = None) -> Connector:
        """A fresh connector instance for ``raw`` (default :meth:`good_config`)."""
        cls = self.connector_class()
        config = load_config(cls.config_model, self.good_config() if raw is None else raw,
                             what=f"connection {self.connection!r}")
        return cls(config, connection=self.connection)
