"""Reports: revenue waterfall, deferred-revenue roll-forward, unbilled, revenue by X.

Each report is a :class:`Report` (title, columns, rows of plain values) that renders as
a rich table, CSV or JSON. Amounts are exact decimal strings in major units, one
currency per row. Reports read the journal (what was posted, by posting period); the
waterfall adds, from the revenue schedule, what is still to be recognized. Closed
periods are reported as posted: the schedule is rewritten by every run, the journal never.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from subledger.core.db_types import decimal_text
from subledger.core.model import JournalEntry, JournalLine, RevenueScheduleLine
from subledger.core.money import to_major
from subledger.core.revrec.accounts import AccountRole
from subledger.core.revrec.calendar import Month, months_between
from subledger.core.revrec.ledger import closed_through

REVENUE_ROLES = {
    AccountRole.REVENUE.value, AccountRole.BREAKAGE_REVENUE.value, AccountRole.REFUNDS_CONTRA.value,
    AccountRole.DISCOUNTS_CONTRA.value, AccountRole.PROMOTIONAL_CONTRA.value,
}
GROUPINGS = ("contract", "customer", "product", "obligation")


@dataclass
class Report:
    """A rendered-agnostic report: ``columns`` name the values of each row."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"report": self.title, **self.meta, "columns": self.columns,
                "rows": [dict(zip(self.columns, r, strict=True)) for r in self.rows]}

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=str)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return buf.getvalue()

    def width(self) -> int:
        """Characters a table of this report needs so no cell is cut."""
        cells = [self.columns, *[["" if v is None else str(v) for v in r] for r in self.rows]]
        return sum(max(len(str(row[i])) for row in cells) + 3 for i in range(len(self.columns))) + 1

    def to_rich(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title, show_lines=False)
        for i, col in enumerate(self.columns):
            numeric = any(_is_amount(r[i]) for r in self.rows)
            table.add_column(col, justify="right" if numeric else "left", no_wrap=True)
        for r in self.rows:
            table.add_row(*("" if v is None else str(v) for v in r))
        return table


