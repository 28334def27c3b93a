"""Fault injection: make the next matching requests fail the way real APIs fail.

A :class:`Fault` matches requests by method and path (``fnmatch`` pattern), skips the
first ``skip`` matches, then fires ``times`` times. Kinds:

* ``rate_limit``: 429 with ``Retry-After`` before anything runs;
* ``server_error``: 500 (``phase="before"``: nothing ran; ``"after"``: the write
  committed, then the server failed);
* ``timeout``: the server holds the request for ``seconds`` and never answers
  (``"before"``: nothing ran; ``"after"``: the write committed);
* ``drop``: the connection is closed without a response (``"after"``, the default, is
  the nasty one: the write committed, the client cannot know).
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["rate_limit", "server_error", "timeout", "drop"]
Phase = Literal["before", "after"]
KINDS: tuple[str, ...] = ("rate_limit", "server_error", "timeout", "drop")


@dataclass
class Fault:
    """One fault rule.

    Attributes:
        kind: rate_limit, server_error, timeout or drop.
        method: HTTP method to match (None = any).
        path: ``fnmatch`` pattern of the path to match (``/v1/invoices*``; None = any).
        times: how many matching requests fail (then the rule is spent).
        skip: how many matching requests pass before the first failure.
        phase: ``before`` the handler runs, or ``after`` it committed.
        retry_after: seconds for the ``Retry-After`` header (rate_limit).
        status: HTTP status for server_error.
        seconds: how long a timeout holds the request.
        headers: extra response headers (e.g. ``Stripe-Should-Retry: false``).
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
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.phase is None:
            self.phase = "after" if self.kind == "drop" else "before"
        if self.kind == "rate_limit" and self.phase != "before":
            raise ValueError("a rate_limit fault always fires before the handler runs")
        if self.method:
            self.method = self.method.upper()

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
            "headers",
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
            "fired": self.fired,
        }


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
