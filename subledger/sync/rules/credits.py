"""Rule ``expired_credit_unrecognized``: prepaid credit that expired unused, with no breakage booked.

A customer who paid for credits and let some expire has no claim on them any more: the
unused balance stops being a contract liability and becomes breakage revenue (ASC 606-10-55-48,
IFRS 15.B46). Until it is booked, the books overstate deferred revenue and understate
revenue by that balance.

For every *paid*, money-denominated credit grant of a billing system that expired by
"now", the unused balance at expiry is the grant plus its top-ups, less its draw-downs
(and their reversals) before the expiry, all read from the grant's credit ledger. A grant
whose ledger is empty is skipped: without the ledger nothing says what was used. The
breakage already booked is what subledger's journal credits to ``breakage_revenue`` for
the grant's obligation (``credit_grant:<system>:<id>``). The finding is the difference;
it resolves itself once revenue recognition (``subledger revrec run``) books the breakage.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import func
from sqlmodel import select

from subledger.core.model.base import evidence_ref
from subledger.core.model.credit import CreditGrant, CreditLedgerEntry
from subledger.core.model.journal import JournalLine
from subledger.core.money import to_major
from subledger.sync.rules.base import Drift, Rule, RuleContext

BREAKAGE_ROLE = "breakage_revenue"
# Ledger movements that change what is left to use (``grant`` repeats the grant's face value).
BALANCE_KINDS = ("top_up", "draw_down", "reversal")


def obligation_key(grant: CreditGrant) -> str:
    """The revenue obligation revenue recognition keeps for a paid grant."""
    return f"credit_grant:{grant.system}:{grant.external_id}"


class ExpiredCreditUnrecognizedRule(Rule):
    """Paid credit grants that expired with a balance whose breakage is not (fully) booked."""

    name = "expired_credit_unrecognized"
    reads = ("billing",)
    description = "prepaid credit that expired unused while its breakage revenue is not booked"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        billing = [s for s in ctx.systems(ctx.settings.ownership.invoices) if s not in ctx.systems("erp")]
        if not billing:
            return
        grants = ctx.session.exec(
            select(CreditGrant)
            .where(
                CreditGrant.system.in_(billing),
                CreditGrant.category == "paid",
                CreditGrant.amount_minor.is_not(None),  # type: ignore[union-attr]
                CreditGrant.expires_at.is_not(None),  # type: ignore[union-attr]
                CreditGrant.expires_at <= ctx.now,  # type: ignore[operator]
            )
            .order_by(CreditGrant.system, CreditGrant.external_id)
        ).all()
        if not grants:
            return
        ledger: dict[str, list[CreditLedgerEntry]] = defaultdict(list)
        for entry in ctx.session.exec(
            select(CreditLedgerEntry)
            .where(CreditLedgerEntry.grant_id.in_([g.id for g in grants]))  # type: ignore[attr-defined]
            .order_by(CreditLedgerEntry.occurred_at, CreditLedgerEntry.id)
        ):
            ledger[entry.grant_id].append(entry)
        booked = dict(
            ctx.session.exec(
                select(JournalLine.obligation_key, func.sum(JournalLine.credit_minor - JournalLine.debit_minor))
                .where(
                    JournalLine.role == BREAKAGE_ROLE,
                    JournalLine.obligation_key.in_([obligation_key(g) for g in grants]),  # type: ignore[union-attr]
                )
                .group_by(JournalLine.obligation_key)
            ).all()
        )
        canonical = ctx.customer_map()
        for g in grants:
            entries = ledger.get(g.id)
            if not entries:
                continue
            assert g.amount_minor is not None and g.expires_at is not None
            unused = g.amount_minor + sum(
                e.amount_minor or 0 for e in entries if e.kind in BALANCE_KINDS and e.occurred_at < g.expires_at
            )
            recognized = int(booked.get(obligation_key(g)) or 0)
            missing = unused - recognized
            if unused <= 0 or missing <= 0:
                continue
            currency = (g.currency or "").upper()
            expired = g.expires_at.date()
            yield Drift(
                key=f"{g.system}:{g.external_id}",
                summary=(
                    f"{to_major(unused, currency)} {currency} of prepaid credit expired unused on {expired} "
                    f"(grant {g.external_id}); {to_major(recognized, currency)} {currency} of breakage is booked: "
                    "run `subledger revrec run` to recognize the rest"
                ),
                amount_minor=missing,
                currency=currency,
                customer=canonical.get((g.system, g.customer_external_id)),
                period_start=expired.replace(day=1),
                evidence=[
                    evidence_ref(g.system, "credit_grant", g.external_id),
                    *(ref for e in entries if e.kind == "expiry" for ref in (e.evidence or [])),
                ],
                details={
                    "grant": g.external_id,
                    "expired_at": g.expires_at.isoformat(),
                    "granted_minor": g.amount_minor,
                    "unused_minor": unused,
                    "breakage_booked_minor": recognized,
                },
            )
