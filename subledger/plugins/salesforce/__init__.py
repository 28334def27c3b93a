"""The Salesforce plugin: a CRM connector on ``simple-salesforce``, and a Salesforce sandbox.

Registered through the ``subledger`` entry-point group like any third-party plugin. The
sandbox needs no SDK; the connector imports ``simple-salesforce`` only when it talks to
an org. See ``docs/connectors/salesforce.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subledger.core.hookspecs import hookimpl


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.salesforce.connector import SalesforceConnector

    register(SalesforceConnector)


@hookimpl
def register_sandboxes(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.salesforce.sandbox import SalesforceSandbox

    register(SalesforceSandbox)
