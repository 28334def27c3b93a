"""A fake clock for retry tests: sleeping advances time instantly and is recorded."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from subledger.core.http import RetryPolicy


class FakeClock:
    """Monotonic time, wall time and sleep that never wait.

    ``sleeps`` lists every wait asked for, so a test can say "it waited exactly the 7
    seconds Retry-After asked for". Wall time starts at the real current second (so an
    HTTP-date ``Retry-After`` computed from it is in the near future for code that reads
    the real time too).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.start = start or datetime.now(UTC).replace(microsecond=0)
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Seconds since the clock started."""
        return self.elapsed

    def now(self) -> datetime:
        """The current (fake) aware UTC time."""
        return self.start + timedelta(seconds=self.elapsed)

    def sleep(self, seconds: float) -> None:
        """Record the wait and advance time by it."""
        self.sleeps.append(float(seconds))
        self.elapsed += float(seconds)

    def policy(self, *, seed: int = 0, **changes: Any) -> RetryPolicy:
        """A retry policy on this clock, with seeded jitter; ``changes`` override fields."""
        rng = random.Random(seed)
        return RetryPolicy(sleep=self.sleep, clock=self.monotonic, now=self.now, random=rng.random).replace(
            **changes
        )
