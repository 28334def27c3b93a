"""The built-in ``files`` connector plugin: the embedded default source.

Registered through the ``subledger`` entry-point group exactly as a third-party plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subledger.core.hookspecs import hookimpl
from subledger.plugins.files.connector import FilesConfig, FilesConnector

__all__ = ["FilesConfig", "FilesConnector", "register_connectors"]


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register the files connector."""
    register(FilesConnector)
