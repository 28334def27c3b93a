"""Leakage: unbilled and over-billed amounts by customer and period.

Two ways to ask, one answer: :func:`leakage` reads the open findings the last
reconciliation stored; :func:`leakage_as_of` runs the same billing rules over the contract
read model as of any instant (replays and historical exports) and stores nothing. Both
list the ended periods that were not judged because their usage was not read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlmodel import Session, select

from subledger.core.model.finding import Finding
from subledger.sync.contracts import NotCovered
from subledger.sync.engine import connection_infos, material
from subledger.sync.findings import finding_id
from subledger.sync.rules.base import RuleContext
from subledger.sync.rules.billing import OverBillingRule, UnbilledUsageRule
from subledger.sync.settings import SyncSettings

LEAK_RULES = {"unbilled_usage": "unbilled", "over_billing": "over_billed"}
ACTIVE = ("open", "acknowledged")


@dataclass
class LeakageRow:
    """One customer's leakage in one period and currency (minor units)."""

    customer: str
    period: str
    currency: str
    unbilled_minor: int = 0
    over_billed_minor: int = 0
    findings: list[str] = field(default_factory=list)


@dataclass
class LeakageReport:
    """Rows, totals per currency, the largest offenders, and what was not judged."""

    rows: list[LeakageRow]
    totals: dict[str, dict[str, int]]
    offenders: list[tuple[str, str, int]]  # (customer, currency, unbilled minor)
    not_covered: list[NotCovered] = field(default_factory=list)
    as_of: datetime | None = None


@dataclass(frozen=True)
class _Leak:
    id: str
    rule: str
    customer: str | None
    period_start: date | None
    currency: str | None
    amount_minor: int


def _report(leaks: Iterable[_Leak], top: int) -> LeakageReport:
    rows: dict[tuple[str, str, str], LeakageRow] = {}
    for f in leaks:
        customer = f.customer or "(unlinked)"
        period = f"{f.period_start:%Y-%m}" if f.period_start else "-"
        currency = f.currency or "-"
        row = rows.setdefault((customer, period, currency), LeakageRow(customer, period, currency))
        if f.rule == "unbilled_usage":
            row.unbilled_minor += f.amount_minor
        else:
            row.over_billed_minor += -f.amount_minor
        row.findings.append(f.id)
    ordered = sorted(rows.values(), key=lambda r: (r.customer, r.period, r.currency))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"unbilled_minor": 0, "over_billed_minor": 0})
    per_customer: dict[tuple[str, str], int] = defaultdict(int)
    for r in ordered:
        totals[r.currency]["unbilled_minor"] += r.unbilled_minor
        totals[r.currency]["over_billed_minor"] += r.over_billed_minor
        per_customer[(r.customer, r.currency)] += r.unbilled_minor
    offenders = sorted(((c, cur, v) for (c, cur), v in per_customer.items() if v > 0), key=lambda x: (-x[2], x[0]))
    return LeakageReport(ordered, dict(totals), offenders[:top])


def leakage(session: Session, *, top: int = 10) -> LeakageReport:
    """Aggregate open unbilled/over-billing findings by customer, period and currency."""
    findings = session.exec(select(Finding).where(Finding.rule.in_(list(LEAK_RULES)), Finding.status.in_(ACTIVE))).all()
    return _report(
        (_Leak(f.id, f.rule, f.customer, f.period_start, f.currency, f.amount_minor) for f in findings), top
    )


def leakage_as_of(session: Session, settings: SyncSettings, as_of: datetime, *, top: int = 10) -> LeakageReport:
    """Leakage judged afresh as of ``as_of``: the unbilled and over-billing rules over the
    contract read model, with the same tolerance as a sync; nothing is stored."""
    ctx = RuleContext(session=session, settings=settings, connections=connection_infos(session, settings), now=as_of)
    leaks = [
        _Leak(finding_id(rule.name, d.key), rule.name, d.customer, d.period_start, d.currency, d.amount_minor)
        for rule in (UnbilledUsageRule(), OverBillingRule())
        for d in rule.evaluate(ctx)
        if material(d, settings)
    ]
    report = _report(leaks, top)
    report.not_covered = ctx.read_model().not_covered()
    report.as_of = as_of
    return report
