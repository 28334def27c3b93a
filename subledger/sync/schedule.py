"""Schedules: when a connection's next sync is due, and how a failed one is retried.

A schedule fires either every fixed interval (``--every 15m``) or on a cron expression
(``--cron "*/15 * * * *"``, evaluated in UTC unless it starts with ``CRON_TZ=<zone>``, the
convention of cronie and Kubernetes CronJobs). Interval schedules are anchored to the
moment they were created, so a slow sync or a retry never shifts the cadence; a run that
was missed while no worker was up is not replayed, because one incremental sync catches
up on everything.

A failed sync is retried after an exponentially growing delay (30s, 1m, 2m, ...), never
longer than the schedule's own period nor than an hour, so a broken connection is
neither hammered nor forgotten. Everything here is pure except the three functions at the
bottom that change Schedule rows, each in the caller's transaction and audited.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError
from sqlmodel import Session, select

from subledger.core.errors import ConfigError
from subledger.core.model.schedule import Schedule
from subledger.core.model.sync_state import Connection
from subledger.sync.audit import audit

ALL = "all"
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_CRON_TZ = re.compile(r"^\s*CRON_TZ=(\S+)\s+(.*)$")
_SCHEDULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


# -- durations ------------------------------------------------------------------------------


def parse_duration(text: str, *, option: str = "--every") -> timedelta:
    """Parse ``30s``, ``15m``, ``1h``, ``1d``, ``2w`` or a sum like ``1h30m``.

    Raises:
        ConfigError: naming ``option`` and showing the accepted form.
    """
    compact = text.strip().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ConfigError(
            f"{option} {text!r} is not a duration",
            fix="write a number and a unit (s, m, h, d or w), e.g. 30s, 15m, 1h, 1d or 1h30m",
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"{option} {text!r} is zero", fix="give a positive duration such as 15m")
    return timedelta(seconds=seconds)


def format_duration(span: timedelta) -> str:
    """The shortest exact ``1h30m`` form of ``span`` (``0s`` for nothing, fractions as ``1.5s``)."""
    total = span.total_seconds()
    if total < 0:
        return "-" + format_duration(-span)
    whole = int(total)
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        count, whole = divmod(whole, _UNITS[unit])
        if count:
            out.append(f"{count}{unit}")
    fraction = round(total - int(total), 3)
    if fraction:
        seconds = (int(total) % 60) + fraction
        out = [p for p in out if not p.endswith("s")] + [f"{seconds:g}s"]
    return "".join(out) or "0s"


# -- cron -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CronSpec:
    """A validated cron expression and the zone it is read in."""

    expression: str
    zone: str = "UTC"

    @property
    def stored(self) -> str:
        """The form kept in ``Schedule.cron``: the bare expression, or ``CRON_TZ=<zone> <expr>``."""
        return self.expression if self.zone == "UTC" else f"CRON_TZ={self.zone} {self.expression}"

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after ``moment``, in UTC."""
        local = moment.astimezone(ZoneInfo(self.zone))
        try:
            fired = croniter(self.expression, local).get_next(datetime)
        except CroniterError as exc:
            raise ConfigError(
                f"cron {self.stored!r} never fires after {moment.isoformat()}",
                fix="use a date that exists, e.g. day 28 instead of 30 for February",
            ) from exc
        return fired.astimezone(UTC)


def parse_cron(text: str, *, zone: str | None = None) -> CronSpec:
    """Validate a five-field cron expression (or ``@hourly``-style alias), optionally in a zone.

    The zone comes from ``zone`` or a ``CRON_TZ=Europe/Paris`` prefix. Six- and seven-field
    forms are refused: croniter reads the sixth field as seconds while Quartz reads the
    first one that way, so they mean different things to different readers.

    Raises:
        ConfigError: for a malformed expression, an unknown zone or one that never fires.
    """
    expression = " ".join(text.split())
    prefixed = _CRON_TZ.match(expression)
    if prefixed:
        if zone and zone != prefixed.group(1):
            raise ConfigError(
                f"--cron says CRON_TZ={prefixed.group(1)} but --tz says {zone}", fix="give the zone once"
            )
        zone, expression = prefixed.group(1), prefixed.group(2)
    zone = zone or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"time zone {zone!r} is unknown", fix="use an IANA zone name such as Europe/Paris or UTC"
        ) from exc
    fields = expression.split()
    if expression.lower() not in _CRON_ALIASES and len(fields) != 5:
        raise ConfigError(
            f"cron {text!r} has {len(fields)} field(s), not 5",
            fix="write minute hour day-of-month month day-of-week, e.g. '*/15 * * * *' or '0 6 * * 1-5'",
        )
    if not croniter.is_valid(expression):
        raise ConfigError(
            f"cron {text!r} is not a valid cron expression",
            fix="check each field's range (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)",
        )
    spec = CronSpec(expression.lower() if expression.startswith("@") else expression, zone)
    spec.next_after(datetime.now(UTC))  # refuses "0 0 30 2 *" now rather than in the worker
    return spec


