"""Real-time standing: where a customer is against its contract in the current billing period.

For each active contract of a contract-terms system (the CRM role) with a period open
today, the rating engine prices the period so far with the usage stored for the customer
(rollups, so ingest is seen at once), chaining the state from the start of the term. The
standing shows usage per meter against its allotment, spend against minimum commitments,
credit balances, the expected charges so far, what the billing systems have invoiced for
the period, and the difference (the amount at risk when positive).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlmodel import Session, select

from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError
from subledger.core.model.base import evidence_ref
from subledger.core.model.contract import Contract
from subledger.core.model.invoice import Invoice, InvoiceLine
from subledger.core.model.sync_state import Connection
from subledger.core.money import to_major
from subledger.core.rating import compile_terms, rate_periods
from subledger.core.store.rating_inputs import RollupIndex, indexed_usage
from subledger.core.terms import load_terms
from subledger.sync.expected import system_ids
from subledger.sync.rules.billing import BILLED_STATUSES
from subledger.sync.settings import SyncSettings


def _money(minor: int, currency: str) -> dict[str, Any]:
    return {"amount": decimal_text(to_major(minor, currency)), "amount_minor": minor, "currency": currency}


@dataclass
class Standing:
    """One customer's standing: one entry per contract with a period open today."""

    customer: str
    contracts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def at_risk_minor(self) -> int:
        return sum(max(c["difference"]["amount_minor"], 0) for c in self.contracts)

    def to_json(self) -> dict[str, Any]:
        currencies = sorted({c["currency"] for c in self.contracts})
        return {
            "customer": self.customer,
            "amount_at_risk_minor": self.at_risk_minor,
            "currencies": currencies,
            "contracts": self.contracts,
        }


class StandingCalculator:
    """Computes standings for many customers with one pass over the store's rollups."""

    def __init__(self, session: Session, settings: SyncSettings, usage_source: str, today: date) -> None:
        self.session = session
        self.today = today
        conns = session.exec(select(Connection).where(Connection.enabled)).all()
        roles = {c.name: settings.roles_of(c.name, c.plugin) for c in conns}

        def having(role: str) -> list[str]:
            return sorted(n for n, r in roles.items() if role in r)

        self.crm = having(settings.ownership.contract_terms)
        metering = having(settings.ownership.usage)
        self.metering = metering[0] if metering else usage_source
        self.billing = [s for s in having(settings.ownership.invoices) if s not in having("erp")]
        self.ids = system_ids(session)
        self.canonical_of = {
            (s, e): c for c, systems in self.ids.items() for s, exts in systems.items() for e in exts
        }
        self._index: RollupIndex | None = None

    @property
    def index(self) -> RollupIndex:
        if self._index is None:
            self._index = RollupIndex(self.session, self.metering)
        return self._index

    def contracts(self, customer: str | None = None) -> dict[str, list[Contract]]:
        """Active contracts by canonical customer (the contract's own customer id when unlinked)."""
        stmt = select(Contract).where(Contract.status == "active").order_by(Contract.system, Contract.external_id)
        if self.crm:
            stmt = stmt.where(Contract.system.in_(self.crm))
        out: dict[str, list[Contract]] = defaultdict(list)
        for c in self.session.exec(stmt).all():
            who = self.canonical_of.get((c.system, c.customer_external_id), c.customer_external_id)
            if customer is None or who == customer:
                out[who].append(c)
        return out

    def standing(self, customer: str, contracts: list[Contract]) -> Standing:
        out = Standing(customer)
        for c in contracts:
            entry = self._contract(customer, c)
            if entry is not None:
                out.contracts.append(entry)
        return out

    def _contract(self, customer: str, c: Contract) -> dict[str, Any] | None:
        try:
            plan = compile_terms(load_terms(c.terms), contract_id=c.external_id, system=c.system)
        except ConfigError as exc:
            return {"contract": c.external_id, "system": c.system, "currency": c.currency, "error": str(exc),
                    "difference": _money(0, c.currency)}
        periods = plan.periods(until=self.today)
        if not periods or not (periods[-1].start <= self.today < periods[-1].end):
            return None
        usage_customer = c.customer_external_id
        metered = self.ids.get(customer, {}).get(self.metering)
        if metered:
            usage_customer = metered[0]
        queries = [q for p in periods for q in plan.usage_queries(p)]
        usage = indexed_usage(self.session, self.index, usage_customer, queries)
        rated = rate_periods(plan, usage, periods=periods)[-1]
        period = rated.period
        meters = []
        for u in plan.usages:
            lines = [ln for ln in rated.lines if ln.component == u.id and ln.kind == "usage"]
            used = sum((ln.usage or Decimal(0) for ln in lines), Decimal(0))
            row: dict[str, Any] = {"component": u.id, "meter": u.meter, "usage": decimal_text(used)}
            if u.allotment is not None:
                allotted = u.allotment.quantity
                row["allotment"] = decimal_text(allotted)
                row["remaining"] = decimal_text(max(allotted - used, Decimal(0)))
                row["used_fraction"] = decimal_text((used / allotted).quantize(Decimal("0.0001"))) if allotted else None
            meters.append(row)
        spend = sum(ln.amount for ln in rated.lines if ln.kind not in ("minimum_true_up", "credit"))
        commitments = [
            {"id": cm.id, "minimum": _money(cm.amount_minor, c.currency), "spend": _money(spend, c.currency),
             "per_term": cm.per_term}
            for cm in plan.commitments if cm.minimum
        ]
        credits = []
        for grant in plan.grants:
            balance = rated.state.credits.get(grant.id)
            if balance is None:
                continue
            entry: dict[str, Any] = {"grant": grant.id, "money": grant.money}
            if grant.money:
                entry["balance"] = _money(int(balance.balance), c.currency)
            else:
                entry["balance_units"] = decimal_text(Decimal(balance.balance))
                entry["meter"] = grant.meter
            credits.append(entry)
        expected = rated.total
        invoiced, invoice_refs = self._invoiced(customer, c, period.start, period.end)
        return {
            "contract": c.external_id,
            "system": c.system,
            "currency": c.currency,
            "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
            "meters": meters,
            "commitments": commitments,
            "credits": credits,
            "expected": _money(expected, c.currency),
            "expected_lines": [ln.to_json(c.currency) for ln in rated.lines],
            "invoiced": _money(invoiced, c.currency),
            "difference": _money(expected - invoiced, c.currency),
            "evidence": [evidence_ref(c.system, "contract", c.external_id), *invoice_refs],
        }

    def _invoiced(self, customer: str, c: Contract, start: date, end: date) -> tuple[int, list[dict[str, Any]]]:
        pairs = [(s, e) for s in self.billing for e in self.ids.get(customer, {}).get(s, [])]
        if not pairs:
            return 0, []
        total, refs = 0, []
        for system, external_id in pairs:
            rows = self.session.exec(
                select(Invoice, InvoiceLine)
                .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
                .where(
                    Invoice.system == system,
                    Invoice.customer_external_id == external_id,
                    Invoice.status.in_(BILLED_STATUSES),
                    Invoice.currency == c.currency,
                )
            ).all()
            for inv, ln in rows:
                if ln.kind == "tax":
                    continue
                when = ln.service_start or inv.period_start
                if when is not None and start <= when < end:
                    total += ln.amount_minor
                    refs.append(evidence_ref(inv.system, "invoice_line", f"{inv.external_id}/{ln.line_key}"))
        return total, refs
