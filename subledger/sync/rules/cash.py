"""Cash rules: unapplied payments, and invoices paid in billing but open in the ERP."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlmodel import select

from subledger.core.model.base import evidence_ref
from subledger.core.model.invoice import Invoice
from subledger.core.model.payment import Payment, PaymentApplication
from subledger.core.money import to_major
from subledger.sync.rules.base import Drift, Rule, RuleContext
from subledger.sync.rules.matching import erp_counterparts


class UnappliedPaymentRule(Rule):
    """A succeeded payment whose applications to invoices do not add up to its amount."""

    name = "unapplied_payment"
    reads = ("billing", "erp")
    description = "payments (in any system) not fully applied to invoices"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        applied: dict[str, int] = defaultdict(int)
        for app in ctx.session.exec(select(PaymentApplication)).all():
            applied[app.payment_id] += app.amount_minor
        customers = ctx.customer_map()
        payments = ctx.session.exec(
            select(Payment).where(Payment.status == "succeeded").order_by(Payment.system, Payment.external_id)
        ).all()
        for p in payments:
            unapplied = p.amount_minor - applied[p.id]
            if unapplied <= 0:
                continue
            yield Drift(
                key=f"{p.system}:{p.external_id}",
                summary=f"payment {p.external_id} in {p.system}: {to_major(unapplied, p.currency)} of "
                f"{to_major(p.amount_minor, p.currency)} {p.currency} is not applied to any invoice",
                amount_minor=unapplied,
                currency=p.currency,
                customer=customers.get((p.system, p.customer_external_id)),
                evidence=[evidence_ref(p.system, "payment", p.external_id, customer=p.customer_external_id)],
                details={"payment_amount_minor": p.amount_minor, "applied_minor": applied[p.id]},
            )


class PaidInBillingOpenInErpRule(Rule):
    """An invoice the billing system marks paid while the ERP still shows it open."""

    name = "paid_in_billing_open_in_erp"
    reads = ("billing", "erp")
    description = "invoices paid in billing but open in the ERP"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        erp = ctx.systems("erp")
        billing = [s for s in ctx.systems("billing") if s not in erp]
        if not erp or not billing:
            return
        customers = ctx.customer_map()
        invoices = ctx.session.exec(select(Invoice).where(Invoice.system.in_(billing), Invoice.status == "paid")).all()
        counterparts = erp_counterparts(ctx.session, erp)
        for inv in invoices:
            twin = counterparts.get((inv.system, inv.external_id)) or counterparts.get(("#", inv.number or ""))
            if twin is None or twin.status == "paid" or twin.amount_due_minor <= 0:
                continue
            yield Drift(
                key=f"{inv.system}:{inv.external_id}",
                summary=f"invoice {inv.number or inv.external_id} is paid in {inv.system} but "
                f"{twin.system} shows {to_major(twin.amount_due_minor, twin.currency)} {twin.currency} still due",
                amount_minor=twin.amount_due_minor,
                currency=twin.currency,
                customer=customers.get((inv.system, inv.customer_external_id)),
                evidence=[
                    evidence_ref(inv.system, "invoice", inv.external_id),
                    evidence_ref(twin.system, "invoice", twin.external_id),
                ],
            )
