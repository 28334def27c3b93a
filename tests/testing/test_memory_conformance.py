"""The in-memory test connector passes the conformance kit: the kit's one-line adoption."""

from subledger.testing import conformance_suite
from subledger.testing.memory import MemoryHarness

TestMemoryConnector = conformance_suite(MemoryHarness)
