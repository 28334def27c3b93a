"""The HubSpot plugin: a CRM connector on the official ``hubspot-api-client`` SDK, and a sandbox.

Registered through the ``subledger`` entry-point group like any third-party plugin. The
sandbox needs no SDK; the connector imports it only when it talks to HubSpot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subledger.core.hookspecs import hookimpl


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.hubspot.connector import HubSpotConnector

    register(HubSpotConnector)


@hookimpl
def register_sandboxes(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.hubspot.sandbox import HubSpotSandbox

    register(HubSpotSandbox)
