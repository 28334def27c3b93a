"""``subledger rate``: price one billing period of a contract, from files or from the store.

From files (no database)::

    subledger rate --contract contracts/acme.yaml --usage usage/march.jsonl --period 2026-03 [--json]

From the store::

    subledger rate acme-2026 --period 2026-03          # a contract id
    subledger rate acme --period 2026-03               # every contract of a customer

``--period`` is the month a billing period starts in (``2026-03``) or a day inside one
(``2026-03-15``). The period is rated with the state that earlier periods of the term
leave behind (allotment pools and rollovers, per-term spend, credit balances), so every
period from the term's start up to it is rated too; only the chosen one is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from sqlalchemy import or_
from sqlmodel import Session, select

from subledger.commands._as_of import as_of_option, parse_as_of
from subledger.commands._output import console, err_console, print_json
from subledger.commands._store import open_store
from subledger.core.db_types import decimal_text, utcnow
from subledger.core.errors import ConfigError
from subledger.core.model import Contract
from subledger.core.money import to_major
from subledger.core.rating import (
    PeriodRating,
    RatingPlan,
    UsageQuery,
    aggregate_events,
    compile_terms,
    rate_through,
)
from subledger.core.rating.periods import BillingPeriod, select_period
from subledger.core.terms import load_document, read_terms_file
from subledger.sync.contracts import ContractReadModel, ContractView, PeriodView, not_covered_text, store_roles
from subledger.sync.settings import load_settings

FILES_SYSTEM = "files"


# ------------------------------------------------------------------------------ inputs


def _queries(plan: RatingPlan, period: BillingPeriod) -> list[UsageQuery]:
    """Every usage query from the term's first period through ``period``."""
    return [q for p in plan.periods(until=period.start) for q in plan.usage_queries(p)]


def read_usage_files(paths: Sequence[Path]) -> tuple[list[Any], list[Any]]:
    """Read usage events from CSV/JSONL files in the files connector's format.

    Returns:
        (events, rejected lines). A bad line is reported, the rest still loads.
    """
    # The files connector owns the usage line format; read through it (via the plugin
    # registry, as the engine does) so `rate` and `pull` can never disagree about a line.
    from subledger.core.connector import Rejected, UsageEventIn
    from subledger.core.plugins import get_connector_class
    from subledger.core.secrets import load_config

    files = get_connector_class("files")
    events: list[UsageEventIn] = []
    rejected: list[Rejected] = []
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"usage file {path} does not exist", fix="check the --usage path")
        config = load_config(files.config_model, {"path": str(path.parent.resolve()), "usage_events": path.name})
        for item in files(config, connection=FILES_SYSTEM).read("usage_events", None):
            if isinstance(item, UsageEventIn):
                events.append(item)
            elif isinstance(item, Rejected):
                rejected.append(item)
    return events, rejected


def rate_files(
    contract_path: Path, usage_paths: Sequence[Path], period_selector: str
) -> tuple[PeriodRating, dict[str, Any]]:
    """Rate a contract file against usage files; returns the rating and notes for the user."""
    document = load_document(read_terms_file(contract_path), source=str(contract_path))
    plan = compile_terms(document, contract_id=document.id, system=FILES_SYSTEM)
    period = select_period(plan.schedule, period_selector)
    events, rejected = read_usage_files(usage_paths)
    mine = [e for e in events if e.customer_external_id == document.customer]
    usage = aggregate_events(mine, _queries(plan, period), system=FILES_SYSTEM)
    notes = {
        "customer": document.customer,
        "events_read": len(events),
        "events_of_other_customers": len(events) - len(mine),
        "rejected_lines": [
            {"file": r.location, "line": r.line, "field": r.field, "reason": r.reason, "fix": r.fix}
            for r in rejected
        ],
    }
    return rate_through(plan, period, usage), notes


def find_contracts(session: Session, target: str) -> list[Contract]:
    """Contracts whose external id or id is ``target``, else every contract of customer ``target``."""
    found = session.exec(
        select(Contract).where(or_(Contract.external_id == target, Contract.id == target)).order_by(Contract.id)
    ).all()
    if not found:
        found = session.exec(
            select(Contract).where(Contract.customer_external_id == target).order_by(Contract.start_date, Contract.id)
        ).all()
    if not found:
        raise ConfigError(
            f"no contract or customer {target!r} in the store",
            fix="pass a contract id or customer external id (see `subledger status`), or run `subledger pull` first",
        )
    return list(found)


