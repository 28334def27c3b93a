"""Leakage: unbilled and over-billed amounts by customer and period, from open findings."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlmodel import Session, select

from subledger.core.model.finding import Finding

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
    """Rows, totals per currency, and the largest offenders."""

    rows: list[LeakageRow]
    totals: dict[str, dict[str, int]]
    offenders: list[tuple[str, str, int]]  # (customer, currency, unbilled minor)


def leakage(session: Session, *, top: int = 10) -> LeakageReport:
    """Aggregate open unbilled/over-billing findings by customer, period and currency."""
    rows: dict[tuple[str, str, str], LeakageRow] = {}
    findings = session.exec(select(Finding).where(Finding.rule.in_(list(LEAK_RULES)), Finding.status.in_(ACTIVE))).all()
    for f in findings:
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
