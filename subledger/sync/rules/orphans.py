"""Orphan rules: records one system has and another should have, but does not."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import select

from subledger.core.model.base import evidence_ref
from subledger.core.model.contract import Contract
from subledger.core.model.customer import Customer
from subledger.core.model.invoice import Invoice, InvoiceLine
from subledger.core.money import to_major
from subledger.sync.rules.base import ActionDraft, Drift, Rule, RuleContext
from subledger.sync.rules.matching import erp_counterparts

LIVE_CONTRACT = ("active", "signed")
LIVE_INVOICE = ("open", "paid", "uncollectible")


def _separate(ctx: RuleContext, a: str, b: str) -> tuple[list[str], list[str]]:
    """Systems playing role ``a`` and systems playing ``b`` but not ``a``."""
    first = ctx.systems(a)
    return first, [s for s in ctx.systems(b) if s not in first]


class ContractWithoutBillingRule(Rule):
    """A signed CRM contract whose customer has no subscription in any billing system."""

    name = "contract_without_billing"
    reads = ("crm", "billing")
    description = "signed contracts with no billing set up"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        crm, billing = _separate(ctx, "crm", "billing")
        if not crm or not billing:
            return
        ids = ctx.customer_map()
        contracts = ctx.session.exec(select(Contract).where(Contract.status.in_(LIVE_CONTRACT))).all()
        billed = {ids.get((c.system, c.customer_external_id)) for c in contracts if c.system in billing}
        for c in contracts:
            if c.system not in crm:
                continue
            canonical = ids.get((c.system, c.customer_external_id))
            if canonical in billed:
                continue
            yield Drift(
                key=f"{c.system}:{c.external_id}",
                summary=f"contract {c.name or c.external_id} ({c.system}) is signed but "
                f"{canonical or c.customer_external_id} has no subscription in {', '.join(billing)}",
                customer=canonical,
                contract_id=c.id,
                evidence=[evidence_ref(c.system, "contract", c.external_id)],
            )


class BillingCustomerWithoutContractRule(Rule):
    """A customer billed in a billing system with no contract in the CRM."""

    name = "billing_customer_without_contract"
    reads = ("crm", "billing")
    description = "billing customers with no CRM contract"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        crm, billing = _separate(ctx, "crm", "billing")
        if not crm or not billing:
            return
        ids = ctx.customer_map()
        with_contract = {
            ids.get((c.system, c.customer_external_id))
            for c in ctx.session.exec(select(Contract).where(Contract.system.in_(crm))).all()
        }
        for cust in ctx.session.exec(select(Customer).where(Customer.system.in_(billing))).all():
            canonical = ids.get((cust.system, cust.external_id))
            if canonical is not None and canonical in with_contract:
                continue
            yield Drift(
                key=f"{cust.system}:{cust.external_id}",
                summary=f"{cust.system} customer {cust.name or cust.external_id} has no contract in {', '.join(crm)}",
                customer=canonical,
                evidence=[evidence_ref(cust.system, "customer", cust.external_id)],
            )


class InvoiceMissingFromErpRule(Rule):
    """A billing invoice absent from the ERP, or there with another total."""

    name = "invoice_missing_from_erp"
    reads = ("billing", "erp")
    description = "billing invoices missing from the ERP, or there with another amount"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        erp, billing = _separate(ctx, "erp", "billing")
        if not erp or not billing:
            return
        ids = ctx.customer_map()
        counterparts = erp_counterparts(ctx.session, erp)
        invoices = ctx.session.exec(
            select(Invoice).where(Invoice.system.in_(billing), Invoice.status.in_(LIVE_INVOICE)).order_by(Invoice.id)
        ).all()
        for inv in invoices:
            twin = counterparts.get((inv.system, inv.external_id)) or counterparts.get(("#", inv.number or ""))
            canonical = ids.get((inv.system, inv.customer_external_id))
            evidence = [evidence_ref(inv.system, "invoice", inv.external_id, number=inv.number)]
            if twin is None:
                lines = ctx.session.exec(select(InvoiceLine).where(InvoiceLine.invoice_id == inv.id)).all()
                yield Drift(
                    key=f"{inv.system}:{inv.external_id}",
                    summary=f"invoice {inv.number or inv.external_id} ({to_major(inv.total_minor, inv.currency)} "
                    f"{inv.currency}) from {inv.system} is not in {erp[0]}",
                    amount_minor=inv.total_minor,
                    currency=inv.currency,
                    customer=canonical,
                    evidence=evidence,
                    actions=[
                        ActionDraft(
                            kind="create_invoice",
                            connection=erp[0],
                            summary=f"create invoice {inv.number or inv.external_id} in {erp[0]}",
                            amount_minor=inv.total_minor,
                            currency=inv.currency,
                            payload=_erp_invoice_payload(inv, lines, canonical),
                        )
                    ],
                )
            elif twin.total_minor != inv.total_minor:
                yield Drift(
                    key=f"{inv.system}:{inv.external_id}",
                    summary=f"invoice {inv.number or inv.external_id} totals {to_major(inv.total_minor, inv.currency)} "
                    f"in {inv.system} but {to_major(twin.total_minor, twin.currency)} in {twin.system}",
                    amount_minor=inv.total_minor - twin.total_minor,
                    currency=inv.currency,
                    customer=canonical,
                    evidence=[*evidence, evidence_ref(twin.system, "invoice", twin.external_id)],
                )


def _erp_invoice_payload(inv: Invoice, lines: list[InvoiceLine], customer: str | None) -> dict:
    return {
        "source_system": inv.system,
        "source_external_id": inv.external_id,
        "number": inv.number,
        "customer": customer or inv.customer_external_id,
        "currency": inv.currency,
        "issued_at": inv.issued_at.isoformat() if inv.issued_at else None,
        "total_minor": inv.total_minor,
        "tax_minor": inv.tax_minor,
        "lines": [
            {
                "description": ln.description,
                "amount_minor": ln.amount_minor,
                "quantity": str(ln.quantity) if ln.quantity is not None else None,
                "service_start": ln.service_start.isoformat() if ln.service_start else None,
                "service_end": ln.service_end.isoformat() if ln.service_end else None,
                "component": ln.component,
            }
            for ln in lines
        ],
    }


class CustomerMissingFromErpRule(Rule):
    """A customer with invoices in billing and no customer record in the ERP."""

    name = "customer_missing_from_erp"
    reads = ("billing", "erp")
    description = "billed customers missing from the ERP"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        erp, billing = _separate(ctx, "erp", "billing")
        if not erp or not billing:
            return
        ids = ctx.customer_map()
        in_erp = {canonical for (system, _), canonical in ids.items() if system in erp}
        billed = ctx.session.exec(
            select(Invoice.system, Invoice.customer_external_id).where(Invoice.system.in_(billing)).distinct()
        ).all()
        for system, external_id in sorted(billed):
            canonical = ids.get((system, external_id))
            if canonical is None or canonical in in_erp:
                continue
            cust = ctx.session.exec(
                select(Customer).where(Customer.system == system, Customer.external_id == external_id)
            ).first()
            yield Drift(
                key=canonical,
                summary=f"customer {canonical} is billed in {system} but missing from {erp[0]}",
                customer=canonical,
                evidence=[evidence_ref(system, "customer", external_id)],
                actions=[
                    ActionDraft(
                        kind="create_customer",
                        connection=erp[0],
                        summary=f"create customer {canonical} in {erp[0]}",
                        payload={
                            "external_id": canonical,
                            "name": cust.name if cust else canonical,
                            "email": cust.email if cust else None,
                            "currency": cust.currency if cust else None,
                        },
                    )
                ],
            )