def rate_store(
    target: str, period_selector: str, usage_system: str | None, as_of: datetime | None = None
) -> list[tuple[PeriodRating, dict]]:
    """Rate every matching contract in the store for the period, through the contract read model.

    The numbers are the ones reconciliation, the standing endpoint and recognition see:
    the same identity map, usage (``usage_system``, default the metering connection),
    credit grants and invoice lines, as of ``as_of`` (default now).
    """
    engine = open_store()
    as_of = as_of or utcnow()
    results = []
    with Session(engine) as session:
        contracts = find_contracts(session, target)
        model = ContractReadModel(session, store_roles(session, load_settings(), usage_system=usage_system),
                                  as_of=as_of)
        selected = []
        for view in model.views(contracts):
            if view.plan is None:
                assert view.error is not None
                raise view.error
            try:
                period = select_period(view.plan.schedule, period_selector)
            except ConfigError:
                if len(contracts) == 1:
                    raise
                continue  # a customer's other contracts need not cover this period
            selected.append((view, period))
        if not selected:
            raise ConfigError(
                f"none of the {len(contracts)} contracts of {target!r} has a billing period {period_selector}",
                fix="choose a period within one of the contract terms",
            )
        for view, period in selected:
            pv = next((p for p in view.periods if p.period.start == period.start), None)
            if pv is None:
                raise ConfigError(
                    f"period {period.start}..{period.end} of contract {view.contract.external_id} has not started "
                    f"as of {as_of.isoformat()}",
                    fix="choose a period that has started, or a later --as-of",
                )
            results.append((_with_events(model, view, pv), _store_notes(model, view, pv)))
    return results


def _with_events(model: ContractReadModel, view: ContractView, pv: PeriodView) -> PeriodRating:
    """The period's rating, each usage line's evidence ending with its first and last events."""
    lines = []
    for line in pv.rating.lines:
        found = model.usage_evidence(view, line)
        if found is not None:
            ref = {"system": model.roles.usage_system or "store", "object": "usage_events",
                   "id": view.usage_customer, **found}
            line = line._replace(evidence=(*line.evidence, ref))
        lines.append(line)
    return pv.rating._replace(lines=tuple(lines))


def _store_notes(model: ContractReadModel, view: ContractView, pv: PeriodView) -> dict[str, Any]:
    """What `rate` adds to a rating from the store: who, as of when, coverage and what was invoiced."""
    c = view.contract
    notes: dict[str, Any] = {
        "customer": view.who,
        "system": c.system,
        "as_of": model.as_of.isoformat(),
        "usage_system": model.roles.usage_system,
        "usage_customer": view.usage_customer,
        "ended": pv.ended,
        "covered": pv.covered,
        "invoiced": decimal_text(to_major(pv.invoiced_minor, c.currency)),
        "invoiced_minor": pv.invoiced_minor,
        "invoiced_lines": [ln.ref() for ln in pv.lines],
    }
    if pv.gap is not None:
        notes["not_covered"] = not_covered_text(model.roles.usage_system, pv.gap)
    if view.notes:
        notes["notes"] = list(view.notes)
    return notes


# ----------------------------------------------------------------------------- output


def rating_json(rated: PeriodRating, notes: dict[str, Any]) -> dict[str, Any]:
    """The documented JSON: currency, period, lines (amounts as major-unit strings), total."""
    return {**rated.to_json(), **notes}


def _tiers_text(line: Any) -> str:
    if line.tiers and (len(line.tiers) > 1 or line.unit_price is None):
        return "; ".join(f"t{t.tier + 1}: {decimal_text(t.quantity)} x {decimal_text(t.unit_price)}"
                         + (f" + {decimal_text(t.flat_fee)}" if t.flat_fee else "") for t in line.tiers)
    if line.unit_price is not None:
        return decimal_text(line.unit_price)
    detail = dict(line.detail)
    if "packages" in detail:
        return f"{detail['packages']} x {detail['package_price']} per {detail['package_size']}"
    if "rate" in detail:
        return f"{detail['rate']} + {detail['fixed_fee']}/txn x {detail['transactions']}"
    return ""


