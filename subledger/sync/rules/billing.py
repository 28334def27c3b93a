"""Rules ``unbilled_usage``, ``over_billing`` and ``unmatched_invoice_line``: the contract
read model's expectation against the lines that pay it.

Everything comes from :mod:`subledger.sync.contracts`: each contract's ended, covered
billing periods rated by the engine, and the customer's billed invoice lines placed on
the contract, period and charge they pay (net of credit notes). Amounts are compared
per *charge* (``usage:<meter>``, ``flat_fee``, ``minimum_true_up``, ``adjustments``; see
:mod:`subledger.core.rating.charges`). Expected minus invoiced is unbilled when
positive and over-billed when negative, so late usage for an invoiced period shows up
as the delta alone. A period whose usage was not read is not judged. An invoice line no
contract explains is its own finding, never skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from subledger.core.db_types import decimal_text
from subledger.core.model.base import evidence_ref
from subledger.core.money import to_major
from subledger.core.rating.charges import FLAT_FEES, TRUE_UPS, meter_of
from subledger.sync.contracts import Charge, ContractView, PeriodView
from subledger.sync.findings import finding_id
from subledger.sync.rules.base import ActionDraft, Drift, Rule, RuleContext


def _billing_target(ctx: RuleContext) -> str | None:
    if ctx.settings.billing_connection:
        return ctx.settings.billing_connection
    billing = ctx.read_model().roles.billing_systems
    return billing[0] if billing else None


class _BillingRule(Rule):
    sign = 1
    reads = ("crm", "billing", "metering")

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        model = ctx.read_model()
        target = _billing_target(ctx)
        for view in model.views():
            if view.error is not None:
                if self.sign == 1:
                    c = view.contract
                    yield Drift(
                        key=f"invalid:{c.system}:{c.external_id}",
                        summary=f"contract {c.external_id} ({c.system}) cannot be rated: {view.error}",
                        customer=view.customer,
                        contract_id=c.id,
                        evidence=[evidence_ref(c.system, "contract", c.external_id)],
                    )
                continue
            assert view.plan is not None
            for pv in view.periods:
                if not pv.judged:
                    continue
                for charge in pv.charges(view.plan).values():
                    if charge.difference_minor * self.sign > 0:
                        yield self._drift(ctx, view, pv, charge, target)

    def _drift(
        self, ctx: RuleContext, view: ContractView, pv: PeriodView, charge: Charge, target: str | None
    ) -> Drift:
        c = view.contract
        currency = c.currency
        start = pv.period.start
        diff = charge.difference_minor
        model = ctx.read_model()
        usage_refs = [ev for ln in charge.expected if (ev := model.usage_evidence(view, ln)) is not None]
        # What a reviewer opens first: the contract, the invoice lines, the usage events; then
        # every reference the rated lines carry (aggregates, components, grants).
        evidence = [
            evidence_ref(c.system, "contract", c.external_id),
            *[ln.ref() for ln in charge.invoiced],
            *[evidence_ref(model.roles.usage_system or "store", "usage_events", view.usage_customer or "", **ev)
              for ev in usage_refs if ev["first_event"] is not None],
            *[ref for line in charge.expected for ref in line.evidence],
        ]
        what = "unbilled" if self.sign == 1 else "over-billed"
        pending = charge.pending_minor
        waiting = f", {to_major(pending, currency)} in corrections not billed yet" if pending else ""
        drift = Drift(
            key=f"{view.customer}:{c.external_id}:{charge.charge}:{start.isoformat()}",
            summary=f"{view.who}: {to_major(abs(diff), currency)} {currency} {what} for {charge.charge} in "
            f"{start:%Y-%m} (expected {to_major(charge.expected_minor, currency)}, invoiced "
            f"{to_major(charge.invoiced_minor, currency)}{waiting})",
            amount_minor=diff,
            currency=currency,
            customer=view.customer,
            contract_id=c.id,
            period_start=start,
            period_end=pv.period.end - timedelta(days=1),
            evidence=evidence,
            details={
                "charge": charge.charge,
                "expected_minor": charge.expected_minor,
                "invoiced_minor": charge.invoiced_minor,
                "components": sorted({ln.component for ln in charge.expected}),
                "pending_minor": pending,
                "pending": [ln.ref() for ln in charge.pending],
            },
        )
        if self.sign == 1 and target is not None:
            billed_as = [e for s, e in view.billing_accounts if s == target]
            missing = _still_to_plan(charge, drift)
            if billed_as and missing > 0:
                drift.actions.append(self._invoice(target, billed_as[0], view, pv, charge, drift, missing))
        return drift

    def _invoice(
        self, target: str, customer: str, view: ContractView, pv: PeriodView, charge: Charge, drift: Drift,
        amount: int,
    ) -> ActionDraft:
        """The correction: one line for the difference, carrying the contract, component,
        period and the quantity difference (never the period's whole quantity)."""
        period = pv.period
        meter = meter_of(charge.charge)
        kind = "usage" if meter else {FLAT_FEES: "recurring", TRUE_UPS: "true_up"}.get(charge.charge, "other")
        components = sorted({ln.component for ln in charge.expected})
        line: dict[str, Any] = {
            "line_key": "1",
            "kind": kind,
            "description": f"{charge.charge} {period.start:%Y-%m} (correction found by subledger)",
            "component": components[0] if len(components) == 1 else None,
            "meter": meter,
            "quantity": _quantity_difference(charge) if meter else None,
            "amount_minor": amount,
            "currency": drift.currency,
            "service_start": period.start.isoformat(),
            "service_end": (period.end - timedelta(days=1)).isoformat(),
        }
        currency = drift.currency or view.contract.currency
        return ActionDraft(
            kind="create_invoice",
            connection=target,
            summary=f"invoice {customer} {to_major(amount, currency)} {currency} "
            f"for {charge.charge} {period.start:%Y-%m}",
            amount_minor=amount,
            currency=currency,
            payload={
                "customer_external_id": customer,
                "contract_external_id": view.contract.external_id,
                "currency": currency,
                "status": "open",
                "total_minor": amount,
                "subtotal_minor": amount,
                "amount_due_minor": amount,
                "period_start": period.start.isoformat(),
                "period_end": (period.end - timedelta(days=1)).isoformat(),
                "lines": [line],
                "metadata": {"subledger_finding": finding_id(self.name, drift.key)},
            },
        )


def _still_to_plan(charge: Charge, drift: Drift) -> int:
    """What a new correction must bill: the gap less what pending corrections will bill.

    Corrections being written, written but not read back, or left as drafts are committed;
    approved ones are kept (``drift.keeps``) while the gap still needs them all, else
    superseded, so a correction is never planned twice for the same money.
    """
    gap = charge.difference_minor
    committed = sum(ln.amount_minor for ln in charge.pending if ln.pending != "approved")
    approved = {ln.action_id: 0 for ln in charge.pending if ln.pending == "approved" and ln.action_id}
    for ln in charge.pending:
        if ln.pending == "approved" and ln.action_id:
            approved[ln.action_id] += ln.amount_minor
    if gap >= committed + sum(approved.values()):
        drift.keeps.extend(approved)
        return gap - committed - sum(approved.values())
    return gap - committed


def _quantity_difference(charge: Charge) -> str | None:
    """Expected billable quantity minus the quantity already invoiced or pending (None when
    such a line gives no quantity, so the difference cannot be known)."""
    billed = [*charge.invoiced, *charge.pending]
    if any(ln.quantity is None for ln in billed):
        return None
    expected = sum((ln.quantity for ln in charge.expected if ln.kind == "usage"), Decimal(0))
    invoiced = sum((ln.quantity or Decimal(0) for ln in billed), Decimal(0))
    return decimal_text(expected - invoiced)


class UnbilledUsageRule(_BillingRule):
    """Charges the contract says are due that no invoice carries."""

    name = "unbilled_usage"
    description = "expected charges (the contract read model) minus invoiced charges, per customer, contract, " \
        "charge and period"
    sign = 1


class OverBillingRule(_BillingRule):
    """Invoiced charges above what the contract says."""

    name = "over_billing"
    description = "invoiced charges above the expected charges"
    sign = -1


class UnmatchedInvoiceLineRule(Rule):
    """A billed invoice line of a customer with contracts that no contract term explains."""

    name = "unmatched_invoice_line"
    reads = ("crm", "billing")
    description = "an invoice line no contract's terms explain (wrong currency, outside every term, or no " \
        "component, kind or meter the contract bills)"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        model = ctx.read_model()
        for ln in model.unplaced():
            who = model.canonical(ln.system, ln.customer) or ln.customer
            yield Drift(
                key=f"{ln.system}:{ln.invoice}:{ln.line_key}",
                summary=f"{who}: invoice {ln.number or ln.invoice} line {ln.line_key} "
                f"({to_major(ln.net_minor, ln.currency)} {ln.currency}) is not explained by a contract: {ln.reason}",
                amount_minor=ln.net_minor,
                currency=ln.currency,
                customer=model.canonical(ln.system, ln.customer),
                period_start=ln.day,
                evidence=[ln.ref()],
                details={"reason": ln.reason, "fix": ln.fix, "kind": ln.kind, "component": ln.component,
                         "meter": ln.meter},
            )
