"""Fault injection: make the next matching requests fail the way real APIs fail.

A :class:`Fault` matches requests by method and path (``fnmatch`` pattern), skips the
first ``skip`` matches, then fires ``times`` times. Kinds:

* ``rate_limit``: 429 with ``Retry-After`` before anything runs;
* ``server_error``: 500 (``phase="before"``: nothing ran; ``"after"``: the write
  committed, then the server failed);
* ``timeout``: the server holds the request for ``seconds`` and never answers
  (``"before"``: nothing ran; ``"after"``: the write committed);
* ``drop``: the connection is closed without a response (``"after"``, the default, is
  the nasty one: the write committed, the client cannot know);
* ``kill``: the sandbox sends ``signal`` (default ``SIGKILL``) to the process ``pid`` (the
  client under test), waits until it is gone (at most ``seconds``), then
  closes the connection without a response: the client crashes with its request not run
  (``"before"``, the default) or committed with the answer never read (``"after"``). Crash
  tests use it to kill an applier at an exact request boundary.

A ``rate_limit`` or ``server_error`` answers in the vendor's error format unless the rule
gives its own ``body`` (and ``content_type``): then that body is sent as it is, the way a
proxy, load balancer or gateway in front of the vendor answers (an HTML page,
``{"error": "..."}``, plain text, or ``""`` for none). :data:`FOREIGN_BODIES` has the
usual ones. Each vendor sandbox applies it with :func:`shaped_response`.
"""

from __future__ import annotations

import fnmatch
import os
import signal as signals
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from subledger.core.sandbox.wire import Response

FaultKind = Literal["rate_limit", "server_error", "timeout", "drop", "kill"]
Phase = Literal["before", "after"]
KINDS: tuple[str, ...] = ("rate_limit", "server_error", "timeout", "drop", "kill")

FOREIGN_BODIES: dict[str, tuple[str, str]] = {
    # name: (body, content type) as proxies and gateways send them in front of an API
    "html": ("<!DOCTYPE html><html><head><title>503 Service Temporarily Unavailable</title></head><body>"
             "<center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>",
             "text/html"),
    "json_error_string": ('{"error": "upstream connect error or disconnect/reset before headers"}',
                          "application/json"),
    "json_message": ('{"message": "Too Many Requests"}', "application/json"),
    "json_list": ('["busy"]', "application/json"),
    "empty": ("", "text/plain"),
    "text": ("Service Unavailable", "text/plain"),
    "truncated_json": ('{"error": {"message": "Internal', "application/json"),
}
"""Bodies that are not the vendor's error document, by name: for ``Fault(body=..., content_type=...)``."""


@dataclass
class Fault:
    """One fault rule.

    Attributes:
        kind: rate_limit, server_error, timeout, drop or kill.
        method: HTTP method to match (None = any).
        path: ``fnmatch`` pattern of the path to match (``/v1/invoices*``; None = any).
        times: how many matching requests fail (then the rule is spent).
        skip: how many matching requests pass before the first failure.
        phase: ``before`` the handler runs, or ``after`` it committed.
        retry_after: seconds for the ``Retry-After`` header (rate_limit).
        status: HTTP status for server_error.
        seconds: how long a timeout holds the request; for kill, the longest wait for the
            process to be gone.
        headers: extra response headers (e.g. ``Stripe-Should-Retry: false``).
        body: for rate_limit and server_error, the exact response body to send instead of
            the vendor's error document (``""``: an empty body); None: the vendor's.
        content_type: the ``Content-Type`` sent with ``body`` (None: ``text/plain``).
        pid: for kill, the process to signal (the client under test).
        signal: for kill, the signal number (default ``SIGKILL``).
    """

    kind: FaultKind
    method: str | None = None
    path: str | None = None
    times: int = 1
    skip: int = 0
    phase: Phase | None = None
    retry_after: float | None = 1
    status: int = 500
    seconds: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    content_type: str | None = None
    pid: int | None = None
    signal: int = int(signals.SIGKILL)
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.kind == "kill":
            if isinstance(self.pid, bool) or not isinstance(self.pid, int) or self.pid <= 0:
                raise ValueError(f"a kill fault needs the pid of the process to kill, not {self.pid!r}")
            if self.pid == os.getpid():
                raise ValueError("a kill fault may not kill the sandbox's own process")
        elif self.pid is not None:
            raise ValueError("only a kill fault takes a pid")
        if self.phase is None:
            self.phase = "after" if self.kind == "drop" else "before"
        if self.kind == "rate_limit" and self.phase != "before":
            raise ValueError("a rate_limit fault always fires before the handler runs")
        if self.method:
            self.method = self.method.upper()
        if self.body is not None and self.kind not in ("rate_limit", "server_error"):
            raise ValueError("only rate_limit and server_error faults answer with a body")

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method:
            return False
        return not (self.path and not fnmatch.fnmatchcase(path, self.path))

    @property
    def spent(self) -> bool:
        return self.fired >= self.times

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from JSON (the ``/_sandbox/faults`` control endpoint)."""
        allowed = {
            "kind", "method", "path", "times", "skip", "phase", "retry_after", "status", "seconds",
            "headers", "body", "content_type", "pid", "signal",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "method": self.method, "path": self.path, "times": self.times,
            "skip": self.skip, "phase": self.phase, "retry_after": self.retry_after,
            "status": self.status, "seconds": self.seconds, "headers": dict(self.headers),
            "body": self.body, "content_type": self.content_type, "pid": self.pid, "signal": self.signal,
            "fired": self.fired,
        }

    def kill_target(self) -> bool:
        """Send the kill fault's signal to its process and wait (at most ``seconds``) until it is gone.

        Returns False when there was no such process (it had already ended).
        """
        assert self.kind == "kill" and self.pid is not None
        try:
            os.kill(self.pid, self.signal)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + self.seconds
        while _running(self.pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        return True


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def shaped_response(fault: Fault, response: Response) -> Response:
    """``response`` (the vendor-format answer to a fault) with the fault's own body, if it has one.

    The status (429 for a rate limit) and the headers the vendor format set (``Retry-After``,
    rate-limit headers) and the rule's ``headers`` are kept; the body and its ``Content-Type``
    become the rule's.
    """
    if fault.body is None:
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = fault.content_type or "text/plain"
    headers.update(fault.headers)
    # A proxy's rate limit is a 429, whatever the vendor's own is (Salesforce's is a 403).
    status = 429 if fault.kind == "rate_limit" else response.status
    return Response(status, fault.body.encode(), headers)


class FaultPlan:
    """The active fault rules of one sandbox. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._seen: dict[int, int] = {}

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
            self._seen[id(fault)] = 0
        return fault

    def inject(self, kind: FaultKind, **options: Any) -> Fault:
        """Shorthand: ``plan.inject("drop", method="POST", path="/v1/invoices")``."""
        return self.add(Fault(kind=kind, **options))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._seen.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The fault that fires for this request, if any (counts it as fired)."""
        with self._lock:
            for fault in self._faults:
                if fault.spent or not fault.matches(method, path):
                    continue
                seen = self._seen[id(fault)]
                self._seen[id(fault)] = seen + 1
                if seen < fault.skip:
                    continue
                fault.fired += 1
                return fault
        return None

    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.spent]

    def all(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)
