"""The journal in the store: posting planned entries, reading them back, closing periods.

This is the only module that writes journal rows. Rows are append-only and closed
periods never change: the model refuses updates and deletes and entries dated into a
closed period (friendly errors at flush time), and the database enforces the same
invariants with triggers whatever code or SQL tries (see docs/architecture.md,
"Invariants").
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import func, insert
from sqlmodel import Session, select

from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError
from subledger.core.model import AccountingPeriod, JournalEntry, JournalLine
from subledger.core.model.period import refuse_closed_periods
from subledger.core.revrec.accounts import AccountRole
from subledger.core.revrec.calendar import Month, months_between
from subledger.core.revrec.journal import LineDraft
from subledger.core.revrec.posting import PostedEntry, Posting


def entry_id(external_id: str) -> str:
    """A journal entry's primary key, derived from its external id."""
    return "je_" + hashlib.sha256(external_id.encode()).hexdigest()[:32]


def closed_through(session: Session) -> Month | None:
    """The last closed period, or None when no period is closed."""
    latest = session.exec(select(func.max(AccountingPeriod.period))).one()
    return Month.parse(latest) if latest else None


def close_period(
    session: Session, period: Month, *, closed_by: str = "system", today: date | None = None
) -> list[Month]:
    """Close ``period`` and every earlier open month that has journal entries.

    Returns the months newly closed (empty when ``period`` was already closed).

    Raises:
        ConfigError: ``period`` has not started yet (closing the future is a typo).
    """
    current = closed_through(session)
    if current is not None and period <= current:
        return []
    earliest = session.exec(select(func.min(JournalEntry.period))).one()
    first = current.next() if current is not None else Month.parse(earliest) if earliest else period
    first = min(first, period)
    today = Month.of(today or date.today())
    if period > today:
        raise ConfigError(
            f"period {period} has not started yet", fix=f"close a period up to {today}, usually the month just ended"
        )
    closed = list(months_between(first, period))
    for month in closed:
        session.add(AccountingPeriod(period=str(month), closed_by=closed_by))
    session.flush()
    return closed


def posted_entries(session: Session) -> list[PostedEntry]:
    """Every entry in the journal, with its lines, as the planner sees them."""
    lines: dict[str, list[LineDraft]] = defaultdict(list)
    for ln in session.exec(select(JournalLine).order_by(JournalLine.entry_id, JournalLine.line_no)).all():
        lines[ln.entry_id].append(LineDraft(
            role=AccountRole(ln.role), account=ln.account, debit_minor=ln.debit_minor,
            credit_minor=ln.credit_minor, product=ln.product, obligation_key=ln.obligation_key,
            contract_id=ln.contract_id, customer_external_id=ln.customer_external_id, memo=ln.memo,
            evidence=tuple(ln.evidence or ()),
        ))
    out = []
    for e in session.exec(select(JournalEntry).order_by(JournalEntry.period, JournalEntry.external_id)).all():
        out.append(PostedEntry(
            id=e.id, external_id=e.external_id, key=e.key, kind=e.kind, content_hash=e.content_hash,
            entry_date=e.entry_date, period=Month.parse(e.period), currency=e.currency,
            reverses_entry_id=e.reverses_entry_id, lines=tuple(lines.get(e.id, ())), memo=e.memo,
        ))
    return out


def post(session: Session, postings: Sequence[Posting]) -> int:
    """Insert planned postings as journal entries and lines (in the caller's transaction).

    Rows go in as two bulk INSERTs: a year of a few thousand customers is hundreds of
    thousands of lines, and one ORM object per line costs more than the planning itself.
    The lines go first and the entries last: the database seals an entry when its row is
    inserted (it must balance then, and no line can join it later; the line's foreign key
    to its entry is checked at commit). Returns the number of entries written.
    """
    entries: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for p in postings:
        d = p.draft
        if not d.is_balanced():  # pragma: no cover - the builder guarantees it
            raise AssertionError(f"refusing unbalanced entry {p.external_id}")
        eid = entry_id(p.external_id)
        entries.append(dict(
            id=eid, external_id=p.external_id, key=d.key, kind=d.kind,
            entry_date=p.entry_date, period=str(p.period), origin_period=str(d.origin_period),
            currency=d.currency, memo=d.memo, content_hash=d.content_hash() if p.reverses is None else "",
            reverses_entry_id=p.reverses.id if p.reverses is not None else None, source=list(d.source),
            created_at=utcnow(),
        ))
        for n, ln in enumerate(d.lines, start=1):
            lines.append(dict(
                entry_id=eid, line_no=n, role=ln.role.value, account=ln.account,
                debit_minor=ln.debit_minor, credit_minor=ln.credit_minor, currency=d.currency,
                customer_external_id=ln.customer_external_id, contract_id=ln.contract_id,
                obligation_key=ln.obligation_key, product=ln.product, memo=ln.memo, evidence=list(ln.evidence),
            ))
    if entries:
        session.flush()  # anything pending goes first
        refuse_closed_periods(session.connection(), (e["period"] for e in entries))
        session.execute(insert(JournalLine), lines)
        session.execute(insert(JournalEntry), entries)
    return len(entries)
