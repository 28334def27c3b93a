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
from decimal import Decimal

from sqlmodel import func, select

from subledger.core.db_types import decimal_text
from subledger.core.model.base import evidence_ref
from subledger.core.model.customer import Customer
from subledger.core.model.finding import Finding
from subledger.core.model.invoice import Invoice
from subledger.core.money import to_major
from subledger.sync.rules.base import ActionDraft, Drift, Rule, RuleContext

FIELDS = ("usage_to_date", "overage_to_date", "last_invoice", "open_findings")
WRITE_KIND = "update_customer_fields"


class CrmUsageFieldsRule(Rule):
    """Usage and billing figures the CRM should show, written back when they change."""

    name = "crm_usage_fields"
    reads = ("crm", "billing", "metering")
    description = "usage to date, overage to date, last invoice and open findings, written to the CRM"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        crm = [s for s in ctx.systems(ctx.settings.ownership.contract_terms) if ctx.can_write(s, WRITE_KIND)]
        if not crm:
            return
        model = ctx.read_model()
        billing = list(model.roles.billing_systems)
        ids = model.ids
        # Its own findings are left out of the count, or every write would change the count.
        open_counts = dict(
            ctx.session.exec(
                select(Finding.customer, func.count())
                .where(Finding.status == "open", Finding.rule != self.name)
                .group_by(Finding.customer)
            ).all()
        )
        active = [c for c in model.contracts() if c.system in crm and c.status == "active"]
        for view in model.views(active):
            c, canonical = view.contract, view.customer
            customer = ctx.session.exec(
                select(Customer).where(Customer.system == c.system, Customer.external_id == c.customer_external_id)
            ).first()
            pv = view.current(ctx.now)
            if customer is None or canonical is None or view.plan is None or pv is None:
                continue
            per_meter: dict[str, Decimal] = {}
            overage = 0
            for ln in pv.rating.lines:
                if ln.kind == "usage":
                    meter = view.meter_of(ln.component) or ln.component
                    per_meter[meter] = per_meter.get(meter, Decimal(0)) + (ln.usage or Decimal(0))
                    overage += ln.amount
            last = self._last_invoice(ctx, billing, ids.get(canonical, {}))
            wanted = {
                "usage_to_date": "; ".join(f"{m}: {decimal_text(v)}" for m, v in sorted(per_meter.items())),
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
