"""``run_recognition``: bring the schedule and the journal up to date with the store.

One transaction (the caller's session): derive obligations, compute the journal the data
implies through a date, plan the postings against what is already posted (closed
periods untouched, late data in the first open period), post them, and refresh the
revenue schedule. Running it again over the same data posts nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, select

from subledger.core.model import RevenueScheduleLine
from subledger.core.revrec.accounts import ChartOfAccounts
from subledger.core.revrec.calendar import Month
from subledger.core.revrec.contracts import Placement, RatedContract
from subledger.core.revrec.journal import build_entries
from subledger.core.revrec.ledger import closed_through, post, posted_entries
from subledger.core.revrec.obligation import Obligation
from subledger.core.revrec.posting import Posting, plan_postings
from subledger.core.revrec.sources import SourceScope, load_sources

MANAGED_KINDS = frozenset({"invoice", "credit_note", "recognition", "payment"})


@dataclass
class RunResult:
    """What a recognition run did."""

    through: date
    obligations: int = 0
    postings: list[Posting] = field(default_factory=list)
    schedule_changes: int = 0
    closed_through: Month | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def entries_posted(self) -> int:
        return len(self.postings)

    @property
    def reversals(self) -> int:
        return sum(1 for p in self.postings if p.reverses is not None)

    @property
    def late(self) -> int:
        return sum(1 for p in self.postings if p.reverses is None and p.period != p.draft.origin_period)

    def to_json(self) -> dict[str, Any]:
        kinds = Counter(p.draft.kind for p in self.postings)
        return {
            "through": self.through.isoformat(),
            "closed_through": str(self.closed_through) if self.closed_through else None,
            "obligations": self.obligations,
            "entries_posted": self.entries_posted,
            "reversals": self.reversals,
            "late_postings": self.late,
            "entries_by_kind": dict(sorted(kinds.items())),
            "schedule_changes": self.schedule_changes,
            "warnings": list(self.warnings),
        }


def run_recognition(
    session: Session, *, through: date, chart: ChartOfAccounts | None = None, scope: SourceScope | None = None,
    contracts: Sequence[RatedContract] = (), placements: Mapping[tuple[str, str, str], Placement] | None = None,
    customer_of: Callable[[str, str], str | None] | None = None, as_of: datetime | None = None,
    warnings: Sequence[str] = (),
) -> RunResult:
    """Recognize revenue and post the journal through ``through`` (inclusive).

    Idempotent: a second run over the same data posts nothing and changes no schedule
    line. Entries for closed periods are posted in the first open period. ``scope`` limits
    the systems read (see :class:`~subledger.core.revrec.sources.SourceScope`).
    ``contracts``, ``placements`` and ``customer_of`` come from the contract read model
    (``subledger.sync.recognition.recognize`` passes them); without them recognition is
    driven by invoices alone. ``warnings`` are added to the result's.
    """
    sources = load_sources(session, through=through, scope=scope, contracts=contracts, placements=placements,
                           customer_of=customer_of, as_of=as_of)
    drafts = build_entries(
        sources.obligations, through=through, chart=chart, documents=sources.documents, payments=sources.payments
    )
    lock = closed_through(session)
    plan = plan_postings(
        drafts, posted_entries(session), through=through, closed_through=lock, managed_kinds=MANAGED_KINDS
    )
    post(session, plan)
    changes = write_schedule(session, sources.obligations)
    return RunResult(
        through=through, obligations=len(sources.obligations), postings=plan, schedule_changes=changes,
        closed_through=lock, warnings=[*warnings, *sources.warnings],
    )


def write_schedule(session: Session, obligations: list[Obligation]) -> int:
    """Make the stored schedule equal the obligations' full schedules; return rows changed."""
    desired: dict[tuple[str, str, str], RevenueScheduleLine] = {}
    for ob in obligations:
        for line in ob.schedule():
            key = (ob.key, str(line.month), line.kind.value)
            desired[key] = RevenueScheduleLine(
                obligation_key=ob.key, contract_id=ob.contract_id, customer_external_id=ob.customer_external_id,
                product=ob.product, treatment=ob.treatment.value, line_kind=line.kind.value,
                period=str(line.month), period_start=line.month.first_day, period_end=line.month.last_day,
                amount_minor=line.amount_minor, currency=ob.currency, evidence=list(ob.evidence),
            )
    changes = 0
    for row in session.exec(select(RevenueScheduleLine)).all():
        key = (row.obligation_key, row.period, row.line_kind)
        want = desired.pop(key, None)
        if want is None:
            session.delete(row)
            changes += 1
        elif (row.amount_minor, row.product, row.treatment, row.contract_id, row.evidence) != (
            want.amount_minor, want.product, want.treatment, want.contract_id, want.evidence
        ):
            row.amount_minor, row.product, row.treatment = want.amount_minor, want.product, want.treatment
            row.contract_id, row.evidence = want.contract_id, want.evidence
            session.add(row)
            changes += 1
    for row in desired.values():
        session.add(row)
        changes += 1
    session.flush()
    return changes
