"""Rule ``thresholds``: a customer reaching configured fractions of an allotment, a
commitment or a credit balance in the current period.

Each threshold crossed in a period is one finding (its key holds the period and the
threshold), so it is raised once per threshold per period; when the period ends the rule
stops reporting it and the finding resolves itself. Notifiers (Slack, webhooks) announce
new ``thresholds`` findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from sqlmodel import select

from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError
from subledger.core.model.base import evidence_ref
from subledger.core.model.contract import Contract
from subledger.core.rating import compile_terms, rate_periods
from subledger.core.terms import load_terms
from subledger.sync.rules.base import Drift, Rule, RuleContext


class ThresholdRule(Rule):
    """Allotment, commitment and credit-balance consumption against ``settings.thresholds``."""

    name = "thresholds"
    description = "customers reaching fractions (e.g. 80%, 100%) of an allotment, commitment or credit balance"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        crm = ctx.systems(ctx.settings.ownership.contract_terms)
        metering = ctx.systems(ctx.settings.ownership.usage)
        if not crm:
            return
        thresholds = sorted(ctx.settings.thresholds)
        ids = ctx.system_ids()
        canonical_of = {(s, e): c for c, systems in ids.items() for s, exts in systems.items() for e in exts}
        today = ctx.now.date()
        contracts = ctx.session.exec(
            select(Contract).where(Contract.system.in_(crm), Contract.status == "active").order_by(Contract.id)
        ).all()
        for c in contracts:
            try:
                plan = compile_terms(load_terms(c.terms), contract_id=c.external_id, system=c.system)
            except ConfigError:
                continue
            periods = plan.periods(until=today)
            if not periods or not (periods[-1].start <= today < periods[-1].end):
                continue  # the contract has no open period today
            canonical = canonical_of.get((c.system, c.customer_external_id))
            system = metering[0] if metering else None
            customer = c.customer_external_id
            if system and canonical and ids.get(canonical, {}).get(system):
                customer = ids[canonical][system][0]
            usage = ctx.usage(customer, [q for p in periods for q in plan.usage_queries(p)], system)
            rated = rate_periods(plan, usage, periods=periods)[-1]
            period = rated.period
            measures: list[tuple[str, Decimal, Decimal, str]] = []  # (what, used, limit, unit)
            for u in plan.usages:
                if u.allotment is None or u.allotment.quantity <= 0:
                    continue
                used = sum((ln.usage or Decimal(0) for ln in rated.lines if ln.component == u.id), Decimal(0))
                measures.append((f"allotment:{u.id}", used, u.allotment.quantity, u.meter))
            spend = sum(ln.amount for ln in rated.lines if ln.kind not in ("minimum_true_up", "credit"))
            for cm in plan.commitments:
                if cm.minimum and not cm.per_term and cm.amount_minor > 0:
                    measures.append((f"commitment:{cm.id}", Decimal(spend), Decimal(cm.amount_minor), c.currency))
            for grant in plan.grants:
                balance = rated.state.credits.get(grant.id)
                if balance is None or not grant.amount:
                    continue
                if grant.expires_at is not None and grant.expires_at <= datetime.combine(period.start, time(),
                                                                                         tzinfo=UTC):
                    continue  # expired before this period: nothing left to use up (breakage, not usage)
                granted = Decimal(grant.amount) + sum((Decimal(a) for _, a in grant.top_ups), Decimal(0))
                used = granted - Decimal(balance.balance)
                measures.append((f"credits:{grant.id}", used, granted, c.currency if grant.money else grant.meter))
            for what, used, limit, unit in measures:
                fraction = used / limit
                for t in thresholds:
                    if fraction < t:
                        break
                    yield Drift(
                        key=f"{canonical or customer}:{c.external_id}:{what}:{period.start.isoformat()}:{t}",
                        summary=f"{canonical or customer} reached {t * 100:.0f}% of {what} in the period from "
                        f"{period.start} ({decimal_text(fraction * 100)[:6]}% used)",
                        customer=canonical,
                        contract_id=c.id,
                        period_start=period.start,
                        period_end=period.end - timedelta(days=1),
                        evidence=[evidence_ref(c.system, "contract", c.external_id)],
                        details={
                            "measure": what,
                            "used": decimal_text(used),
                            "limit": decimal_text(limit),
                            "unit": unit,
                            "threshold": decimal_text(t),
                        },
                    )
