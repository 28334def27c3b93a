"""Testing support for subledger connectors: the conformance kit and an in-memory connector.

* :func:`conformance_suite` / :class:`ConformanceSuite`: the checks every connector passes;
  a connector adopts them with one line (see ``docs/conformance-kit.md``).
* :class:`ConnectorHarness`: what a connector gives the kit.
* :class:`FakeClock` and :class:`Fault`: retries under a fake clock, injected failures.
* :mod:`subledger.testing.memory`: an in-memory, writable connector for the engine's tests.

The pytest plugin (:mod:`subledger.testing.pytest_plugin`) loads automatically wherever
subledger is installed and offers the ``fake_clock``, ``memory_store`` and
``isolated_plugins`` fixtures.
"""

from subledger.testing.clock import FakeClock
from subledger.testing.conformance import ConformanceSuite, conformance_suite
from subledger.testing.faults import Fault
from subledger.testing.harness import ConnectorHarness

__all__ = ["ConformanceSuite", "ConnectorHarness", "FakeClock", "Fault", "conformance_suite"]
