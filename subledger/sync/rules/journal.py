"""Rule ``journal_not_in_erp``: subledger's journal entries the ERP has not received.

Every posted entry (revenue recognition's journal) belongs in the general ledger. An entry
is in the ERP once a ``create_journal_entry`` action for it is done; until then this rule
reports it and proposes that action. The payload is the entry with its lines, and the
entry's stable ``external_id`` lets the ERP connector upsert it, so a retry or a re-run
never posts it twice. A reversing entry is posted like any other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlmodel import select

from subledger.core.model.action import Action
from subledger.core.model.base import evidence_ref
from subledger.core.model.journal import JournalEntry, JournalLine, journal_payload
from subledger.core.money import to_major
from subledger.sync.rules.base import ActionDraft, Drift, Rule, RuleContext

WRITE_KIND = "create_journal_entry"


class JournalNotInErpRule(Rule):
    """Journal entries not yet posted to the ERP, each with the action that posts it."""

    name = "journal_not_in_erp"
    reads = ("erp",)
    description = "journal entries not yet posted to the ERP"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        targets = [s for s in ctx.systems("erp") if ctx.can_write(s, WRITE_KIND)]
        if not targets:
            return
        erp = targets[0]
        posted = {
            str(a.payload.get("external_id"))
            for a in ctx.session.exec(
                select(Action).where(Action.kind == WRITE_KIND, Action.connection == erp, Action.status == "done")
            ).all()
        }
        entries = [
            e
            for e in ctx.session.exec(
                select(JournalEntry).order_by(JournalEntry.entry_date, JournalEntry.external_id)
            ).all()
            if e.external_id not in posted
        ]
        if not entries:
            return
        lines: dict[str, list[JournalLine]] = defaultdict(list)
        for ln in ctx.session.exec(select(JournalLine).where(JournalLine.entry_id.in_([e.id for e in entries]))):
            lines[ln.entry_id].append(ln)
        for e in entries:
            amount = sum(ln.debit_minor for ln in lines[e.id])
            yield Drift(
                key=e.external_id,
                summary=f"journal entry {e.external_id} ({e.period}, {to_major(amount, e.currency)} {e.currency}) "
                f"is not in {erp}",
                amount_minor=amount,
                currency=e.currency,
                evidence=[evidence_ref("subledger", "journal_entry", e.external_id), *e.source],
                details={"period": e.period, "kind": e.kind},
                actions=[
                    ActionDraft(
                        kind=WRITE_KIND,
                        connection=erp,
                        summary=f"post journal entry {e.external_id} to {erp}",
                        amount_minor=amount,
                        currency=e.currency,
                        payload=journal_payload(e, lines[e.id]),
                    )
                ],
            )