def _is_amount(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip("-").replace(".", "", 1).isdigit()


def _money(minor: int, currency: str) -> str:
    return decimal_text(to_major(minor, currency))


def _group_of(
    by: str, *, contract: str | None, customer: str | None, product: str | None, obligation: str | None
) -> str:
    if by not in GROUPINGS:
        from subledger.core.errors import ConfigError

        raise ConfigError(f"cannot group by {by!r}", fix=f"use one of: {', '.join(GROUPINGS)}")
    value = {"contract": contract, "customer": customer, "product": product, "obligation": obligation}[by]
    return value or "(none)"


def _month_range(months: Iterable[str], start: Month | None, end: Month | None) -> list[Month]:
    present = sorted(Month.parse(m) for m in months)
    if not present and (start is None or end is None):
        return []
    first = start or present[0]
    last = end or present[-1]
    return list(months_between(first, last))


def recognized_through(session: Session) -> Month | None:
    """The latest month the journal holds recognition for (the waterfall's actuals)."""
    periods = session.exec(select(JournalEntry.origin_period).where(JournalEntry.kind == "recognition")).all()
    return max((Month.parse(p) for p in periods if p), default=None)


def waterfall(
    session: Session, *, by: str = "contract", start: Month | None = None, end: Month | None = None
) -> Report:
    """Revenue by month: what the journal posted, plus what the schedule has still to post.

    Net of contra kinds and including breakage; rows are ``by`` groups and currencies.
    A month's figure is the revenue posted in it (by posting period: exactly the revenue
    report's figure) plus the part of the month's scheduled revenue that no active journal
    entry recognizes yet (the rest of a month recognized part-way, later months). A closed
    month never changes: what the schedule says about it beyond what was posted (a
    restatement not posted yet) shows in the first open month, where the next run posts it.
    So every closed month, and every month recognized in full, agrees with ``revenue``.
    """
    posted: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pending: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lines = [(e, ln) for e, ln in _lines(session) if ln.role in REVENUE_ROLES]
    reversed_ids = {e.reverses_entry_id for e, _ln in lines if e.reverses_entry_id}
    for e, ln in lines:
        g = _group_of(by, contract=ln.contract_id, customer=ln.customer_external_id, product=ln.product,
                      obligation=ln.obligation_key)
        net = ln.credit_minor - ln.debit_minor
        posted[(g, e.currency)][e.period] += net
        if e.reverses_entry_id is None and e.id not in reversed_ids:  # active: what the month holds now
            pending[(g, e.currency)][e.origin_period or e.period] -= net
    for r in session.exec(select(RevenueScheduleLine)).all():
        g = _group_of(by, contract=r.contract_id, customer=r.customer_external_id, product=r.product,
                      obligation=r.obligation_key)
        pending[(g, r.currency)][r.period] += r.amount_minor
    closed = closed_through(session)
    first_open = str(closed.next()) if closed is not None else None
    table: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for key, amounts in posted.items():
        for month, amount in amounts.items():
            table[key][month] += amount
    for key, amounts in pending.items():
        row = table[key]
        for month, amount in amounts.items():
            if first_open is not None and month < first_open:
                month = first_open  # a closed month stays as posted
            row[month] += amount
    months = _month_range({m for amounts in table.values() for m in amounts}, start, end)
    actual = recognized_through(session)
    columns = [by, "currency", *[str(m) for m in months], "total"]
    rows = []
    for (g, cur), amounts in sorted(table.items()):
        values = [amounts.get(str(m), 0) for m in months]
        rows.append([g, cur, *[_money(v, cur) for v in values], _money(sum(values), cur)])
    title = "Revenue waterfall"
    notes = []
    if closed is not None:
        notes.append(f"closed through {closed} as posted")
    if actual is not None:
        notes.append(f"recognized through {actual}; later months scheduled")
    if notes:
        title += f" ({'; '.join(notes)})"
    return Report(title, columns, rows, {
        "by": by, "recognized_through": str(actual) if actual else None,
        "closed_through": str(closed) if closed else None, "months": [str(m) for m in months],
    })


def _lines(session: Session) -> list[tuple[JournalEntry, JournalLine]]:
    stmt = select(JournalEntry, JournalLine).where(JournalLine.entry_id == JournalEntry.id)
    return list(session.exec(stmt).all())


def rollforward(session: Session, *, start: Month | None = None, end: Month | None = None) -> Report:
    """Deferred revenue (and unbilled receivable) roll-forward by posting period.

    For each month and currency: opening balance, amounts billed into it, recognized out
    of it, other movements (credit notes, reversals, corrections) and the closing balance.
    Deferred revenue is a credit balance, unbilled receivable a debit balance; both shown
    positive.
    """
    accounts = {AccountRole.CONTRACT_LIABILITY.value: -1, AccountRole.UNBILLED_RECEIVABLE.value: 1}
    moves: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    periods: set[str] = set()
    for e, ln in _lines(session):
        if ln.role not in accounts:
            continue
        sign = accounts[ln.role]
        amount = sign * (ln.debit_minor - ln.credit_minor)
        bucket = {"invoice": "billed", "recognition": "recognized"}.get(e.kind, "other")
        if e.kind == "credit_note":
            bucket = "credited"
        moves[(ln.role, e.currency, e.period)][bucket] += amount
        periods.add(e.period)
    months = _month_range(periods, None, end)
    columns = ["account", "currency", "period", "opening", "billed", "recognized", "credited", "other", "closing"]
    rows = []
    for role in accounts:
        for cur in sorted({c for (r, c, _p) in moves if r == role}):
            balance = 0
            for m in months:
                mv = moves.get((role, cur, str(m)), {})
                opening = balance
                balance += sum(mv.values())
                if start is not None and m < start:
                    continue
                rows.append([role, cur, str(m), _money(opening, cur), _money(mv.get("billed", 0), cur),
                             _money(mv.get("recognized", 0), cur), _money(mv.get("credited", 0), cur),
                             _money(mv.get("other", 0), cur), _money(balance, cur)])
    return Report("Deferred revenue roll-forward", columns, rows, {})


def positions(session: Session, *, as_of: Month | None = None) -> Report:
    """Unbilled receivable and deferred revenue per contract, netted for presentation.

    A contract's contract asset (unbilled) and contract liability (deferred) are netted:
    the net is shown as a contract asset when positive and a contract liability otherwise.
    """
    bal: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e, ln in _lines(session):
        if as_of is not None and Month.parse(e.period) > as_of:
            continue
        if ln.role == AccountRole.UNBILLED_RECEIVABLE.value:
            bal[(ln.customer_external_id or "", ln.contract_id or "", e.currency)]["unbilled"] += (
                ln.debit_minor - ln.credit_minor)
        elif ln.role == AccountRole.CONTRACT_LIABILITY.value:
            bal[(ln.customer_external_id or "", ln.contract_id or "", e.currency)]["deferred"] += (
                ln.credit_minor - ln.debit_minor)
    columns = ["customer", "contract", "currency", "unbilled_receivable", "deferred_revenue",
               "net_contract_asset", "net_contract_liability"]
    rows = []
    for (cus, ctr, cur), b in sorted(bal.items()):
        unbilled, deferred = b.get("unbilled", 0), b.get("deferred", 0)
        if unbilled == 0 and deferred == 0:
            continue
        net = unbilled - deferred
        rows.append([cus or "(none)", ctr or "(none)", cur, _money(unbilled, cur), _money(deferred, cur),
                     _money(max(net, 0), cur), _money(max(-net, 0), cur)])
    return Report("Unbilled receivable and deferred revenue by contract", columns, rows,
                  {"as_of": str(as_of) if as_of else None})


def revenue(
    session: Session, *, by: str = "customer", start: Month | None = None, end: Month | None = None
) -> Report:
    """Posted revenue (net of contra, with breakage) by ``by`` group and posting period."""
    table: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    periods: set[str] = set()
    for e, ln in _lines(session):
        if ln.role not in REVENUE_ROLES:
            continue
        g = _group_of(by, contract=ln.contract_id, customer=ln.customer_external_id, product=ln.product,
                      obligation=ln.obligation_key)
        table[(g, e.currency)][e.period] += ln.credit_minor - ln.debit_minor
        periods.add(e.period)
    months = _month_range(periods, start, end)
    columns = [by, "currency", *[str(m) for m in months], "total"]
    rows = []
    for (g, cur), amounts in sorted(table.items()):
        values = [amounts.get(str(m), 0) for m in months]
        rows.append([g, cur, *[_money(v, cur) for v in values], _money(sum(values), cur)])
    return Report(f"Revenue by {by}", columns, rows, {"by": by})


def journal_rows(session: Session, *, period: Month | None = None) -> Report:
    """Every posted journal line with its entry, for export to an ERP."""
    columns = ["external_id", "entry_date", "period", "origin_period", "kind", "reverses", "line_no",
               "account", "role", "debit", "credit", "currency", "customer", "contract", "product",
               "obligation", "evidence"]
    rows = []
    entries = {e.id: e for e in session.exec(select(JournalEntry)).all()}
    lines = session.exec(select(JournalLine).order_by(JournalLine.entry_id, JournalLine.line_no)).all()
    for ln in sorted(lines, key=lambda x: (entries[x.entry_id].period, entries[x.entry_id].entry_date,
                                           entries[x.entry_id].external_id, x.line_no)):
        e = entries[ln.entry_id]
        if period is not None and e.period != str(period):
            continue
        reversed_ext = entries[e.reverses_entry_id].external_id if e.reverses_entry_id in entries else None
        rows.append([e.external_id, e.entry_date.isoformat(), e.period, e.origin_period, e.kind, reversed_ext,
                     ln.line_no, ln.account, ln.role, _money(ln.debit_minor, e.currency),
                     _money(ln.credit_minor, e.currency), e.currency, ln.customer_external_id, ln.contract_id,
                     ln.product, ln.obligation_key, json.dumps(ln.evidence, sort_keys=True)])
    return Report("Journal", columns, rows, {"period": str(period) if period else None})


def journal_entries_json(session: Session, *, period: Month | None = None) -> list[dict[str, Any]]:
    """Posted entries with nested lines (the JSON an ERP connector upserts by external id)."""
    entries = session.exec(select(JournalEntry).order_by(JournalEntry.period, JournalEntry.entry_date,
                                                         JournalEntry.external_id)).all()
    by_id = {e.id: e for e in entries}
    lines: dict[str, list[JournalLine]] = defaultdict(list)
    for ln in session.exec(select(JournalLine).order_by(JournalLine.entry_id, JournalLine.line_no)).all():
        lines[ln.entry_id].append(ln)
    out = []
    for e in entries:
        if period is not None and e.period != str(period):
            continue
        out.append({
            "external_id": e.external_id, "entry_date": e.entry_date.isoformat(), "period": e.period,
            "origin_period": e.origin_period, "kind": e.kind, "currency": e.currency, "memo": e.memo,
            "reverses": by_id[e.reverses_entry_id].external_id if e.reverses_entry_id in by_id else None,
            "source": e.source,
            "lines": [{
                "line_no": ln.line_no, "account": ln.account, "role": ln.role,
                "debit": _money(ln.debit_minor, e.currency), "credit": _money(ln.credit_minor, e.currency),
                "customer": ln.customer_external_id, "contract": ln.contract_id, "product": ln.product,
                "obligation": ln.obligation_key, "evidence": ln.evidence,
            } for ln in lines.get(e.id, [])],
        })
    return out
