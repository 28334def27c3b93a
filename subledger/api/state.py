"""What the app's routes share: the engine, settings, key cache and the background worker pool."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy import Engine

from subledger.api.keys import KeyCache
from subledger.api.settings import ServiceSettings
from subledger.sync.settings import SyncSettings

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    """Shared by every request of one app."""

    engine: Engine
    settings: ServiceSettings
    sync_settings: SyncSettings
    keys: KeyCache = field(default_factory=KeyCache)
    # Background work (syncs, webhook pulls, notifications): two threads, so a long sync
    # never holds up a webhook's pull and neither ever holds up a request.
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="subledger-bg"))
    pending: set[Future[Any]] = field(default_factory=set)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn`` in the background; its failure is logged, never raised into a request."""

        def run() -> Any:
            try:
                return fn(*args)
            except Exception:
                log.exception("background task %s failed", getattr(fn, "__name__", fn))
                return None

        future = self.pool.submit(run)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)
        return future

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for background work (tests, shutdown)."""
        import concurrent.futures

        concurrent.futures.wait(list(self.pending), timeout=timeout)


def get_state(request: Request) -> ServiceState:
    return request.app.state.subledger