def print_rating(rated: PeriodRating, notes: dict[str, Any]) -> None:
    period = rated.period
    partial = " (partial)" if period.is_partial else ""
    console.print(
        f"[bold]{rated.contract_id}[/] for {notes.get('customer', '')}: "
        f"{period.start} to {period.end} (exclusive){partial}, {rated.currency}"
    )
    table = Table("component", "kind", "dimension", "quantity", "price", "service", "amount")
    for line in rated.lines:
        own = (line.service_start, line.service_end) != (period.start, period.end)
        table.add_row(
            line.component,
            line.kind,
            ", ".join(f"{k}={v}" for k, v in line.dimension),
            decimal_text(line.quantity),
            _tiers_text(line),
            f"{line.service_start} to {line.service_end}" if own else "period",
            decimal_text(to_major(line.amount, rated.currency)),
        )
    table.add_row("total", "", "", "", "", "", f"[bold]{decimal_text(to_major(rated.total, rated.currency))}[/]")
    console.print(table)
    for move in rated.movements:
        amount = (decimal_text(to_major(move.amount_minor, rated.currency)) if move.amount_minor is not None
                  else f"{decimal_text(move.units)} units")
        console.print(f"credit {move.grant_id}: {move.kind} {amount} at {move.occurred_at:%Y-%m-%d}")


def _warn(notes: dict[str, Any]) -> None:
    for bad in notes.get("rejected_lines", []):
        field = f" field {bad['field']}" if bad["field"] else ""
        err_console.print(f"[yellow]skipped[/] {bad['file']}:{bad['line']}{field}: {bad['reason']}. Fix: {bad['fix']}",
                          highlight=False)
    if notes.get("not_covered"):
        err_console.print(f"[yellow]{notes['not_covered']}[/]: this period's usage was not read whole, "
                          "so its rating is incomplete", highlight=False)
    for note in notes.get("notes", []):
        err_console.print(f"note: {note}", highlight=False)
    if notes.get("events_of_other_customers"):
        err_console.print(f"ignored {notes['events_of_other_customers']} events of other customers", highlight=False)


# ---------------------------------------------------------------------------- command


def rate(
    target: str | None = typer.Argument(
        None, metavar="[CUSTOMER_OR_CONTRACT]", help="A contract id or customer external id in the store."
    ),
    period: str = typer.Option(
        ..., "--period", help="The month a billing period starts in (2026-03), or a day inside one."
    ),
    contract: Path | None = typer.Option(None, "--contract", help="Price this contract file (YAML or JSON)."),
    usage: list[Path] = typer.Option(
        [], "--usage", help="Usage events file (CSV or JSONL) for --contract; repeat for several."
    ),
    usage_system: str | None = typer.Option(
        None, "--usage-system", help="Read only usage from this connection (store mode)."
    ),
    as_of: str | None = as_of_option(),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Price one billing period of a contract: from files, or from the store."""
    if (target is None) == (contract is None):
        raise ConfigError(
            "rate needs either a contract file or a contract/customer in the store",
            fix="run `subledger rate --contract FILE --usage FILE --period 2026-03` "
            "or `subledger rate CUSTOMER_OR_CONTRACT --period 2026-03`",
        )
    if contract is not None:
        if usage_system is not None or as_of is not None:
            raise ConfigError("--usage-system and --as-of apply to the store only",
                              fix="drop them, or rate a contract in the store")
        results = [rate_files(contract, usage, period)]
    else:
        if usage:
            raise ConfigError("--usage goes with --contract", fix="drop --usage, or rate a --contract file")
        assert target is not None
        results = rate_store(target, period, usage_system, parse_as_of(as_of))
    for _rated, notes in results:
        _warn(notes)
    if json_out:
        docs = [rating_json(rated, notes) for rated, notes in results]
        print_json(docs[0] if len(docs) == 1 else {"contracts": docs})
        return
    for rated, notes in results:
        print_rating(rated, notes)


def register(app: typer.Typer) -> None:
    """Add ``subledger rate`` to the root app."""
    app.command("rate")(rate)


__all__ = ["rate", "rate_files", "rate_store", "read_usage_files", "register"]
