"""The kit's own tests run inner pytest sessions with ``pytester``."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Loaded here rather than with ``pytest_plugins``, which pytest only allows in the
    # top-level conftest; loading it twice is harmless (checked first).
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
