"""The sandbox's clock: real time by default, frozen or shifted on demand.

Tests move it to exercise lookback windows, idempotency-key expiry and webhook
timestamp tolerance without sleeping.
"""

from __future__ import annotations

import threading
import time


class SandboxClock:
    """Unix time in whole seconds (what most billing APIs expose), plus a float variant."""

    def __init__(self, frozen_at: float | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen: float | None = frozen_at
        self._offset = 0.0

    def time(self) -> float:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return time.time() + self._offset

    def now(self) -> int:
        """The current time as integer Unix seconds."""
        return int(self.time())

    def freeze(self, at: float | None = None) -> None:
        """Stop the clock at ``at`` (default: now)."""
        current = self.time()
        with self._lock:
            self._frozen = current if at is None else float(at)

    def unfreeze(self) -> None:
        """Let the clock run again from where it stands."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - time.time()
                self._frozen = None

    def advance(self, seconds: float) -> None:
        """Move the clock forward (frozen or running)."""
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
            else:
                self._offset += seconds

    def set(self, at: float) -> None:
        """Jump to ``at``, keeping the frozen/running mode."""
        with self._lock:
            if self._frozen is not None:
                self._frozen = float(at)
            else:
                self._offset = float(at) - time.time()

    @property
    def frozen(self) -> bool:
        return self._frozen is not None
