"""The kit's pytest plugin loads wherever subledger is installed, and reports the checks a
harness declared not applicable."""

from __future__ import annotations

import importlib.metadata

import hypothesis  # noqa: F401  (imported here so inner sessions do not re-import it each time)
import pytest


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert declared.get("subledger") == "subledger.testing.pytest_plugin"


def test_its_fixtures_are_available_without_any_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_uses_fixtures="""
        from subledger.core.http import retry_call
        from subledger.core.plugins import get_connector_class
        from subledger.testing import Fault
        from subledger.testing.memory import MemoryConfig


        def test_memory_connector_with_a_fake_clock(memory_store, fake_clock):
            memory_store.seed_example()
            memory_store.inject(Fault(status=503, times=2))
            connector = get_connector_class("memory")(MemoryConfig(api_key=memory_store.api_key))

            assert connector.check().ok
            assert len(fake_clock.sleeps) == 2


        def test_isolated_plugins_start_from_scratch(isolated_plugins):
            import subledger.core.plugins as plugins
            assert plugins._host is None
    """)

    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2)


def test_checks_declared_not_applicable_are_listed_with_their_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_kit="""
        from subledger.testing import conformance_suite
        from subledger.testing.memory import MemoryHarness


        class LocalHarness(MemoryHarness):
            retries_not_applicable = "reads an in-process store; no network I/O"


        TestKit = conformance_suite(LocalHarness)
    """)

    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")

    result.assert_outcomes(passed=13, skipped=6)
    result.stdout.fnmatch_lines([
        "*subledger conformance: not applicable*",
        "test_kit.py::TestKit::test_retry_429_honours_retry_after[[]seconds[]]: "
        "reads an in-process store; no network I/O",
        "SKIPPED *not applicable: reads an in-process store; no network I/O",
    ])
