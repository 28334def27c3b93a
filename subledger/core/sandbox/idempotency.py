"""Idempotency keys as billing APIs implement them.

The first request with a key runs and its response is saved; a later request with the
same key and the same parameters gets the saved response back (without running again);
the same key with different parameters, or on another endpoint, is refused. Saved
responses expire after ``ttl`` seconds (Stripe: 24 hours), after which the key is new
again, which is why a writer must also be able to *find* what it created.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from subledger.core.sandbox.wire import Response

DAY = 24 * 3600


@dataclass(frozen=True)
class SavedResponse:
    """A response kept under an idempotency key."""

    endpoint: str
    fingerprint: str
    response: Response
    saved_at: float


def fingerprint(params: Any) -> str:
    """A stable hash of request parameters (order of object keys does not matter)."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class IdempotencyCache:
    """Saved responses by ``(scope, key)``; ``scope`` separates accounts/API keys."""

    def __init__(self, ttl: float = DAY) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._saved: dict[tuple[str, str], SavedResponse] = {}

    def lookup(self, scope: str, key: str, now: float) -> SavedResponse | None:
        """The live saved response for a key, or None (expired entries are dropped)."""
        with self._lock:
            saved = self._saved.get((scope, key))
            if saved is None:
                return None
            if now - saved.saved_at >= self.ttl:
                del self._saved[(scope, key)]
                return None
            return saved

    def save(self, scope: str, key: str, saved: SavedResponse) -> None:
        with self._lock:
            self._saved[(scope, key)] = saved

    def clear(self) -> None:
        with self._lock:
            self._saved.clear()

    def __len__(self) -> int:
        return len(self._saved)
