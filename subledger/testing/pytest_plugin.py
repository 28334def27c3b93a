"""subledger's pytest plugin, loaded automatically (``pytest11`` entry point).

Fixtures:

* ``fake_clock``: a :class:`~subledger.testing.FakeClock` whose retry policy is in force
  for the test, so retries and ``Retry-After`` waits take no time.
* ``memory_store``: the in-memory connector registered as ``memory`` and an empty store
  called ``default`` (``memory_store.seed_example()`` fills it).
* ``isolated_plugins``: a fresh process-wide plugin host, with the plugin environment
  variables cleared, reset again afterwards.

It also prints, at the end of the run, the conformance checks a harness declared not
applicable, with the reasons.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from subledger.testing.clock import FakeClock
    from subledger.testing.memory import MemoryStore


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    """A fake clock whose retry policy is the default for the test."""
    from subledger.core.http import use_retry_policy
    from subledger.testing.clock import FakeClock

    clock = FakeClock()
    with use_retry_policy(clock.policy()):
        yield clock


@pytest.fixture
def memory_store() -> Iterator[MemoryStore]:
    """The ``memory`` connector, registered, and its empty ``default`` store."""
    from subledger.testing import memory

    memory.reset_memory_stores()
    memory.register_memory_connector()
    try:
        yield memory.memory_store("default")
    finally:
        memory.unregister_memory_connector()
        memory.reset_memory_stores()


@pytest.fixture
def isolated_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh plugin host for the test (no allow/block lists from the environment)."""
    from subledger.core import plugins

    monkeypatch.delenv(plugins.LOAD_PLUGINS_ENV, raising=False)
    monkeypatch.delenv(plugins.BLOCK_PLUGINS_ENV, raising=False)
    plugins.reset_plugins()
    try:
        yield
    finally:
        plugins.reset_plugins()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """List the conformance checks declared not applicable, so they are never silent."""
    from subledger.testing.conformance import NOT_APPLICABLE

    lines = config.stash.get(NOT_APPLICABLE, [])
    if lines:
        terminalreporter.section("subledger conformance: not applicable")
        for line in lines:
            terminalreporter.write_line(line)
