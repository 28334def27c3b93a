"""Notifications: which alerts to send, to which notifiers, once each, with retries and backoff.

Alerts are:

* ``threshold``: every ``thresholds`` finding (the rule raises one per threshold per
  period, so an account crossing 80% then 100% is two alerts, never more);
* ``finding``: any other open finding whose amount is at least ``notify_min_amount``;
* ``sync_failed``: a sync run that ended ``failed``.

Each (channel, alert key) is a :class:`~subledger.core.model.Notification` row, unique, so an
alert is queued once and, once a notifier accepted it, never sent again. Delivery happens
outside any sync: a sync never calls a notifier, so a Slack outage cannot block or fail a
sync; a failed delivery is retried on later passes with exponential backoff, up to
``MAX_ATTEMPTS``.

A notifier is a class registered through the ``register_notifiers`` hook: ``name``, a
constructor taking its config as keyword arguments, and ``send(alert: dict) -> None``,
raising on failure.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError
from subledger.core.model.finding import Finding
from subledger.core.model.notification import Notification
from subledger.core.model.run import SyncRun
from subledger.core.money import to_major
from subledger.core.secrets import redact
from subledger.sync.locks import LockHeld, held

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=30)
MAX_DELAY = timedelta(hours=1)
ACTIVE = ("open", "acknowledged")


class Notifier(Protocol):
    name: str

    def send(self, alert: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class NotifySettings:
    """What to announce, and where evidence links point."""

    public_url: str = "http://127.0.0.1:8000"
    min_amount: Decimal = Decimal(0)


def backoff(attempts: int) -> timedelta:
    """Delay before the next attempt after ``attempts`` failures: 30 s, 1 min, 2 min, ... capped at 1 h."""
    return min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)


def _finding_alert(f: Finding, base: str) -> dict[str, Any]:
    kind = "threshold" if f.rule == "thresholds" else "finding"
    amount = None
    if f.currency:
        amount = f"{to_major(f.amount_minor, f.currency)} {f.currency}"
    return {
        "key": f"finding:{f.id}",
        "kind": kind,
        "title": ("Threshold reached" if kind == "threshold" else f"New finding: {f.rule}"),
        "text": f.summary,
        "customer": f.customer,
        "amount": amount,
        "amount_minor": f.amount_minor,
        "currency": f.currency,
        "url": f"{base.rstrip('/')}/v1/findings/{f.id}",
        "evidence": f.evidence,
        "details": f.details,
    }


def collect_alerts(session: Session, settings: NotifySettings) -> list[dict[str, Any]]:
    """Every alert the store currently warrants (already-queued ones are filtered later)."""
    alerts = []
    for f in session.exec(select(Finding).where(Finding.status.in_(ACTIVE)).order_by(Finding.first_seen)).all():
        too_small = not f.currency or Decimal(to_major(abs(f.amount_minor), f.currency)) < settings.min_amount
        if f.rule != "thresholds" and too_small:
            continue
        alerts.append(_finding_alert(f, settings.public_url))
    for run in session.exec(select(SyncRun).where(SyncRun.status == "failed").order_by(SyncRun.started_at)).all():
        errors = "; ".join(str(e.get("error") or e) for e in run.errors[:3])
        alerts.append({
            "key": f"run:{run.id}",
            "kind": "sync_failed",
            "title": f"Sync {run.id} failed",
            "text": f"sync of {', '.join(run.connections) or 'all connections'} failed: {errors}"[:1500],
            "url": f"{settings.public_url.rstrip('/')}/v1/runs/{run.id}",
            "evidence": [{"system": "subledger", "object": "sync_run", "id": run.id}],
        })
    return alerts


def enqueue(engine: Engine, channels: list[str], alerts: list[dict[str, Any]], *, now: datetime) -> int:
    """Queue each alert once per channel; returns how many were new."""
    new = 0
    with Session(engine) as session, session.begin():
        known = set(session.exec(select(Notification.channel, Notification.alert_key)).all())
        for channel in channels:
            for alert in alerts:
                if (channel, alert["key"]) in known:
                    continue
                session.add(Notification(channel=channel, alert_key=alert["key"], kind=alert["kind"], payload=alert,
                                         next_attempt_at=now, created_at=now))
                new += 1
    return new


def deliver(engine: Engine, notifiers: Mapping[str, Notifier], *, now: datetime) -> dict[str, int]:
    """Send every due pending notification; record success, or the error and the next attempt."""
    counts = {"sent": 0, "retry": 0, "failed": 0}
    with Session(engine) as session:
        due = session.exec(
            select(Notification.id).where(Notification.status == "pending", Notification.next_attempt_at <= now)
            .order_by(Notification.id)
        ).all()
    for nid in due:
        with Session(engine) as session:
            row = session.get(Notification, nid)
            assert row is not None
            notifier = notifiers.get(row.channel)
            payload = dict(row.payload)
        if notifier is None:
            continue  # its config was removed: keep the row for when it comes back
        error = None
        try:
            notifier.send(payload)
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")[:2000]
        with Session(engine) as session, session.begin():
            row = session.get(Notification, nid)
            assert row is not None
            row.attempts += 1
            if error is None:
                row.status, row.sent_at, row.last_error = "sent", now, None
                counts["sent"] += 1
            else:
                row.last_error = error
                if row.attempts >= MAX_ATTEMPTS:
                    row.status = "failed"
                    counts["failed"] += 1
                    log.warning("notification %s to %s failed for good: %s", row.alert_key, row.channel, error)
                else:
                    row.next_attempt_at = now + backoff(row.attempts)
                    counts["retry"] += 1
                    log.info("notification %s to %s failed (attempt %d), retrying at %s: %s", row.alert_key,
                             row.channel, row.attempts, row.next_attempt_at.isoformat(), error)
            session.add(row)
    return counts


def build_notifiers(configs: list[dict[str, Any]]) -> dict[str, Notifier]:
    """Instantiate configured notifiers (``{notifier: slack, name: ..., ...}``) from the registry."""
    from subledger.core.plugins import notifier_classes

    classes = notifier_classes()
    out: dict[str, Notifier] = {}
    for i, cfg in enumerate(configs):
        cfg = dict(cfg)
        kind = cfg.pop("notifier", None)
        name = cfg.pop("name", None) or kind
        if kind not in classes:
            raise ConfigError(
                f"notifiers[{i}]: no notifier named {kind!r} is registered",
                fix=f"use one of: {', '.join(sorted(classes)) or 'none (install subledger[slack])'}",
            )
        out[str(name)] = classes[kind](**cfg)
    return out


def dispatch(
    engine: Engine,
    notifiers: Mapping[str, Notifier],
    settings: NotifySettings,
    *,
    now: datetime | None = None,
) -> dict[str, int]:
    """Queue new alerts and deliver what is due, under a lease so two processes never double-send."""
    now = now or utcnow()
    if not notifiers:
        return {"queued": 0, "sent": 0, "retry": 0, "failed": 0}
    with held(engine, "notify", ttl=timedelta(minutes=10)):
        with Session(engine) as session:
            alerts = collect_alerts(session, settings)
        queued = enqueue(engine, sorted(notifiers), alerts, now=now)
        return {"queued": queued, **deliver(engine, notifiers, now=now)}


def dispatch_safely(engine: Engine, service_settings: Any) -> None:
    """:func:`dispatch` with the service's settings, logging instead of raising (never blocks a sync)."""
    try:
        notifiers = build_notifiers(list(getattr(service_settings, "notifiers", [])))
        settings = NotifySettings(
            public_url=service_settings.public_url, min_amount=Decimal(service_settings.notify_min_amount)
        )
        dispatch(engine, notifiers, settings)
    except LockHeld:
        log.info("notifications are being sent by another process")
    except Exception as exc:
        log.warning("sending notifications failed: %s", redact(str(exc)))
