"""Faults a harness injects into its connector's system to exercise the retry layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Fault:
    """Make the next ``times`` matching requests fail.

    The system answering (sandbox server, in-memory store) increments :attr:`served`
    each time it serves the fault, so a test can tell "retried twice" from "never hit".

    Attributes:
        status: the HTTP status to answer with (429, 500, 401, ...), or None for a crash.
        times: how many requests fail.
        retry_after: the ``Retry-After`` header to send (seconds or an HTTP date).
        operations: which operations fail (``check``, ``read``, ``write``, ``find``);
            None means any.
        skip: let this many matching requests through first.
        crash: raise :class:`~subledger.testing.memory.SimulatedCrash` instead of
            answering (an in-memory store only); for a write, after the write landed.
        served: how many times the fault was served so far.
    """

    status: int | None = None
    times: int = 1
    retry_after: str | None = None
    operations: frozenset[str] | None = None
    skip: int = 0
    crash: bool = False
    served: int = 0

    @property
    def exhausted(self) -> bool:
        """True once the fault has been served ``times`` times."""
        return self.served >= self.times

    def headers(self) -> dict[str, str]:
        """The response headers that go with the fault."""
        return {"Retry-After": self.retry_after} if self.retry_after is not None else {}
