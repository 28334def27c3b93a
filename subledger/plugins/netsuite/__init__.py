"""The NetSuite plugin: the general-ledger connector and a NetSuite sandbox.

Registered through the ``subledger`` entry-point group like any third-party plugin
(``netsuite = "subledger.plugins.netsuite"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subledger.core.hookspecs import hookimpl


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.netsuite.connector import NetSuiteConnector

    register(NetSuiteConnector)


@hookimpl
def register_sandboxes(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.netsuite.sandbox import NetSuiteSandbox

    register(NetSuiteSandbox)