def cron_of(schedule: Schedule) -> CronSpec:
    """The cron of a cron schedule, as stored."""
    if schedule.cron is None:
        raise ValueError(f"schedule {schedule.id} is an interval schedule")
    prefixed = _CRON_TZ.match(schedule.cron)
    if prefixed:
        return CronSpec(prefixed.group(2), prefixed.group(1))
    return CronSpec(schedule.cron)


# -- when a schedule runs -------------------------------------------------------------------


def next_interval_run(anchor: datetime, every: timedelta, after: datetime) -> datetime:
    """The first of ``anchor + k * every`` (k >= 0) strictly after ``after``."""
    if after < anchor:
        return anchor
    return anchor + ((after - anchor) // every + 1) * every


def next_run(schedule: Schedule, after: datetime) -> datetime:
    """When ``schedule`` should next fire after ``after`` (a regular run, not a retry)."""
    if schedule.every_seconds:
        return next_interval_run(schedule.created_at, timedelta(seconds=schedule.every_seconds), after)
    return cron_of(schedule).next_after(after)


def period(schedule: Schedule, at: datetime) -> timedelta:
    """The schedule's period around ``at``: its interval, or the gap between its next two cron firings."""
    if schedule.every_seconds:
        return timedelta(seconds=schedule.every_seconds)
    cron = cron_of(schedule)
    first = cron.next_after(at)
    return cron.next_after(first) - first


def retry_delay(
    failures: int, *, period: timedelta, base: timedelta = RETRY_BASE, cap: timedelta = RETRY_CAP
) -> timedelta:
    """How long to wait after the ``failures``-th failure in a row: ``base * 2**(failures-1)``.

    Capped at ``cap`` and at ``period``, so a schedule is never retried less often than it
    would run anyway. For example, with a 15 minute period: 30s, 1m, 2m, 4m, 8m, 15m, 15m...
    """
    if failures < 1:
        raise ValueError("retry_delay is for a schedule that has failed at least once")
    ceiling = min(cap, period)
    # 2**20 * 30s is a year: past that the cap has long won, and the product would overflow.
    return min(base * 2 ** min(failures - 1, 20), ceiling)


def record_success(schedule: Schedule, *, started: datetime, finished: datetime) -> None:
    """Mark a run that succeeded: failures reset, next run back on the regular cadence."""
    schedule.last_run_at = started
    schedule.last_status = "succeeded"
    schedule.consecutive_failures = 0
    schedule.next_run_at = next_run(schedule, finished)


def record_failure(schedule: Schedule, *, started: datetime, finished: datetime) -> timedelta:
    """Mark a run that failed and push the next attempt back by :func:`retry_delay`; return the delay."""
    schedule.last_run_at = started
    schedule.last_status = "failed"
    schedule.consecutive_failures += 1
    delay = retry_delay(schedule.consecutive_failures, period=period(schedule, finished))
    schedule.next_run_at = finished + delay
    return delay


def describe(schedule: Schedule) -> str:
    """``every 15m`` or ``cron */15 * * * *`` (with its zone, if not UTC)."""
    if schedule.every_seconds:
        return f"every {format_duration(timedelta(seconds=schedule.every_seconds))}"
    return f"cron {schedule.cron}"


# -- the Schedule rows ----------------------------------------------------------------------


def new_schedule(
    target: str,
    *,
    every: timedelta | None = None,
    cron: CronSpec | None = None,
    now: datetime,
    schedule_id: str | None = None,
) -> Schedule:
    """Build (not store) a schedule. Interval schedules are due at once; cron ones at their next firing.

    The default id is readable and derived from the content (``stripe-every-15m``,
    ``all-cron-3f9a1c``), so adding the same schedule twice finds the first one.
    """
    if (every is None) == (cron is None):
        raise ConfigError("a schedule needs exactly one of --every and --cron", fix="pass one of them")
    if schedule_id is not None and not _SCHEDULE_ID.match(schedule_id):
        raise ConfigError(
            f"--id {schedule_id!r} is not a valid schedule id",
            fix="use letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    if every is not None:
        if every < timedelta(seconds=1) or every % timedelta(seconds=1):
            raise ConfigError(
                f"--every {format_duration(every)} is not a whole number of seconds",
                fix="use whole seconds, e.g. 30s or 15m",
            )
        seconds = int(every.total_seconds())
        row = Schedule(
            id=schedule_id or f"{target}-every-{format_duration(every)}",
            target=target,
            every_seconds=seconds,
            next_run_at=now,
            created_at=now,
        )
    else:
        assert cron is not None
        digest = hashlib.sha256(cron.stored.encode()).hexdigest()[:6]
        row = Schedule(
            id=schedule_id or f"{target}-cron-{digest}",
            target=target,
            cron=cron.stored,
            next_run_at=cron.next_after(now),
            created_at=now,
        )
    if len(row.id) > 64:
        raise ConfigError(f"schedule id {row.id!r} is longer than 64 characters", fix="pass a shorter --id")
    return row


def add_schedule(session: Session, schedule: Schedule, *, actor: str) -> tuple[Schedule, bool]:
    """Store ``schedule`` unless an identical one exists; return the stored row and whether it is new.

    Raises:
        ConfigError: the target is not a connection, or the id is taken by a different schedule.
    """
    if schedule.target != ALL and session.get(Connection, schedule.target) is None:
        raise ConfigError(
            f"there is no connection named {schedule.target!r}",
            fix="add it with `subledger connections add`, see `subledger connections list`, or use 'all'",
        )
    existing = session.get(Schedule, schedule.id)
    if existing is not None:
        same = (existing.target, existing.every_seconds, existing.cron) == (
            schedule.target,
            schedule.every_seconds,
            schedule.cron,
        )
        if same:
            return existing, False
        raise ConfigError(
            f"schedule {schedule.id!r} already exists ({existing.target}, {describe(existing)})",
            fix=f"remove it first with `subledger schedule remove {schedule.id}` or pass another --id",
        )
    session.add(schedule)
    audit(
        session,
        actor=actor,
        verb="schedule.add",
        object_type="schedule",
        object_id=schedule.id,
        target=schedule.target,
        every_seconds=schedule.every_seconds,
        cron=schedule.cron,
    )
    return schedule, True


def get_schedule(session: Session, schedule_id: str) -> Schedule:
    """The schedule ``schedule_id``, or a ConfigError that lists the known ids."""
    row = session.get(Schedule, schedule_id)
    if row is None:
        known = session.exec(select(Schedule.id).order_by(Schedule.id)).all()
        listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise ConfigError(
            f"there is no schedule {schedule_id!r}" + (f" (there are: {listed})" if known else ""),
            fix="see `subledger schedule list`",
        )
    return row


def remove_schedule(session: Session, schedule_id: str, *, actor: str, reason: str = "") -> Schedule:
    """Delete a schedule (its past runs stay in the history)."""
    row = get_schedule(session, schedule_id)
    session.delete(row)
    audit(
        session, actor=actor, verb="schedule.remove", object_type="schedule", object_id=row.id, reason=reason
    )
    return row


def set_enabled(session: Session, schedule_id: str, enabled: bool, *, actor: str, now: datetime) -> Schedule:
    """Pause or resume a schedule. Resuming clears its failures; an overdue interval schedule runs at once."""
    row = get_schedule(session, schedule_id)
    if row.enabled == enabled:
        return row
    row.enabled = enabled
    if enabled:
        row.consecutive_failures = 0
        if row.cron and row.next_run_at <= now:
            # A cron slot missed while paused is skipped: "0 6 * * *" resumed at noon waits for 6am.
            row.next_run_at = next_run(row, now)
    session.add(row)
    audit(
        session,
        actor=actor,
        verb="schedule.resume" if enabled else "schedule.pause",
        object_type="schedule",
        object_id=row.id,
    )
    return row
