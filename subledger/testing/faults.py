"""Faults a harness injects into its connector's system to exercise the retry layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def inject_into_sandbox(sandbox: Any, fault: Fault, *, path: str | None = None) -> None:
    """Serve a kit :class:`Fault` from a vendor sandbox (``subledger.core.sandbox``).

    For harnesses whose connector talks to a sandbox server: a 429 becomes the sandbox's
    ``rate_limit`` fault, anything else a ``server_error`` with that status; ``path`` limits
    the fault to matching requests (e.g. leave logins alone). ``fault.served`` counts the
    requests the sandbox actually failed.
    """
    from subledger.core.sandbox import Fault as SandboxFault

    if fault.status == 429:
        rule = SandboxFault(kind="rate_limit", path=path, times=fault.times, skip=fault.skip, retry_after=None,
                            headers=fault.headers())
    else:
        rule = SandboxFault(kind="server_error", path=path, status=fault.status or 500, times=fault.times,
                            skip=fault.skip, headers=fault.headers())
    sandbox.faults.add(rule)

    def count(exchange: Any) -> None:
        if exchange.fault is rule:
            fault.served += 1

    sandbox.observers.append(count)
