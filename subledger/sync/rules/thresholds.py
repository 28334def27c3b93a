"""Rule ``thresholds``: a customer reaching configured fractions of an allotment, a
commitment or a credit balance in the current period.

Each threshold crossed in a period is one finding (its key holds the period and the
threshold), so it is raised once per threshold per period; when the period ends the rule
stops reporting it and the finding resolves itself. Notifiers (Slack, webhooks) announce
new ``thresholds`` findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from subledger.core.db_types import decimal_text
from subledger.core.model.base import evidence_ref
from subledger.sync.consumption import measures
from subledger.sync.rules.base import Drift, Rule, RuleContext


class ThresholdRule(Rule):
    """Allotment, commitment and credit-balance consumption against ``settings.thresholds``."""

    name = "thresholds"
    reads = ("crm", "metering", "billing")
    description = "customers reaching fractions (e.g. 80%, 100%) of an allotment, commitment or credit balance"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        model = ctx.read_model()
        thresholds = sorted(ctx.settings.thresholds)
        active = [c for c in model.contracts() if c.status == "active"]
        for view in model.views(active):
            pv = view.current(ctx.now)
            if view.plan is None or pv is None:
                continue  # cannot be rated (unbilled_usage reports it), or no period open now
            c, period = view.contract, pv.period
            canonical, customer = view.customer, view.who
            for m in measures(view, pv):
                what, used, limit, fraction = m.what, m.used, m.limit, m.fraction
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
                            "unit": m.unit,
                            "threshold": decimal_text(t),
                        },
                    )
