"""``subledger sync``, findings, ``plan``/``approve``/``apply``, ``link``/``unlink``, ``audit``."""

from __future__ import annotations

import getpass
from collections import defaultdict
from typing import Any

import typer
from rich.table import Table
from sqlmodel import Session, select

from subledger.commands._alerts import send_alerts
from subledger.commands._as_of import as_of_option, parse_as_of
from subledger.commands._output import console, print_json
from subledger.commands._store import open_store
from subledger.core.db_types import utcnow
from subledger.core.model.action import Action
from subledger.core.model.audit import AuditEntry
from subledger.core.model.finding import Finding
from subledger.core.money import to_major

findings_app = typer.Typer(
    help="Drifts found by reconciliation, and what was decided about them.", no_args_is_help=True
)


def actor() -> str:
    """Who is running this command (audited)."""
    try:
        return f"user:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "user:unknown"


def money(minor: int, currency: str | None) -> str:
    return f"{to_major(minor, currency)} {currency}" if currency else "-"


def sync_command(
    connections: list[str] = typer.Argument(None, help="Connections to pull (default: all enabled)."),
    no_apply: bool = typer.Option(False, "--no-apply", help="Plan, but apply nothing (not even auto-approved)."),
    as_of: str | None = as_of_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Pull, resolve identities, reconcile, plan write-back and apply what the policy approves.

    Billing periods whose usage was not read are not judged: they are listed as not covered.
    """
    from subledger.sync.engine import sync

    engine = open_store()
    judged_at = parse_as_of(as_of) if as_of else None
    with console.status("syncing...", spinner="dots") if not json_out else _nullcontext():
        report = sync(engine, connections or None, trigger=actor(), apply=not no_apply, now=judged_at)
    send_alerts(engine)
    run = report.run
    data = {
        "run": run.id,
        "status": run.status,
        "records_read": run.records_read,
        "records_written": run.records_written,
        "findings_opened": run.findings_opened,
        "findings_resolved": run.findings_resolved,
        "actions_planned": run.actions_planned,
        "actions_applied": run.actions_applied,
        "errors": run.errors,
        "not_covered": [gap.to_json() for gap in (report.reconcile.not_covered if report.reconcile else [])],
        "rules_not_covered": [r.to_json() for r in (report.reconcile.rules_not_covered if report.reconcile else [])],
    }
    if json_out:
        print_json(data)
        return
    console.print(
        f"sync {run.id}: {run.status}; read {run.records_read:,} records; "
        f"findings +{run.findings_opened} opened, {run.findings_resolved} resolved; "
        f"actions {run.actions_planned} planned, {run.actions_applied} applied"
    )
    for gap in report.reconcile.not_covered if report.reconcile else []:
        console.print(f"[yellow]{gap.text()}[/]", highlight=False)
    for rule in report.reconcile.rules_not_covered if report.reconcile else []:
        console.print(f"[yellow]{rule.text()}[/]", highlight=False)
    for err in run.errors:
        console.print(f"[red]error[/] {err}")
    if run.status != "succeeded":
        raise typer.Exit(1)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


@findings_app.command("list")
def findings_list(
    status: list[str] = typer.Option(["open", "acknowledged"], "--status", help="Statuses to show."),
    rule: str | None = typer.Option(None, "--rule", help="Only this rule."),
    customer: str | None = typer.Option(None, "--customer", help="Only this canonical customer."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List findings (default: open and acknowledged), largest amount first."""
    engine = open_store()
    with Session(engine) as session:
        stmt = select(Finding).where(Finding.status.in_(status))
        if rule:
            stmt = stmt.where(Finding.rule == rule)
        if customer:
            stmt = stmt.where(Finding.customer == customer)
        rows = sorted(session.exec(stmt).all(), key=lambda f: (-abs(f.amount_minor), f.rule, f.key))
    if json_out:
        print_json([f.model_dump(mode="json") for f in rows])
        return
    table = Table("id", "rule", "status", "customer", "period", "amount", "summary")
    for f in rows:
        period = f"{f.period_start:%Y-%m}" if f.period_start else ""
        table.add_row(f.id, f.rule, f.status, f.customer or "", period, money(f.amount_minor, f.currency), f.summary)
    console.print(table)


@findings_app.command("show")
def findings_show(finding_id: str = typer.Argument(...)) -> None:
    """Show one finding with its evidence and history."""
    from subledger.core.model.finding import FindingEvent

    engine = open_store()
    with Session(engine) as session:
        f = session.get(Finding, finding_id)
        if f is None:
            from subledger.core.errors import ConfigError

            raise ConfigError(f"no finding {finding_id!r}", fix="list them with `subledger findings list`")
        events = session.exec(select(FindingEvent).where(FindingEvent.finding_id == f.id).order_by(FindingEvent.id))
        history = [e.model_dump(mode="json") for e in events]
    print_json({**f.model_dump(mode="json"), "history": history})


def _status_command(status: str):  # type: ignore[no-untyped-def]
    def command(
        finding_ids: list[str] = typer.Argument(..., help="Finding ids."),
        reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    ) -> None:
        from subledger.sync.findings import set_status

        engine = open_store()
        with Session(engine) as session, session.begin():
            for fid in finding_ids:
                set_status(session, fid, status, reason=reason, actor=actor(), now=utcnow())
        console.print(f"{len(finding_ids)} finding(s) {status}")

    command.__doc__ = f"Mark findings {status}, with a reason."
    return command


def plan_command(
    all_: bool = typer.Option(False, "--all", help="Also show done, failed and superseded actions."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show planned write-back grouped by target, with amounts (like `terraform plan`)."""
    engine = open_store()
    with Session(engine) as session:
        stmt = select(Action).order_by(Action.connection, Action.kind, Action.created_at)
        if not all_:
            stmt = stmt.where(Action.status.in_(("planned", "approved", "in_flight")))
        rows = session.exec(stmt).all()
    if json_out:
        print_json([a.model_dump(mode="json") for a in rows])
        return
    if not rows:
        console.print("no changes planned")
        return
    groups: dict[tuple[str, str], list[Action]] = defaultdict(list)
    for a in rows:
        groups[(a.connection, a.kind)].append(a)
    totals: dict[str, int] = defaultdict(int)
    for (conn, kind), actions in groups.items():
        console.print(f"\n[bold]{conn}[/] · {kind} ({len(actions)})")
        for a in actions:
            mark = {"planned": "[yellow]+[/]", "approved": "[green]+[/]", "in_flight": "[cyan]~[/]"}.get(a.status, " ")
            console.print(f"  {mark} {a.id}  {money(a.amount_minor, a.currency):>16}  {a.summary}  [dim]{a.status}[/]")
            if a.currency and a.status in ("planned", "approved", "in_flight"):
                totals[a.currency] += a.amount_minor
    pending = sum(1 for a in rows if a.status == "planned")
    ready = sum(1 for a in rows if a.status in ("approved", "in_flight"))
    console.print(
        f"\nPlan: {ready} to apply, {pending} awaiting approval; "
        + ", ".join(money(v, c) for c, v in sorted(totals.items()))
    )
    if pending:
        console.print("approve with `subledger approve ACTION_ID...` (or --all), then `subledger apply`")


def approve_command(
    action_ids: list[str] = typer.Argument(None, help="Actions to approve."),
    all_: bool = typer.Option(False, "--all", help="Approve every planned action."),
    reason: str = typer.Option("approved from the CLI", "--reason", help="Why (kept in the audit log)."),
) -> None:
    """Approve planned actions so `subledger apply` executes them."""
    from subledger.core.errors import ConfigError
    from subledger.sync.plan import approve

    engine = open_store()
    with Session(engine) as session, session.begin():
        ids = list(action_ids or [])
        if all_:
            ids = list(session.exec(select(Action.id).where(Action.status == "planned")).all())
        if not ids:
            raise ConfigError("no actions named", fix="pass action ids from `subledger plan`, or --all")
        approved = approve(session, ids, actor=actor(), reason=reason, now=utcnow())
    console.print(f"{len(approved)} action(s) approved")


def apply_command(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Execute approved actions exactly once (safe to re-run after a crash, and to run in parallel).

    Each action is claimed before it is sent; one another apply holds is skipped.
    """
    from subledger.sync.apply import apply_actions

    engine = open_store()
    report = apply_actions(engine, actor=actor())
    data = {
        "done": report.done,
        "found_existing": report.found_existing,
        "conflicts": report.conflicts,
        "failed": report.failed,
        "skipped": report.skipped,
    }
    if json_out:
        print_json(data)
    else:
        console.print(
            f"applied {len(report.done)} action(s)"
            + (f" ({len(report.found_existing)} had already landed)" if report.found_existing else "")
            + (f"; {len(report.conflicts)} conflict(s)" if report.conflicts else "")
            + (f"; {len(report.failed)} failed (see `subledger plan --all`)" if report.failed else "")
            + (
                f"; {len(report.skipped)} skipped (being applied elsewhere, or no longer approved)"
                if report.skipped
                else ""
            )
        )
    if report.failed or report.conflicts:
        raise typer.Exit(1)


def link_command(
    system: str = typer.Argument(..., help="The connection the record is in."),
    external_id: str = typer.Argument(..., help="The customer's id there."),
    canonical_id: str = typer.Argument(..., help="The canonical customer id to link it to."),
    reason: str = typer.Option("linked by hand", "--reason"),
) -> None:
    """Link a customer record to a canonical customer; re-syncs keep the link."""
    from subledger.sync.identity import link_manually

    engine = open_store()
    with Session(engine) as session, session.begin():
        link_manually(
            session, system=system, external_id=external_id, canonical_id=canonical_id, actor=actor(), reason=reason
        )
    console.print(f"{system}:{external_id} -> {canonical_id}")


def unlink_command(
    system: str = typer.Argument(...),
    external_id: str = typer.Argument(...),
    reason: str = typer.Option("unlinked by hand", "--reason"),
) -> None:
    """Unlink a customer record; matching will not link it again."""
    from subledger.sync.identity import unlink

    engine = open_store()
    with Session(engine) as session, session.begin():
        unlink(session, system=system, external_id=external_id, actor=actor(), reason=reason)
    console.print(f"{system}:{external_id} unlinked")


def audit_command(
    limit: int = typer.Option(50, "--limit"),
    object_id: str | None = typer.Option(None, "--object", help="Only entries about this object."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the audit log, newest first."""
    engine = open_store()
    with Session(engine) as session:
        stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if object_id:
            stmt = stmt.where(AuditEntry.object_id == object_id)
        rows = session.exec(stmt).all()
    if json_out:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("at", "actor", "verb", "object", "reason")
    for r in rows:
        table.add_row(f"{r.at:%Y-%m-%d %H:%M:%S}", r.actor, r.verb, f"{r.object_type}:{r.object_id}", r.reason)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("sync")(sync_command)
    for status, verb in (("acknowledged", "ack"), ("ignored", "ignore"), ("resolved", "resolve"), ("open", "reopen")):
        findings_app.command(verb)(_status_command(status))
    app.add_typer(findings_app, name="findings")
    app.command("plan")(plan_command)
    app.command("approve")(approve_command)
    app.command("apply")(apply_command)
    app.command("link")(link_command)
    app.command("unlink")(unlink_command)
    app.command("audit")(audit_command)
