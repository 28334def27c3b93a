"""The Stripe plugin: a connector on the official ``stripe`` SDK, and a Stripe sandbox.

Registered through the ``subledger`` entry-point group like any third-party plugin. The
sandbox needs no SDK; the connector imports the SDK only when it talks to Stripe, so
``subledger plugins`` lists this plugin even where ``subledger[stripe]`` is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subledger.core.hookspecs import hookimpl


@hookimpl
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.stripe.connector import StripeConnector

    register(StripeConnector)


@hookimpl
def register_sandboxes(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.stripe.sandbox import StripeSandbox

    register(StripeSandbox)
