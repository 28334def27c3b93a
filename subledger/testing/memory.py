"""An in-memory, writable connector for tests: the engine's own tests drive it.

The "vendor" is a :class:`MemoryStore`: named, process-wide, mutable from tests
(``store.put("customers", "c1", name="Acme")``). Every record carries an ``updated_at``
the store assigns (strictly increasing), which is the streams' cursor. Each page read,
write, find and check is a "request" to the store, so :class:`~subledger.testing.faults.Fault`
s can fail it with a 429 (with ``Retry-After``), a 5xx, a 4xx, or a crash, and the
connector goes through the real retry layer (:func:`subledger.core.http.retry_call`).

The connector is deliberately *not* an entry point, so it never shows in a user's
``subledger plugins``; tests register it with :func:`register_memory_connector` (or the
``memory_store`` pytest fixture).

Streams: customers, contracts, invoices (with invoice lines), payments (with their
applications to invoices) and usage_events. Write kinds: ``create_customer``,
``create_invoice`` and ``update_customer_fields``; idempotency keys are honoured by the
store, as a vendor would honour them, so a fresh connector instance replaying a write
gets the first result back. ``create_invoice`` keeps the payload as the invoice
(``contract_external_id`` included, so a correction names the contract it is for).

Coverage: the store holds every usage event there is, so each read of ``usage_events``
that reaches the end of the stream yields, right before its last checkpoint, one
``UsageCoverage(2000-01-01T00:00Z, <the read instant>, meter=None)``: every meter's usage
is complete from :data:`COVERAGE_START` (before any test data) up to the moment of the
read, including meters with no events at all.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from subledger.core.connector import (
    Capabilities,
    Checkpoint,
    CheckResult,
    Connector,
    ConnectorConfig,
    StreamSpec,
    UsageCoverage,
    UsageEventIn,
    WriteAction,
    WriteConflict,
    WriteResult,
)
from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError, SubledgerError
from subledger.core.hookspecs import hookimpl
from subledger.core.http import error_for_status, retry_call
from subledger.core.model import (
    Contract,
    Customer,
    Invoice,
    InvoiceLine,
    Payment,
    PaymentApplication,
    payload_hash,
    record_id,
)
from subledger.core.plugins import PluginInfo, register_plugin, unregister_plugin
from subledger.testing.faults import Fault
from subledger.testing.harness import ConnectorHarness

DEFAULT_API_KEY = "mem_test_key_4f6b1c2d9e"
PLUGIN_NAME = "subledger-testing-memory"
STREAMS = ("customers", "contracts", "invoices", "payments", "usage_events")
_RECORD_TYPES = {
    "customers": "customer",
    "contracts": "contract",
    "invoices": "invoice",
    "payments": "payment",
    "usage_events": "usage_event",
}
_ID_PREFIX = {"customers": "cus", "contracts": "con", "invoices": "inv", "payments": "pay"}
COVERAGE_START = datetime(2000, 1, 1, tzinfo=UTC)
"""Where the usage stream's coverage starts: before any usage a test puts in a store."""


class SimulatedCrash(BaseException):
    """The process "died" here. A BaseException, so ``except Exception`` cannot swallow it."""


