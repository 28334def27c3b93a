"""Rule ``terms_drift``: the CRM's contract and the billing system's configuration disagree.

Both sides are compiled by the rating engine and reduced to comparable *facts*: currency,
dates, each usage component (keyed by meter and dimension values) with its price model,
unit price, tiers, package and included units, each flat fee's amount and quantity, and each
commitment. Differing facts make one finding per pair of contracts, whose amount is what
the billing configuration under-charges (positive) or over-charges (negative) against the
contract for the last ended period's usage.

Conflicts: the CRM owns contract terms. When both sides changed since the last sync and
still disagree, the finding says so (``details.conflict``) instead of proposing either side.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from sqlmodel import select

from subledger.core.db_types import decimal_text, utcnow
from subledger.core.model.base import evidence_ref
from subledger.core.model.baseline import Baseline
from subledger.core.model.contract import Contract
from subledger.core.money import to_major
from subledger.core.rating import RatingPlan
from subledger.sync.contracts import RATED_STATUSES, ContractView
from subledger.sync.rules.base import Drift, Rule, RuleContext


def _d(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value.normalize())


def _price_facts(price: Any) -> dict[str, Any]:
    if price is None:
        return {}
    return {
        "model": price.model,
        "unit_price": _d(price.unit_price),
        "tiers": [[_d(up), _d(unit), _d(flat)] for up, unit, flat in price.tiers] or None,
        "package": [_d(price.package_size), _d(price.package_price)] if price.package_size else None,
        "rate": _d(price.rate),
    }


def terms_facts(plan: RatingPlan, contract: Contract) -> dict[str, Any]:
    """The comparable facts of a compiled contract, as a flat mapping of path -> value."""
    facts: dict[str, Any] = {
        "currency": plan.currency,
        "start_date": contract.start_date.isoformat(),
        "end_date": contract.end_date.isoformat() if contract.end_date else None,
    }
    for u in plan.usages:
        base = f"usage[{u.meter}]"
        for k, v in _price_facts(u.price).items():
            if v is not None:
                facts[f"{base}.{k}"] = v
        for values, price in u.cells:
            cell = ",".join(f"{k}={v}" for k, v in values)
            for k, v in _price_facts(price).items():
                if v is not None:
                    facts[f"{base}[{cell}].{k}"] = v
        if u.allotment is not None:
            facts[f"{base}.included"] = _d(u.allotment.quantity)
            facts[f"{base}.included_per"] = "term" if u.allotment.per_term else "period"
    fees = sorted((_d(f.amount), _d(f.quantity), f.advance) for f in plan.fees)
    for i, (amount, quantity, advance) in enumerate(fees):
        facts[f"flat_fee[{i}]"] = {
            "amount": amount,
            "quantity": quantity,
            "timing": "advance" if advance else "arrears",
        }
    for c in sorted(plan.commitments, key=lambda c: (not c.minimum, c.per_term, c.amount)):
        kind = "minimum" if c.minimum else "maximum"
        facts[f"{kind}[{'term' if c.per_term else 'period'}]"] = _d(c.amount)
    return facts


def diff_facts(crm: dict[str, Any], billing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Facts that differ: path -> {"crm": value, "billing": value}."""
    return {
        k: {"crm": crm.get(k), "billing": billing.get(k)}
        for k in sorted(set(crm) | set(billing))
        if crm.get(k) != billing.get(k)
    }


class TermsDriftRule(Rule):
    """CRM contract terms against the billing system's configuration."""

    name = "terms_drift"
    reads = ("crm", "billing", "metering")
    description = "CRM contract vs billing configuration: prices, tiers, included units, minimums, dates, currency"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        model = ctx.read_model()
        crm = set(model.roles.contract_systems)
        billing = [s for s in ctx.systems(ctx.settings.ownership.invoices) if s not in crm]
        if not crm or not billing:
            return
        contracts = ctx.session.exec(select(Contract).where(Contract.status.in_(RATED_STATUSES))).all()
        billing_by_customer: dict[str, list[Contract]] = {}
        for c in contracts:
            if c.system in billing and (canon := model.canonical(c.system, c.customer_external_id)):
                billing_by_customer.setdefault(canon, []).append(c)
        for view in model.views():
            c, canonical = view.contract, view.customer
            for b in billing_by_customer.get(canonical or "", []):
                if not _overlap(c, b):
                    continue
                bview = model.view(b)
                if view.plan is None or bview.plan is None:
                    continue  # unbilled_usage reports contracts that cannot be rated
                differences = diff_facts(terms_facts(view.plan, c), terms_facts(bview.plan, b))
                key = f"{canonical}:{c.system}:{c.external_id}:{b.system}:{b.external_id}"
                conflict = self._both_changed(ctx, key, c.terms_hash, b.terms_hash, bool(differences))
                if not differences:
                    continue
                amount = _at_stake(view, bview)
                names = ", ".join(differences)
                yield Drift(
                    key=key,
                    summary=f"{canonical}: {c.system} contract {c.external_id} and {b.system} {b.external_id} differ "
                    f"on {names}"
                    + (
                        f"; billing under-charges {to_major(amount, c.currency)} {c.currency} in the last period"
                        if amount > 0
                        else ""
                    ),
                    amount_minor=amount,
                    currency=c.currency,
                    customer=canonical,
                    contract_id=c.id,
                    evidence=[
                        evidence_ref(c.system, "contract", c.external_id),
                        evidence_ref(b.system, "contract", b.external_id),
                    ],
                    details={"differences": differences, "owner": c.system, "conflict": conflict},
                    factual=True,
                )

    def _both_changed(self, ctx: RuleContext, key: str, crm_hash: str, billing_hash: str, differ: bool) -> bool:
        """Record both sides' hashes; True when both changed since the last sync and still differ."""
        row = ctx.session.get(Baseline, f"terms:{key}")
        conflict = bool(
            row is not None and differ and row.value.get("crm") != crm_hash and row.value.get("billing") != billing_hash
        )
        if row is None:
            row = Baseline(key=f"terms:{key}")
        row.value = {"crm": crm_hash, "billing": billing_hash}
        row.updated_at = utcnow()
        ctx.session.add(row)
        return conflict


def _at_stake(contract: ContractView, billing: ContractView) -> int:
    """Contract total minus billing total for the contract's last judged period, on the same
    usage (zero when no period is judged or the currencies differ)."""
    judged = [p for p in contract.periods if p.judged]
    if not judged or billing.plan is None or billing.contract.currency != contract.contract.currency:
        return 0
    last = judged[-1]
    same = next((p for p in billing.periods if p.period.start == last.period.start), None)
    if same is None or same.period.end != last.period.end:
        return 0
    return last.rating.total - same.rating.total


def _overlap(a: Contract, b: Contract) -> bool:
    a_end = a.end_date or date.max
    b_end = b.end_date or date.max
    return a.start_date <= b_end and b.start_date <= a_end
