"""``subledger sync``: pull, resolve identities, reconcile, plan, apply, and record the run."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError, classify
from subledger.core.model.run import SyncRun
from subledger.core.model.sync_state import Connection
from subledger.sync import locks
from subledger.sync.apply import ApplyReport, apply_actions
from subledger.sync.contracts import NotCovered
from subledger.sync.findings import FindingDelta, record_findings
from subledger.sync.identity import resolve_identities
from subledger.sync.locks import close_abandoned_runs, hold, process_owner
from subledger.sync.plan import PlanDelta, plan_actions
from subledger.sync.pull import PullReport, pull
from subledger.sync.rules.base import ROLES, ActionDraft, ConnectionInfo, Drift, Rule, RuleContext
from subledger.sync.settings import SyncSettings, load_settings

log = logging.getLogger(__name__)
RECONCILE_LOCK = "sync:reconcile"


@dataclass
class RuleNotCovered:
    """A rule that was not judged, because a connection it reads was not read."""

    rule: str
    connections: dict[str, str]  # connection -> why it cannot be judged from

    def text(self) -> str:
        why = "; ".join(f"{c} {reason}" for c, reason in sorted(self.connections.items()))
        return f"not covered: rule {self.rule} was not judged ({why})"

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "connections": dict(self.connections), "message": self.text()}


@dataclass
class ReconcileReport:
    """What reconciling the store did."""

    findings: dict[str, FindingDelta] = field(default_factory=dict)
    plan: PlanDelta = field(default_factory=PlanDelta)
    identity_linked: int = 0
    not_covered: list[NotCovered] = field(default_factory=list)
    rules_not_covered: list[RuleNotCovered] = field(default_factory=list)

    @property
    def opened(self) -> int:
        return sum(d.opened + d.reopened for d in self.findings.values())

    @property
    def resolved(self) -> int:
        return sum(d.resolved for d in self.findings.values())


def connection_infos(session: Session, settings: SyncSettings) -> list[ConnectionInfo]:
    """Every enabled connection with its roles."""
    rows = session.exec(select(Connection).where(Connection.enabled).order_by(Connection.name)).all()
    return [ConnectionInfo(c.name, c.plugin, list(settings.roles_of(c.name, c.plugin)),
                           read_completely=c.last_complete_pull_at is not None) for c in rows]


def load_rules() -> list[Rule]:
    """Every registered rule, instantiated, in name order."""
    from subledger.core.plugins import rule_classes

    rules = []
    for _name, rule in sorted(rule_classes().items()):
        rules.append(rule() if isinstance(rule, type) else rule)
    return rules


def master_system(settings: SyncSettings, infos: list[ConnectionInfo]) -> str | list[str] | None:
    """The connection (or connections) whose customer ids are canonical."""
    if settings.identity.master:
        return settings.identity.master
    crm = [c.name for c in infos if "crm" in c.roles]
    return crm[0] if crm else (infos[0].name if infos else None)


def material(drift: Drift, settings: SyncSettings) -> bool:
    """True when a drift becomes a finding: a fact, an amount above the currency's tolerance,
    or a drift that is not about money."""
    return drift.factual or not drift.currency or abs(drift.amount_minor) > settings.tolerance_minor(drift.currency)


def reconcile(
    engine: Engine,
    *,
    settings: SyncSettings,
    actor: str,
    now: datetime | None = None,
    rules: list[Rule] | None = None,
    unread: dict[str, str] | None = None,
) -> ReconcileReport:
    """Resolve identities, run every rule, update findings and plan actions, in one transaction.

    A rule judges nothing from a connection that was not read: one whose pull failed in
    this sync (``unread``: connection -> what happened) or that was never read completely.
    Such a rule is reported not covered; its findings and actions stay as they are.
    """
    now = now or utcnow()
    report = ReconcileReport()
    rules = load_rules() if rules is None else rules
    with Session(engine, expire_on_commit=False, autoflush=False) as session, session.begin():
        infos = connection_infos(session, settings)
        issues = []
        master = master_system(settings, infos)
        if master is not None:
            identity = resolve_identities(
                session,
                master=master,
                match_on=list(settings.identity.match_on),
                actor=actor,
                link_fields=settings.identity.link_field,
            )
            report.identity_linked, issues = identity.linked, identity.issues
            session.flush()
        ctx = RuleContext(session=session, settings=settings, connections=infos, now=now, identity_issues=issues)
        proposals: dict[tuple[str, str], list[ActionDraft]] = {}
        kept: set[str] = set()
        blocked = {c.name: "has never been read completely: run `subledger sync " + c.name + "`"
                   for c in infos if not c.read_completely}
        blocked.update({name: f"failed to pull in this sync ({why}); fix it and sync again"
                        for name, why in (unread or {}).items()})
        for rule in rules:
            inputs = {c.name for c in infos if set(c.roles) & set(getattr(rule, "reads", ROLES))}
            if inputs & set(blocked):
                unread_inputs = {c: blocked[c] for c in sorted(inputs & set(blocked))}
                report.rules_not_covered.append(RuleNotCovered(rule.name, unread_inputs))
                continue
            drifts = [d for d in rule.evaluate(ctx) if material(d, settings)]
            kept.update(a for d in drifts for a in d.keeps)
            report.findings[rule.name] = record_findings(session, rule.name, drifts, now=now, actor=actor)
            for d in drifts:
                if d.actions:
                    proposals[(rule.name, d.key)] = d.actions
            session.flush()
        judged = {r.name for r in rules} - {n.rule for n in report.rules_not_covered}
        report.plan = plan_actions(session, proposals, settings=settings, now=now, actor=actor, rules=judged,
                                   keep=kept)
        report.not_covered = ctx.read_model().not_covered() if ctx.read_model().roles.contract_systems else []
    return report


@dataclass
class SyncReport:
    """Everything one sync did."""

    run: SyncRun
    pulls: list[PullReport] = field(default_factory=list)
    reconcile: ReconcileReport | None = None
    applied: ApplyReport | None = None


def sync(
    engine: Engine,
    connections: list[str] | None = None,
    *,
    trigger: str = "user",
    settings: SyncSettings | None = None,
    apply: bool = True,
    rules: list[Rule] | None = None,
    now: datetime | None = None,
) -> SyncReport:
    """Pull the connections (default: all enabled), reconcile, plan, and apply approved actions.

    ``now`` is the instant reconciliation judges periods by (default: the current time);
    a replay or a demo of a fixed date passes it.

    Holds a lease per connection (``sync:<name>``) and one for reconciliation, so two
    processes never sync the same connection at once. The leases are renewed while it
    runs and fence it: a sync whose lease was taken over stops before its next write
    (:class:`~subledger.sync.locks.LeaseLost`). Runs left ``running`` by a process that
    stopped are marked failed first.
    """
    settings = settings or load_settings()
    with Session(engine) as session:
        known = {c.name for c in session.exec(select(Connection).where(Connection.enabled)).all()}
    names = sorted(connections) if connections else sorted(known)
    for name in names:
        if name not in known:
            raise ConfigError(f"no enabled connection named {name!r}", fix="see `subledger connections list`")
    owner = process_owner()
    # Leases first: a sync that finds its connection busy records nothing.
    leases = [*(f"sync:{name}" for name in names), RECONCILE_LOCK]
    with hold(engine, leases, owner, ttl=locks.LEASE_TTL) as lease:
        close_abandoned_runs(engine, reconcile_lease=RECONCILE_LOCK, holding=owner)
        run = SyncRun(id="run_" + uuid.uuid4().hex[:20], trigger=trigger, connections=names, owner=owner)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            session.add(run)
        report = SyncReport(run=run)
        try:
            run_stages(
                engine, names, run, report, settings=settings, apply=apply, rules=rules, trigger=trigger, now=now,
                fence=lease.check,
            )
            run.status = "failed" if run.errors else "succeeded"  # a failed pull or write: cron must see it
        except BaseException as exc:  # Ctrl-C too: a run never stays "running" after its process stops it
            run.status = "failed"
            run.errors.append({"stage": "sync", "kind": str(classify(exc)), "error": _safe(exc) or type(exc).__name__})
            raise
        finally:
            run.finished_at = utcnow()
            with Session(engine) as session, session.begin():
                session.merge(run)
    return report


def run_stages(
    engine: Engine,
    names: list[str],
    run: SyncRun,
    report: SyncReport,
    *,
    settings: SyncSettings,
    apply: bool,
    rules: list[Rule] | None,
    trigger: str,
    now: datetime | None = None,
    fence: Callable[[], None] | None = None,
) -> None:
    """Pull, reconcile and apply for a run whose leases are held and whose row is recorded.

    :func:`sync` calls it; the service calls it too, after taking the leases and answering
    the caller with the run id. ``fence`` is called before each stage that writes and
    before each action is applied; it raises when the run's lease was taken over.
    """
    fence = fence or _unfenced
    unread: dict[str, str] = {}
    for name in names:
        fence()
        try:
            p = pull(engine, name)
        except Exception as exc:
            run.errors.append({"connection": name, "stage": "pull", "kind": str(classify(exc)), "error": _safe(exc)})
            unread[name] = _safe(exc)
            continue
        report.pulls.append(p)
        run.records_read += sum(s.records for s in p.streams)
        run.records_written += sum(s.changed + s.usage_inserted for s in p.streams)
        for s in p.failed:
            run.errors.append({"connection": name, "stream": s.stream, "stage": "pull", "kind": s.kind,
                               "error": s.error, "fix": s.fix})
            unread[name] = f"stream {s.stream}: {s.error}"
    fence()
    report.reconcile = reconcile(engine, settings=settings, actor=trigger, rules=rules, now=now, unread=unread)
    run.findings_opened = report.reconcile.opened
    run.findings_resolved = report.reconcile.resolved
    run.actions_planned = report.reconcile.plan.planned
    if unread:
        # Nothing is written on the strength of a sync that could not read everything.
        run.errors.append({"stage": "apply", "error": "nothing applied: a pull failed",
                           "fix": "fix the failed connection and sync again"})
        return
    if apply:
        report.applied = apply_actions(engine, actor=trigger, fence=fence)
        run.actions_applied = len(report.applied.done)
        for aid in report.applied.failed + report.applied.conflicts:
            run.errors.append({"stage": "apply", "action": aid})


def _unfenced() -> None:
    return None


def _safe(exc: BaseException) -> str:
    from subledger.core.secrets import redact

    return redact(str(exc))[:2000]
