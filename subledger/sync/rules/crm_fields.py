"""Rule ``crm_usage_fields``: keep usage to date, overage to date and the last invoice in the CRM.

For each CRM customer with an active contract, the current billing period is rated on the
usage so far. When the CRM's stored fields differ from the figures, the rule proposes one
``update_customer_fields`` write with the new values and, as ``base_version``, the values
subledger last read; a CRM that changed them since reports a conflict instead of being
overwritten. The CRM connector maps these canonical names onto its own fields.

Fields: ``usage_to_date`` ("api_calls: 12500; storage_gb: 40"), ``overage_to_date`` (major
units), ``last_invoice`` (the latest billed invoice's number), ``open_findings`` (count).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlmodel import func, select

from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError
from subledger.core.model.base import evidence_ref
from subledger.core.model.contract import Contract
from subledger.core.model.customer import Customer
from subledger.core.model.finding import Finding
from subledger.core.model.invoice import Invoice
from subledger.core.money import to_major
from subledger.core.rating import compile_terms, rate_periods
from subledger.core.terms import load_terms
from subledger.sync.rules.base import ActionDraft, Drift, Rule, RuleContext

FIELDS = ("usage_to_date", "overage_to_date", "last_invoice", "open_findings")
WRITE_KIND = "update_customer_fields"


class CrmUsageFieldsRule(Rule):
    """Usage and billing figures the CRM should show, written back when they change."""

    name = "crm_usage_fields"
    description = "usage to date, overage to date, last invoice and open findings, written to the CRM"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        crm = [s for s in ctx.systems(ctx.settings.ownership.contract_terms) if ctx.can_write(s, WRITE_KIND)]
        if not crm:
            return
        metering = ctx.systems(ctx.settings.ownership.usage)
        billing = [s for s in ctx.systems(ctx.settings.ownership.invoices) if s not in ctx.systems("erp")]
        ids = ctx.system_ids()
        today = ctx.now.date()
        # Its own findings are left out of the count, or every write would change the count.
        open_counts = dict(
            ctx.session.exec(
                select(Finding.customer, func.count())
                .where(Finding.status == "open", Finding.rule != self.name)
                .group_by(Finding.customer)
            ).all()
        )
        contracts = ctx.session.exec(
            select(Contract).where(Contract.system.in_(crm), Contract.status == "active").order_by(Contract.id)
        ).all()
        canonical_of = {(s, e): k for k, systems in ids.items() for s, exts in systems.items() for e in exts}
        for c in contracts:
            canonical = canonical_of.get((c.system, c.customer_external_id))
            customer = ctx.session.exec(
                select(Customer).where(Customer.system == c.system, Customer.external_id == c.customer_external_id)
            ).first()
            if customer is None or canonical is None:
                continue
            try:
                plan = compile_terms(load_terms(c.terms), contract_id=c.external_id, system=c.system)
            except ConfigError:
                continue
            periods = plan.periods(until=today)
            if not periods or not (periods[-1].start <= today < periods[-1].end):
                continue
            system = metering[0] if metering else None
            usage_customer = (ids[canonical].get(system) or [c.customer_external_id])[0] if system else None
            usage = ctx.usage(
                usage_customer or c.customer_external_id,
                [q for p in periods for q in plan.usage_queries(p)],
                system,
            )
            rated = rate_periods(plan, usage, periods=periods)[-1]
            meters = {u.id: u.meter for u in plan.usages}
            per_meter: dict[str, str] = {}
            overage = 0
            for ln in rated.lines:
                if ln.kind == "usage":
                    per_meter[meters.get(ln.component, ln.component)] = decimal_text(ln.usage or 0)
                    overage += ln.amount
            last = self._last_invoice(ctx, billing, ids.get(canonical, {}))
            wanted = {
                "usage_to_date": "; ".join(f"{m}: {v}" for m, v in sorted(per_meter.items())),
                "overage_to_date": decimal_text(to_major(overage, c.currency)),
                "last_invoice": last or "",
                "open_findings": str(open_counts.get(canonical, 0)),
            }
            current = {k: str((customer.attributes or {}).get(k, "") or "") for k in FIELDS}
            if wanted == current:
                continue
            changed = sorted(k for k in FIELDS if wanted[k] != current[k])
            yield Drift(
                key=f"{c.system}:{customer.external_id}",
                summary=f"{c.system} shows stale {', '.join(changed)} for {customer.name or canonical}",
                customer=canonical,
                contract_id=c.id,
                evidence=[
                    evidence_ref(c.system, "customer", customer.external_id),
                    evidence_ref(c.system, "contract", c.external_id),
                ],
                details={"wanted": wanted, "current": current},
                actions=[
                    ActionDraft(
                        kind=WRITE_KIND,
                        connection=c.system,
                        summary=f"update {', '.join(changed)} of {customer.name or canonical} in {c.system}",
                        payload={k: wanted[k] for k in changed},
                        target_external_id=customer.external_id,
                        base_version={k: (customer.attributes or {}).get(k) for k in changed},
                    )
                ],
            )

    def _last_invoice(self, ctx: RuleContext, billing: list[str], systems: dict[str, list[str]]) -> str | None:
        best = None
        for system in billing:
            for ext in systems.get(system, []):
                inv = ctx.session.exec(
                    select(Invoice)
                    .where(
                        Invoice.system == system,
                        Invoice.customer_external_id == ext,
                        Invoice.status.in_(("open", "paid")),
                    )
                    .order_by(Invoice.issued_at.desc(), Invoice.external_id.desc())
                ).first()
                if inv is not None and (best is None or _when(inv) > _when(best)):
                    best = inv
        return (best.number or best.external_id) if best else None


def _when(inv: Invoice) -> datetime:
    return inv.issued_at or datetime.min.replace(tzinfo=UTC)
