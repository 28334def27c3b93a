"""Error classes whose kind reaches the user: config, transient or system.

Every error carries a ``fix``: one sentence saying what the user should do.
"""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    """Who has to act on a failure."""

    CONFIG = "config"  # the user: bad credentials, bad file, bad setting
    TRANSIENT = "transient"  # nobody: retry later (rate limit, 5xx, network)
    SYSTEM = "system"  # us: a bug or an unexpected answer from a vendor


class SubledgerError(Exception):
    """Base of every error subledger raises on purpose."""

    kind: FailureKind = FailureKind.SYSTEM

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}. Fix: {self.fix}" if self.fix else self.message


class ConfigError(SubledgerError):
    """The user must change a setting, a credential or an input file."""

    kind = FailureKind.CONFIG


class TransientError(SubledgerError):
    """A temporary failure that a retry may clear."""

    kind = FailureKind.TRANSIENT

    def __init__(
        self, message: str, *, fix: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, fix=fix)
        self.retry_after = retry_after


class SystemFailure(SubledgerError):
    """An unexpected failure: a bug, or a vendor answer we do not understand."""

    kind = FailureKind.SYSTEM


def classify(exc: BaseException) -> FailureKind:
    """Return the failure kind of any exception; unknown exceptions are system failures."""
    if isinstance(exc, SubledgerError):
        return exc.kind
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return FailureKind.TRANSIENT
    return FailureKind.SYSTEM
