"""Hook specifications: the few, stable, keyword-only hooks a plugin can implement.

Hooks *register* things; behaviour lives on the registered classes. Every hook here is
documented in ``docs/plugin-hooks.md`` (a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "subledger"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_connectors(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`~subledger.core.connector.Connector` subclasses.

    Args:
        register: call it once per connector class, e.g. ``register(StripeConnector)``.
    """


@hookspec
def register_rules(register: Callable[[Any], None]) -> None:
    """Register reconciliation rules (classes or instances the sync engine runs).

    Args:
        register: call it once per rule.
    """


@hookspec
def register_notifiers(register: Callable[[type[Any]], None]) -> None:
    """Register notifier classes (Slack, signed webhook, ...) that deliver alerts.

    Args:
        register: call it once per notifier class.
    """


@hookspec
def register_sandboxes(register: Callable[[type[Any]], None]) -> None:
    """Register vendor sandbox server classes (``subledger sandbox serve NAME``).

    Args:
        register: call it once per sandbox class.
    """