class MemoryHTTPError(Exception):
    """The store's answer to a failed request, shaped like a vendor SDK's exception."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = headers or {}
        self.body = message


@dataclass
class _Row:
    updated_at: datetime
    data: dict[str, Any]


class MemoryStore:
    """A vendor's data and API, in memory.

    Args:
        name: the store's name (``MemoryConfig.store`` picks it).
        api_key: the key a connector must present.
    """

    def __init__(self, name: str = "default", *, api_key: str = DEFAULT_API_KEY) -> None:
        self.name = name
        self.api_key = api_key
        self.requests: list[str] = []
        self._rows: dict[str, dict[str, _Row]] = {s: {} for s in STREAMS}
        self._faults: list[Fault] = []
        self._idempotency: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self._counter = 0
        self._clock = datetime(2024, 1, 1, tzinfo=UTC)
        self._lock = threading.RLock()

    # -- test-side mutation ---------------------------------------------------------------

    def put(self, stream: str, external_id: str, **fields: Any) -> dict[str, Any]:
        """Create or replace a record (canonical field names), bumping its ``updated_at``."""
        self._check_stream(stream)
        with self._lock:
            data = {**fields, "external_id": external_id}
            self._rows[stream][external_id] = _Row(self._tick(), data)
            return copy.deepcopy(data)

    def update(self, stream: str, external_id: str, **fields: Any) -> dict[str, Any]:
        """Change some fields of an existing record, bumping its ``updated_at``."""
        with self._lock:
            row = self._row(stream, external_id)
            row.data.update(fields)
            row.updated_at = self._tick()
            return copy.deepcopy(row.data)

    def get(self, stream: str, external_id: str) -> dict[str, Any] | None:
        """A copy of one record, or None."""
        with self._lock:
            row = self._rows[stream].get(external_id)
            return copy.deepcopy(row.data) if row else None

    def records(self, stream: str) -> list[dict[str, Any]]:
        """Copies of a stream's records, in cursor order."""
        with self._lock:
            rows = sorted(self._rows[stream].values(), key=lambda r: r.updated_at)
            return [copy.deepcopy(r.data) for r in rows]

    def inject(self, fault: Fault) -> Fault:
        """Fail upcoming requests as ``fault`` says; returns it (its ``served`` counts hits)."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def seed_example(self) -> MemoryStore:
        """Load a small, consistent example: 3 customers, 2 contracts, 3 invoices with lines,
        2 payments with applications, 5 usage events."""
        for ext, name, email in (
            ("cus_acme", "Acme Corp", "billing@acme.example"),
            ("cus_globex", "Globex", "ap@globex.example"),
            ("cus_initech", "Initech", "finance@initech.example"),
        ):
            self.put("customers", ext, name=name, email=email, email_domain=email.split("@")[1],
                     currency="USD", country="US")
        for ext, customer in (("con_acme_2024", "cus_acme"), ("con_globex_2024", "cus_globex")):
            self.put("contracts", ext, customer_external_id=customer, name=f"{customer} 2024",
                     currency="USD", start_date=date(2024, 1, 1), end_date=date(2024, 12, 31),
                     terms={"components": [{"key": "api_calls", "unit_price": "0.002"}]})
        for ext, customer, total in (("in_1", "cus_acme", 125000), ("in_2", "cus_globex", 49900),
                                     ("in_3", "cus_acme", 2000)):
            self.put("invoices", ext, customer_external_id=customer, currency="USD",
                     status="open", number=ext.upper(), subtotal_minor=total, total_minor=total,
                     amount_due_minor=total, issued_at=datetime(2024, 2, 1, tzinfo=UTC),
                     period_start=date(2024, 1, 1), period_end=date(2024, 1, 31),
                     lines=[{"line_key": "l1", "kind": "usage", "description": "API calls",
                             "meter": "api_calls", "quantity": "1000", "unit_price": "0.002",
                             "amount_minor": total, "currency": "USD"}])
        self.put("payments", "py_1", customer_external_id="cus_acme", currency="USD",
                 amount_minor=125000, received_at=datetime(2024, 2, 10, tzinfo=UTC),
                 applications=[{"invoice_external_id": "in_1", "amount_minor": 125000}])
        self.put("payments", "py_2", customer_external_id="cus_globex", currency="USD",
                 amount_minor=10000, received_at=datetime(2024, 2, 12, tzinfo=UTC), applications=[])
        for n in range(1, 6):
            self.put("usage_events", f"evt_{n}", customer_external_id="cus_acme", meter="api_calls",
                     quantity=f"{n * 10}", occurred_at=f"2024-01-{n:02d}T12:00:00+00:00",
                     properties={"region": "eu" if n % 2 else "us"})
        return self

    # -- the "API" the connector calls ------------------------------------------------------

    def serve(self, operation: str, api_key: str) -> None:
        """Admit one request: log it, apply a pending fault, check the key."""
        with self._lock:
            self.requests.append(operation)
            for fault in self._faults:
                if fault.exhausted or (fault.operations and operation not in fault.operations):
                    continue
                if fault.skip:
                    fault.skip -= 1
                    continue
                if fault.crash and operation == "write":
                    continue  # served after the write lands, by write()
                fault.served += 1
                if fault.crash:
                    raise SimulatedCrash(f"simulated crash during {operation}")
                raise MemoryHTTPError(fault.status or 500, f"injected fault on {operation}",
                                      fault.headers())
            if api_key != self.api_key:
                raise MemoryHTTPError(401, "Invalid API key provided")

    def page(self, stream: str, after: datetime | None, limit: int) -> list[tuple[datetime, dict[str, Any]]]:
        """Up to ``limit`` records with ``updated_at`` after ``after``, in cursor order."""
        with self._lock:
            rows = sorted(self._rows[stream].values(), key=lambda r: r.updated_at)
            chosen = [r for r in rows if after is None or r.updated_at > after][:limit]
            return [(r.updated_at, copy.deepcopy(r.data)) for r in chosen]

    def find(self, idempotency_key: str) -> tuple[str, str, dict[str, Any]] | None:
        """(stream, external id, record) of the write done under ``idempotency_key``, if any."""
        with self._lock:
            found = self._idempotency.get(idempotency_key)
            if found is None:
                return None
            stream, external_id, _ = found
            return stream, external_id, self.get(stream, external_id) or {}

    def apply(self, action: WriteAction, *, honour_idempotency: bool = True) -> tuple[str, bool, dict[str, Any]]:
        """Perform a write: (external id, whether this call made the change, record after)."""
        with self._lock:
            if honour_idempotency and action.idempotency_key in self._idempotency:
                stream, external_id, _ = self._idempotency[action.idempotency_key]
                return external_id, False, self.get(stream, external_id) or {}
            if action.kind == "create_customer":
                stream, external_id = "customers", self._next_id("cus_mem")
                record = self.put(stream, external_id, **action.payload)
            elif action.kind == "create_invoice":
                stream, external_id = "invoices", self._next_id("in_mem")
                record = self.put(stream, external_id, **action.payload)
            elif action.kind == "update_customer_fields":
                stream, external_id = "customers", action.target_external_id or ""
                record = self._update_fields(stream, external_id, action)
            else:
                raise MemoryHTTPError(400, f"unknown write kind {action.kind!r}")
            self._idempotency[action.idempotency_key] = (stream, external_id, action.payload)
            for fault in self._faults:
                ops = fault.operations
                if fault.crash and not fault.exhausted and (not ops or "write" in ops):
                    if fault.skip:
                        fault.skip -= 1
                        continue
                    fault.served += 1
                    raise SimulatedCrash(f"simulated crash after {action.kind} {external_id}")
            return external_id, True, record

    def _update_fields(self, stream: str, external_id: str, action: WriteAction) -> dict[str, Any]:
        row = self._rows[stream].get(external_id)
        if row is None:
            raise MemoryHTTPError(404, f"No such customer: {external_id!r}")
        stale = {
            k: {"expected": v, "found": row.data.get(k)}
            for k, v in (action.base_version or {}).items()
            if row.data.get(k) != v
        }
        if stale:
            names = ", ".join(sorted(stale))
            raise WriteConflict(
                f"customer {external_id} changed since it was read ({names} differ); nothing was written",
                fix="pull the connection again, review the change, and plan the write anew",
            )
        return self.update(stream, external_id, **action.payload)

    # -- internals ---------------------------------------------------------------------------

    def _tick(self) -> datetime:
        self._clock += timedelta(seconds=1)
        return self._clock

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter:04d}"

    def _row(self, stream: str, external_id: str) -> _Row:
        self._check_stream(stream)
        row = self._rows[stream].get(external_id)
        if row is None:
            raise KeyError(f"{stream} has no record {external_id!r}")
        return row

    @staticmethod
    def _check_stream(stream: str) -> None:
        if stream not in STREAMS:
            raise KeyError(f"no stream {stream!r}; streams: {', '.join(STREAMS)}")


_stores: dict[str, MemoryStore] = {}
_stores_lock = threading.Lock()


def memory_store(name: str = "default", *, api_key: str = DEFAULT_API_KEY) -> MemoryStore:
    """The process-wide store called ``name``, created (empty) on first use."""
    with _stores_lock:
        if name not in _stores:
            _stores[name] = MemoryStore(name, api_key=api_key)
        return _stores[name]


def drop_memory_store(name: str) -> None:
    """Forget one store."""
    with _stores_lock:
        _stores.pop(name, None)


def reset_memory_stores() -> None:
    """Forget every store (for tests)."""
    with _stores_lock:
        _stores.clear()


class MemoryConfig(ConnectorConfig):
    """Config of the in-memory connector."""

    api_key: SecretStr = Field(description="the store's API key")
    store: str = Field(default="default", description="which in-memory store to use")
    page_size: int = Field(default=2, ge=1, description="records per request")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (datetime, date)) else value


class MemoryConnector(Connector):
    """Reads and writes a :class:`MemoryStore` through the shared retry layer."""

    name: ClassVar[str] = "memory"
    title: ClassVar[str] = "In-memory test connector"
    config_model: ClassVar[type[ConnectorConfig]] = MemoryConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        read=True,
        incremental=True,
        write=frozenset({"create_customer", "create_invoice", "update_customer_fields"}),
    )
    config: MemoryConfig

    def streams(self) -> list[StreamSpec]:
        specs = [StreamSpec(s, _RECORD_TYPES[s], cursor_field="updated_at") for s in STREAMS]
        specs[-1] = StreamSpec("usage_events", "usage_event", ("event_id",), cursor_field="updated_at")
        return specs

    # -- plumbing every operation goes through -------------------------------------------------

    def _store(self) -> MemoryStore:
        with _stores_lock:
            store = _stores.get(self.config.store)
        if store is None:
            raise ConfigError(
                f"no in-memory store named {self.config.store!r}",
                fix="create it first with subledger.testing.memory.memory_store(name)",
            )
        return store

    def classify(self, exc: BaseException) -> SubledgerError | None:
        """Map the store's errors to subledger's failure kinds (as a connector does for its SDK)."""
        if isinstance(exc, MemoryHTTPError):
            return error_for_status(exc.status_code, headers=exc.headers, body=exc.body,
                                    operation=f"memory store {self.config.store!r}")
        return None

    def api_key(self) -> str:
        """The key presented to the store."""
        return self.config.api_key.get_secret_value()

    def _call(self, operation: str, fn: Callable[[MemoryStore], Any]) -> Any:
        def request() -> Any:
            store = self._store()
            store.serve(operation, self.api_key())
            return fn(store)

        return retry_call(request, classify=self.classify, operation=f"memory {operation}")

    # -- the connector API -------------------------------------------------------------------

    def check(self) -> CheckResult:
        try:
            self._call("check", lambda store: None)
        except SubledgerError as err:
            return CheckResult(ok=False, message=str(err), details={"kind": str(err.kind)})
        return CheckResult(ok=True, message=f"memory store {self.config.store!r} answered")

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        self.stream(stream)  # unknown stream -> ConfigError naming the known ones
        cursor = datetime.fromisoformat(state["updated_at"]) if state and state.get("updated_at") else None
        while True:
            page = self._call("read", lambda store, c=cursor: store.page(stream, c, self.config.page_size))
            if not page:
                break
            for _, data in page:
                yield from self._records(stream, data)
            cursor = page[-1][0]
            if len(page) < self.config.page_size:
                break  # the last page: its checkpoint is the final one, below
            yield Checkpoint({"updated_at": cursor.isoformat()})
        if stream == "usage_events":
            # Every event the store holds has now been read (this time or before): all of it is covered.
            yield UsageCoverage(COVERAGE_START, utcnow())
        yield Checkpoint({"updated_at": cursor.isoformat()} if cursor else dict(state or {}))

    def _records(self, stream: str, data: dict[str, Any]) -> Iterator[Any]:
        system, fetched_at = self.connection, utcnow()
        digest = payload_hash({k: _iso(v) for k, v in data.items()})
        fields = {k: v for k, v in data.items() if k not in ("lines", "applications")}
        if stream == "usage_events":
            yield UsageEventIn(
                event_id=data["external_id"],
                customer_external_id=data["customer_external_id"],
                meter=data["meter"],
                quantity=Decimal(str(data["quantity"])),
                occurred_at=datetime.fromisoformat(str(data["occurred_at"])),
                properties=dict(data.get("properties", {})),
                payload_hash=digest,
            )
            return
        model = {"customers": Customer, "contracts": Contract, "invoices": Invoice, "payments": Payment}[stream]
        rid = record_id(_ID_PREFIX[stream], system, data["external_id"])
        if stream in ("customers", "invoices"):
            # Fields beyond the canonical ones (a CRM's usage to date, a written invoice's metadata and
            # description) land in attributes; ISO text from a write payload becomes dates.
            extra = {k: v for k, v in fields.items() if k not in model.model_fields}
            fields = {k: _when(k, v) for k, v in fields.items() if k in model.model_fields}
            fields["attributes"] = {**fields.get("attributes", {}), **extra}
        yield model(id=rid, system=system, fetched_at=fetched_at, payload_hash=digest, **fields)
        for line in data.get("lines", []):
            known = {k: _when(k, v) for k, v in line.items() if k in InvoiceLine.model_fields}
            yield InvoiceLine(
                invoice_id=rid,
                **{**known, "quantity": _decimal(line.get("quantity")), "unit_price": _decimal(line.get("unit_price"))},
            )
        for application in data.get("applications", []):
            yield PaymentApplication(payment_id=rid, currency=data["currency"], **application)

    def write(self, action: WriteAction) -> WriteResult:
        if action.kind not in self.capabilities.write:
            return super().write(action)
        external_id, created, record = self._call("write", lambda store: store.apply(action))
        return WriteResult(external_id=external_id, created=created, record=record)

    def find(self, action: WriteAction) -> WriteResult | None:
        found = self._call("find", lambda store: store.find(action.idempotency_key))
        if found is None:
            return None
        _, external_id, record = found
        return WriteResult(external_id=external_id, created=False, record=record)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


_DATES = frozenset({"period_start", "period_end", "service_start", "service_end", "start_date", "end_date"})
_TIMES = frozenset({"issued_at", "due_at"})


def _when(name: str, value: Any) -> Any:
    """ISO text (as a write payload carries it) as the date or datetime the field holds."""
    if not isinstance(value, str):
        return value
    if name in _DATES:
        return date.fromisoformat(value)
    if name in _TIMES:
        return datetime.fromisoformat(value)
    return value


class MemoryPlugin:
    """The plugin that registers a memory connector class (default :class:`MemoryConnector`)."""

    def __init__(self, connector: type[Connector] = MemoryConnector) -> None:
        self.connector = connector

    @hookimpl
    def register_connectors(self, register: Callable[[type[Any]], None]) -> None:
        register(self.connector)


def register_memory_connector(connector: type[Connector] = MemoryConnector) -> PluginInfo:
    """Register the memory connector into the process-wide plugin host (tests only)."""
    return register_plugin(MemoryPlugin(connector), name=f"{PLUGIN_NAME}-{connector.name}")


def unregister_memory_connector(connector: type[Connector] = MemoryConnector) -> None:
    """Undo :func:`register_memory_connector`."""
    unregister_plugin(f"{PLUGIN_NAME}-{connector.name}")


@contextmanager
def memory_connector(connector: type[Connector] = MemoryConnector) -> Iterator[None]:
    """Register the memory connector for the duration of a block."""
    register_memory_connector(connector)
    try:
        yield
    finally:
        unregister_memory_connector(connector)


_harness_stores = itertools.count(1)


class MemoryHarness(ConnectorHarness):
    """The conformance harness of the memory connector: a fresh seeded store per test.

    ``connector_type`` may name a subclass (the kit's own tests break one on purpose).
    """

    connector_name: ClassVar[str] = "memory"
    connector_type: ClassVar[type[Connector]] = MemoryConnector

    def setup(self, tmp_path: Path) -> None:
        self.store_name = f"conformance-{next(_harness_stores)}"
        self.store = memory_store(self.store_name).seed_example()

    def teardown(self) -> None:
        drop_memory_store(self.store_name)

    def plugins(self) -> list[object]:
        return [MemoryPlugin(self.connector_type)]

    def good_config(self) -> dict[str, Any]:
        return {"api_key": self.store.api_key, "store": self.store_name, "page_size": 2}

    def bad_configs(self) -> dict[str, dict[str, Any]]:
        return {
            "wrong api key": {**self.good_config(), "api_key": "mem_wrong_key_9c1e77"},
            "unknown store": {**self.good_config(), "store": "no-such-store"},
        }

    def add_records(self, stream: str) -> None:
        first = self.store.records(stream)[0]
        new_id = f"{first['external_id']}_added"
        self.store.put(stream, new_id, **{k: v for k, v in first.items() if k != "external_id"})
        if stream == "customers":  # an update, which an incremental read may re-send
            self.store.update(stream, first["external_id"], name=f"{first['name']} (renamed)")

    def write_actions(self) -> list[WriteAction]:
        return [
            WriteAction("create_customer", "conformance-create-customer-1",
                        {"name": "Newco", "email": "ap@newco.example", "currency": "USD"}),
            WriteAction("create_invoice", "conformance-create-invoice-1",
                        {"customer_external_id": "cus_acme", "currency": "USD", "status": "draft",
                         "subtotal_minor": 4200, "total_minor": 4200, "amount_due_minor": 4200}),
            WriteAction("update_customer_fields", "conformance-update-customer-1",
                        {"email": "invoices@acme.example"}, target_external_id="cus_acme",
                        base_version={"email": "billing@acme.example"}),
        ]

    def stale_update(self) -> WriteAction | None:
        return WriteAction("update_customer_fields", "conformance-stale-update-1",
                           {"name": "Globex International"}, target_external_id="cus_globex",
                           base_version={"name": "Globex Incorporated"})

    def inject_fault(self, fault: Fault) -> None:
        self.store.inject(fault)
