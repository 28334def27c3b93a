"""Alerts after a sync started from the CLI: the same dispatch the service runs.

A notifier failure is logged, never raised: an outage of Slack must not fail a sync.
"""

from __future__ import annotations

from sqlalchemy import Engine


def send_alerts(engine: Engine) -> None:
    """Queue and deliver the alerts new findings and failed syncs call for (never raises)."""
    from subledger.api.settings import load_service_settings
    from subledger.sync.notify import dispatch_safely

    try:
        settings = load_service_settings()
    except Exception:  # a bad service.yaml is reported by `subledger serve`, not by every sync
        return
    dispatch_safely(engine, settings)
