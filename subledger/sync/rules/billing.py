"""Rules ``unbilled_usage`` and ``over_billing``: expected charges against invoiced charges.

Expected charges come from rating each contract's ended billing periods (see
:mod:`subledger.sync.expected`). Invoiced charges are the lines of the customer's invoices in
the billing systems whose service starts in the period. Both sides are grouped per
*charge*: ``usage:<meter>`` for usage, ``flat_fee``, ``minimum_true_up``, and
``adjustments`` (discounts, credits and caps). Expected minus invoiced, per customer,
contract, charge and period, is unbilled when positive and over-billed when negative.
Late usage for an invoiced period therefore shows up as the delta alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlmodel import select

from subledger.core.db_types import decimal_text
from subledger.core.model.base import evidence_ref
from subledger.core.model.invoice import Invoice, InvoiceLine
from subledger.core.money import to_major
from subledger.sync.expected import ExpectedContract, expected_contracts
from subledger.sync.findings import finding_id
from subledger.sync.rules.base import ActionDraft, Drift, Rule, RuleContext

BILLED_STATUSES = ("open", "paid", "uncollectible")
RATED_TO_CHARGE = {
    "flat_fee": "flat_fee",
    "minimum_true_up": "minimum_true_up",
    "discount": "adjustments",
    "credit": "adjustments",
    "maximum_cap": "adjustments",
}
INVOICED_TO_CHARGE = {
    "recurring": "flat_fee",
    "flat_fee": "flat_fee",
    "true_up": "minimum_true_up",
    "minimum_true_up": "minimum_true_up",
    "discount": "adjustments",
    "credit": "adjustments",
    "maximum_cap": "adjustments",
}


def invoiced_charge(line: InvoiceLine | BilledLine) -> str | None:
    """The charge an invoice line pays for, or None (tax, and lines we cannot place)."""
    if line.kind == "usage":
        return f"usage:{line.meter}" if line.meter else None
    return INVOICED_TO_CHARGE.get(line.kind)


class _Comparison:
    """Expected and invoiced amounts per (contract, period, charge), with their evidence."""

    def __init__(self) -> None:
        self.expected: dict[tuple[str, date, str], int] = defaultdict(int)
        self.invoiced: dict[tuple[str, date, str], int] = defaultdict(int)
        self.expected_lines: dict[tuple[str, date, str], list[Any]] = defaultdict(list)
        self.invoiced_refs: dict[tuple[str, date, str], list[dict[str, Any]]] = defaultdict(list)


def compare(ctx: RuleContext) -> tuple[list[ExpectedContract], _Comparison]:
    """Rate every contract and place every invoice line; the shared work of both rules."""
    cache = ctx.session.info.get("subledger.billing_comparison")
    if cache is not None and cache[0] is ctx:
        return cache[1], cache[2]
    terms_systems = ctx.systems(ctx.settings.ownership.contract_terms)
    metering = ctx.systems(ctx.settings.ownership.usage)
    billing = [s for s in ctx.systems(ctx.settings.ownership.invoices) if s not in ctx.systems("erp")]
    through = ctx.now.date()
    contracts = list(
        expected_contracts(
            ctx.session,
            contract_systems=terms_systems,
            metering_system=metering[0] if metering else None,
            through=through,
            index=ctx.rollup_index(metering[0] if metering else None),
        )
    )
    cmp = _Comparison()
    ids = ctx.system_ids()
    invoices = billed_invoices(ctx, billing)
    for ec in contracts:
        for rated in ec.periods:
            for line in rated.lines:
                charge = (
                    f"usage:{ec.meter_of(line.component)}"
                    if line.kind == "usage"
                    else RATED_TO_CHARGE.get(line.kind, line.kind)
                )
                key = (ec.contract.id, rated.period.start, charge)
                cmp.expected[key] += line.amount
                cmp.expected_lines[key].append(line)
        if ec.customer is None or not ec.periods:
            continue
        billed_ids = {(s, e) for s in billing for e in ids.get(ec.customer, {}).get(s, [])}
        if not billed_ids:
            continue
        periods = [r.period for r in ec.periods]
        for system, external_id in sorted(billed_ids):
            for inv, lines in invoices.get((system, external_id), []):
                if inv.currency != ec.contract.currency:
                    continue
                for ln in lines:
                    charge = invoiced_charge(ln)
                    start = ln.service_start or inv.period_start
                    if charge is None or start is None:
                        continue
                    for p in periods:
                        if p.start <= start < p.end:
                            key = (ec.contract.id, p.start, charge)
                            cmp.invoiced[key] += ln.amount_minor
                            cmp.invoiced_refs[key].append(
                                evidence_ref(
                                    inv.system,
                                    "invoice_line",
                                    f"{inv.external_id}/{ln.line_key}",
                                    invoice=inv.number or inv.external_id,
                                    amount_minor=ln.amount_minor,
                                )
                            )
                            break
    ctx.session.info["subledger.billing_comparison"] = (ctx, contracts, cmp)
    return contracts, cmp


class BilledInvoice(NamedTuple):
    """The invoice columns the comparison needs (rows, not ORM objects: there are many)."""

    id: str
    system: str
    external_id: str
    number: str | None
    customer_external_id: str
    currency: str
    period_start: date | None


class BilledLine(NamedTuple):
    """The invoice-line columns the comparison needs."""

    invoice_id: str
    line_key: str
    kind: str
    meter: str | None
    amount_minor: int
    service_start: date | None


def billed_invoices(
    ctx: RuleContext, billing: list[str]
) -> dict[tuple[str, str], list[tuple[BilledInvoice, list[BilledLine]]]]:
    """Every billed invoice of the billing systems with its lines, by (system, customer id)."""
    billed = (Invoice.system.in_(billing), Invoice.status.in_(BILLED_STATUSES))
    rows = [
        BilledInvoice(*r)
        for r in ctx.session.exec(
            select(
                Invoice.id,
                Invoice.system,
                Invoice.external_id,
                Invoice.number,
                Invoice.customer_external_id,
                Invoice.currency,
                Invoice.period_start,
            ).where(*billed)
        ).all()
    ]
    by_invoice: dict[str, list[BilledLine]] = defaultdict(list)
    if rows:
        lines = ctx.session.exec(
            select(
                InvoiceLine.invoice_id,
                InvoiceLine.line_key,
                InvoiceLine.kind,
                InvoiceLine.meter,
                InvoiceLine.amount_minor,
                InvoiceLine.service_start,
            )
            .join(Invoice, InvoiceLine.invoice_id == Invoice.id)
            .where(*billed)
        ).all()
        for ln in lines:
            by_invoice[ln[0]].append(BilledLine(*ln))
    out: dict[tuple[str, str], list[tuple[BilledInvoice, list[BilledLine]]]] = defaultdict(list)
    for inv in rows:
        out[(inv.system, inv.customer_external_id)].append((inv, by_invoice.get(inv.id, [])))
    return out


def _billing_target(ctx: RuleContext) -> str | None:
    if ctx.settings.billing_connection:
        return ctx.settings.billing_connection
    billing = [s for s in ctx.systems(ctx.settings.ownership.invoices) if s not in ctx.systems("erp")]
    return billing[0] if billing else None


class _BillingRule(Rule):
    sign = 1

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        contracts, cmp = compare(ctx)
        by_id = {ec.contract.id: ec for ec in contracts}
        for ec in contracts:
            if ec.error is not None and self.sign == 1:
                yield Drift(
                    key=f"invalid:{ec.contract.system}:{ec.contract.external_id}",
                    summary=f"contract {ec.contract.external_id} ({ec.contract.system}) cannot be rated: {ec.error}",
                    customer=ec.customer,
                    contract_id=ec.contract.id,
                    evidence=[evidence_ref(ec.contract.system, "contract", ec.contract.external_id)],
                )
        ids = ctx.system_ids()
        target = _billing_target(ctx)
        for key in sorted(set(cmp.expected) | set(cmp.invoiced)):
            contract_id, start, charge = key
            diff = cmp.expected.get(key, 0) - cmp.invoiced.get(key, 0)
            if diff * self.sign <= 0:
                continue
            ec = by_id[contract_id]
            period = next(r.period for r in ec.periods if r.period.start == start)
            currency = ec.contract.currency
            lines = cmp.expected_lines.get(key, [])
            evidence = [
                evidence_ref(ec.contract.system, "contract", ec.contract.external_id),
                *[ref for line in lines for ref in line.evidence],
                *cmp.invoiced_refs.get(key, []),
            ]
            drift_key = f"{ec.customer}:{ec.contract.external_id}:{charge}:{start.isoformat()}"
            what = "unbilled" if self.sign == 1 else "over-billed"
            expected_major = to_major(cmp.expected.get(key, 0), currency)
            invoiced_major = to_major(cmp.invoiced.get(key, 0), currency)
            drift = Drift(
                key=drift_key,
                summary=f"{ec.customer or ec.contract.customer_external_id}: {to_major(abs(diff), currency)} "
                f"{currency} {what} for {charge} in {start:%Y-%m} "
                f"(expected {expected_major}, invoiced {invoiced_major})",
                amount_minor=diff,
                currency=currency,
                customer=ec.customer,
                contract_id=ec.contract.id,
                period_start=period.start,
                period_end=period.end - timedelta(days=1),
                evidence=evidence,
                details={
                    "charge": charge,
                    "expected_minor": cmp.expected.get(key, 0),
                    "invoiced_minor": cmp.invoiced.get(key, 0),
                },
            )
            if self.sign == 1 and target is not None and ec.customer is not None:
                billed_as = ids.get(ec.customer, {}).get(target)
                if billed_as:
                    drift.actions.append(self._invoice(ctx, target, billed_as[0], drift, lines, period, charge))
            yield drift

    def _invoice(
        self, ctx: RuleContext, target: str, customer: str, drift: Drift, lines: list[Any], period: Any, charge: str
    ) -> ActionDraft:
        quantity = sum((ln.quantity for ln in lines if ln.kind == "usage"), Decimal(0))
        meter = charge.removeprefix("usage:") if charge.startswith("usage:") else None
        kind = "usage" if meter else {"flat_fee": "recurring", "minimum_true_up": "true_up"}.get(charge, "other")
        line = {
            "line_key": "1",
            "kind": kind,
            "description": f"{charge} {period.start:%Y-%m} (correction found by subledger)",
            "component": lines[0].component if lines else None,
            "meter": meter,
            "quantity": decimal_text(quantity) if meter else None,
            "amount_minor": drift.amount_minor,
            "currency": drift.currency,
            "service_start": period.start.isoformat(),
            "service_end": (period.end - timedelta(days=1)).isoformat(),
        }
        return ActionDraft(
            kind="create_invoice",
            connection=target,
            summary=f"invoice {customer} {to_major(drift.amount_minor, drift.currency or 'USD')} {drift.currency} "
            f"for {charge} {period.start:%Y-%m}",
            amount_minor=drift.amount_minor,
            currency=drift.currency,
            payload={
                "customer_external_id": customer,
                "currency": drift.currency,
                "status": "open",
                "total_minor": drift.amount_minor,
                "subtotal_minor": drift.amount_minor,
                "amount_due_minor": drift.amount_minor,
                "period_start": period.start.isoformat(),
                "period_end": (period.end - timedelta(days=1)).isoformat(),
                "lines": [line],
                "metadata": {"subledger_finding": finding_id(self.name, drift.key)},
            },
        )


class UnbilledUsageRule(_BillingRule):
    """Charges the contract says are due that no invoice carries."""

    name = "unbilled_usage"
    description = "expected charges (rating engine) minus invoiced charges, per customer, contract, charge, period"
    sign = 1


class OverBillingRule(_BillingRule):
    """Invoiced charges above what the contract says."""

    name = "over_billing"
    description = "invoiced charges above the expected charges"
    sign = -1
