"""Alerts after a sync started from the CLI: the same dispatch the service runs.

A notifier failure is logged, never raised: an outage of Slack must not fail a sync.
"""

from __future__ import annotations

from sqlalchemy import Engine


def send_alerts(engine: Engine) -> None:
    """Queue and deliver the alerts new findings and failed syncs call for (never raises)."""
    from subledger.api.settings import load_service_settings
    from subledger.commands._output import err_console
    from subledger.core.errors import ConfigError
    from subledger.sync.notify import dispatch_safely

    try:
        settings = load_service_settings()
    except ConfigError as exc:
        # The sync itself succeeded; say loudly that its alerts did not go out, and why.
        err_console.print(f"[yellow]warning:[/] no alerts sent: {exc}", highlight=False)
        return
    dispatch_safely(engine, settings)
