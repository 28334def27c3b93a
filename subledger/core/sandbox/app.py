"""The vendor-neutral sandbox: routing, auth, idempotency, faults, seeding, an exchange log.

A vendor sandbox subclasses :class:`Sandbox`, adds its routes in :meth:`Sandbox.build_routes`
and says how the vendor authenticates, formats errors and scopes idempotency keys. The
server (:mod:`subledger.core.sandbox.server`) only moves bytes; everything a test may
want to control lives here and is reachable in-process or through the ``/_sandbox``
control endpoints (for a sandbox started by ``subledger sandbox serve``).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from subledger.core.errors import ConfigError
from subledger.core.sandbox.clock import SandboxClock
from subledger.core.sandbox.faults import Fault, FaultPlan
from subledger.core.sandbox.forms import FormError
from subledger.core.sandbox.idempotency import IdempotencyCache, SavedResponse, fingerprint
from subledger.core.sandbox.routing import Router
from subledger.core.sandbox.store import ObjectStore
from subledger.core.sandbox.wire import Request, Response, SandboxError

CONTROL_PREFIX = "/_sandbox"
log = logging.getLogger(__name__)


@dataclass
class Call:
    """What a route handler receives."""

    request: Request
    params: dict[str, Any]
    path: dict[str, str]
    principal: Any
    sandbox: Sandbox

    def __getitem__(self, key: str) -> str:
        return self.path[key]


@dataclass
class Outcome:
    """What the server should do: answer, drop the connection, or hold it until timeout."""

    action: Literal["respond", "drop", "hang"]
    response: Response | None = None
    hang_seconds: float = 0.0


@dataclass
class Exchange:
    """One request and what the sandbox did with it (for validation and assertions)."""

    request: Request
    response: Response | None
    fault: Fault | None = None
    action: str = "respond"
    replayed: bool = False
    tags: dict[str, Any] = field(default_factory=dict)


class Sandbox(ABC):
    """Base class of every vendor sandbox.

    Subclasses set :attr:`name` and :attr:`title` and implement :meth:`build_routes` and
    :meth:`seed`; they usually override :meth:`authenticate`, :meth:`render_error`,
    :meth:`idempotency_key` and :meth:`idempotency_conflict`.

    Args:
        clock: the sandbox clock (default: real time).
        fixture: a fixture file path or an already loaded fixture document to seed from.
        random_seed: makes generated ids reproducible.
        log_size: how many exchanges to keep in :attr:`exchanges`.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    idempotency_ttl: ClassVar[float] = 24 * 3600

    def __init__(
        self,
        *,
        clock: SandboxClock | None = None,
        fixture: str | Path | dict[str, Any] | None = None,
        random_seed: int | None = None,
        log_size: int = 10_000,
    ) -> None:
        self.clock = clock or SandboxClock()
        self.store = ObjectStore(seed=random_seed)
        self.faults = FaultPlan()
        self.idempotency = IdempotencyCache(ttl=self.idempotency_ttl)
        self.exchanges: deque[Exchange] = deque(maxlen=log_size)
        self.observers: list[Callable[[Exchange], None]] = []
        self.router = Router()
        self.build_routes(self.router)
        self._control = Router()
        self._build_control_routes(self._control)
        if fixture is not None:
            self.seed(load_fixture(fixture))

    # -- to implement -------------------------------------------------------------------

    @abstractmethod
    def build_routes(self, router: Router) -> None:
        """Add the vendor's API routes."""

    @abstractmethod
    def seed(self, fixture: dict[str, Any]) -> dict[str, int]:
        """Create the objects a fixture document describes; returns counts per kind."""

    def connection_hint(self, url: str) -> dict[str, Any]:
        """The connector config that reaches this sandbox at ``url`` (printed by ``sandbox serve``)."""
        return {}

    def reset(self) -> None:
        """Forget every object, saved idempotent response, fault and logged exchange."""
        with self.store.lock:
            self.store.clear()
            self.idempotency.clear()
            self.faults.clear()
            self.exchanges.clear()

    # -- vendor conventions (override) --------------------------------------------------

    def authenticate(self, request: Request) -> Any:
        """Return the caller's principal, or raise a 401 :class:`SandboxError`."""
        return None

    def render_error(self, error: SandboxError) -> Response:
        """The vendor's error document for ``error``."""
        body = {"error": {"code": error.code, "message": error.message, "param": error.param}}
        return Response(error.status, body, dict(error.headers))

    def idempotency_key(self, request: Request) -> str | None:
        """The request's idempotency key, when the vendor honours one for this request."""
        return None

    def idempotency_scope(self, principal: Any) -> str:
        """Keys are per account: two accounts may use the same key independently."""
        return str(principal)

    def idempotency_conflict(self, key: str, request: Request) -> SandboxError:
        """The error for a key reused with different parameters or on another endpoint."""
        return SandboxError(400, f"idempotency key {key!r} was used with other parameters", code="idempotency_error")

    def mark_replayed(self, response: Response) -> Response:
        """Headers the vendor adds to a replayed response."""
        headers = dict(response.headers)
        headers["Idempotent-Replayed"] = "true"
        return Response(response.status, response.body, headers)

    def fault_response(self, fault: Fault) -> Response:
        """The response an injected rate-limit or server error gets."""
        if fault.kind == "rate_limit":
            response = self.render_error(
                SandboxError(429, "Too many requests hit the API too quickly.", code="rate_limit")
            )
            if fault.retry_after is not None:
                response.headers["Retry-After"] = _seconds_text(fault.retry_after)
        else:
            response = self.render_error(
                SandboxError(fault.status, "An unexpected error occurred on the sandbox.", code="api_error")
            )
        response.headers.update(fault.headers)
        return response

    # -- processing ---------------------------------------------------------------------

    def process(self, request: Request) -> Outcome:
        """Handle one request end to end, faults included. Called by the server."""
        if request.path.startswith(CONTROL_PREFIX):
            return Outcome("respond", self._control_dispatch(request))
        fault = self.faults.take(request.method, request.path)
        exchange = Exchange(request, None, fault)
        if fault is not None and fault.phase == "before":
            outcome = self._fault_outcome(fault, exchange)
        else:
            response, exchange.replayed = self.dispatch(request)
            if fault is not None:
                outcome = self._fault_outcome(fault, exchange)
                exchange.tags["committed_response"] = response
            else:
                outcome = Outcome("respond", response)
        exchange.response = outcome.response
        exchange.action = outcome.action
        self.exchanges.append(exchange)
        for observer in list(self.observers):
            observer(exchange)
        return outcome

    def _fault_outcome(self, fault: Fault, exchange: Exchange) -> Outcome:
        if fault.kind == "kill":
            # The client dies here (before its request ran, or after it committed), then its
            # connection is closed: it never reads an answer.
            exchange.tags["killed"] = fault.pid if fault.kill_target() else None
            return Outcome("drop")
        if fault.kind == "drop":
            return Outcome("drop")
        if fault.kind == "timeout":
            return Outcome("hang", hang_seconds=fault.seconds)
        return Outcome("respond", self.fault_response(fault))

    def dispatch(self, request: Request) -> tuple[Response, bool]:
        """Authenticate, apply idempotency, route and run the handler.

        Returns:
            The response, and whether it was replayed from an idempotency key.
        """
        try:
            principal = self.authenticate(request)
            key = self.idempotency_key(request)
            route, path_params = self.router.resolve(request.method, request.path)
            params = request.params()
            endpoint = f"{request.method} {request.path}"
            # One request at a time from the key lookup to saving the answer: two concurrent
            # requests with one key must not both run.
            with self.store.lock:
                if key is not None:
                    scope = self.idempotency_scope(principal)
                    saved = self.idempotency.lookup(scope, key, self.clock.time())
                    if saved is not None:
                        if saved.endpoint != endpoint or saved.fingerprint != fingerprint(params):
                            raise self.idempotency_conflict(key, request)
                        return self.mark_replayed(saved.response), True
                result = route.handler(Call(request, params, path_params, principal, self))
                response = result if isinstance(result, Response) else Response(200, result)
                if key is not None and response.status < 400:
                    self.idempotency.save(
                        scope, key, SavedResponse(endpoint, fingerprint(params), response, self.clock.time())
                    )
            return response, False
        except SandboxError as err:
            return self.render_error(err), False
        except (FormError, json.JSONDecodeError, UnicodeDecodeError) as err:
            return self.render_error(SandboxError(400, str(err), code="parameter_invalid")), False
        except Exception:
            # A bug in the sandbox: answer like a vendor's 500 and keep serving.
            log.exception("sandbox %s failed on %s %s", self.name, request.method, request.path)
            return self.render_error(SandboxError(500, "An unexpected error occurred.", code="api_error")), False

    # -- control endpoints --------------------------------------------------------------

    def _build_control_routes(self, r: Router) -> None:
        p = CONTROL_PREFIX
        r.add("GET", f"{p}/health", lambda c: {"ok": True, "sandbox": self.name, "time": self.clock.now()})
        r.add("GET", f"{p}/faults", lambda c: {"faults": [f.to_dict() for f in self.faults.all()]})
        r.add("POST", f"{p}/faults", self._control_add_faults)
        r.add("DELETE", f"{p}/faults", lambda c: self.faults.clear() or {"faults": []})
        r.add("POST", f"{p}/reset", lambda c: self.reset() or {"ok": True})
        r.add("POST", f"{p}/seed", lambda c: {"created": self.seed(c.request.json or {})})
        r.add("GET", f"{p}/state", lambda c: self.store.dump())
        r.add("GET", f"{p}/counts", lambda c: self.store.counts())
        r.add("POST", f"{p}/clock", self._control_clock)
        r.add("GET", f"{p}/requests", lambda c: {"requests": [_exchange_summary(e) for e in self.exchanges]})
        r.add("DELETE", f"{p}/requests", lambda c: self.exchanges.clear() or {"requests": []})

    def _control_dispatch(self, request: Request) -> Response:
        try:
            route, path_params = self._control.resolve(request.method, request.path)
            result = route.handler(Call(request, {}, path_params, None, self))
            return result if isinstance(result, Response) else Response(200, result)
        except SandboxError as err:
            return Response(err.status, {"error": {"message": err.message, "code": err.code}})
        except (ValueError, TypeError, ConfigError) as err:
            return Response(400, {"error": {"message": str(err), "code": "bad_control_request"}})

    def _control_add_faults(self, call: Call) -> dict[str, Any]:
        body = call.request.json
        items = body if isinstance(body, list) else [body]
        added = [self.faults.add(Fault.from_dict(dict(item))) for item in items]
        return {"faults": [f.to_dict() for f in added]}

    def _control_clock(self, call: Call) -> dict[str, Any]:
        body = call.request.json or {}
        if "freeze" in body:
            self.clock.freeze(body["freeze"])
        if "set" in body:
            self.clock.set(body["set"])
        if "advance" in body:
            self.clock.advance(float(body["advance"]))
        if body.get("unfreeze"):
            self.clock.unfreeze()
        return {"time": self.clock.now(), "frozen": self.clock.frozen}


def _exchange_summary(exchange: Exchange) -> dict[str, Any]:
    return {
        "method": exchange.request.method,
        "path": exchange.request.path,
        "status": exchange.response.status if exchange.response else None,
        "action": exchange.action,
        "fault": exchange.fault.kind if exchange.fault else None,
        "replayed": exchange.replayed,
    }


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def load_fixture(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Read a fixture document from a JSON or YAML file (or pass a dict through).

    Raises:
        ConfigError: the file is missing or is not a JSON/YAML mapping.
    """
    if isinstance(source, dict):
        return source
    from subledger.core.config_files import read_document

    path = Path(source)
    _, data, _ = read_document(path, what="sandbox fixture", missing_fix="pass the path of a JSON or YAML fixture file")
    if not isinstance(data, dict):
        raise ConfigError(
            f"sandbox fixture {path} must hold a mapping of object kinds to lists",
            fix="write it as {\"customers\": [...], ...}",
        )
    return data
