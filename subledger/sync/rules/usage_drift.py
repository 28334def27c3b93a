"""Rule ``usage_drift``: two metering systems disagree on a customer's usage of a meter in a month."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from sqlmodel import select

from subledger.core.model.base import evidence_ref
from subledger.core.model.usage import UsageRollup
from subledger.sync.rules.base import Drift, Rule, RuleContext


def month_end(d: date) -> date:
    """The last day of ``d``'s month."""
    nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)


class UsageDriftRule(Rule):
    """Monthly usage per customer and meter, compared between the reference metering system and each other.

    The reference is the first metering connection (by name) unless settings say otherwise;
    a relative difference above ``usage_drift_tolerance`` (default 1%) is a finding.
    """

    name = "usage_drift"
    reads = ("metering",)
    description = "usage totals that differ between two metering systems beyond the tolerance"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        systems = ctx.systems("metering")
        if len(systems) < 2:
            return
        reference, others = systems[0], systems[1:]
        ids = ctx.customer_map()
        totals: dict[tuple[str, str, str, date], Decimal] = defaultdict(Decimal)
        for r in ctx.session.exec(select(UsageRollup).where(UsageRollup.system.in_(systems))).all():
            canonical = ids.get((r.system, r.customer_external_id))
            if canonical is None:
                continue
            totals[(r.system, canonical, r.meter, r.day.replace(day=1))] += r.quantity_sum
        keys = {(c, m, month) for (_, c, m, month) in totals}
        tolerance = ctx.settings.usage_drift_tolerance
        for customer, meter, month in sorted(keys):
            ref = totals.get((reference, customer, meter, month), Decimal(0))
            for other in others:
                val = totals.get((other, customer, meter, month), Decimal(0))
                scale = max(abs(ref), abs(val))
                if scale == 0 or abs(ref - val) <= tolerance * scale:
                    continue
                yield Drift(
                    key=f"{customer}:{meter}:{month:%Y-%m}:{other}",
                    summary=f"{customer} used {ref} {meter} in {month:%Y-%m} per {reference} but {val} per {other}",
                    customer=customer,
                    period_start=month,
                    period_end=month_end(month),
                    evidence=[
                        evidence_ref(reference, "usage_rollup", f"{customer}/{meter}/{month:%Y-%m}", quantity=str(ref)),
                        evidence_ref(other, "usage_rollup", f"{customer}/{meter}/{month:%Y-%m}", quantity=str(val)),
                    ],
                    details={"reference": str(ref), "other": str(val), "difference": str(val - ref)},
                )
