"""Real-time standing: where a customer is against its contract in the current billing period.

Everything comes from the contract read model (:mod:`subledger.sync.contracts`) as of
the request: each active contract's open period rated with the usage stored so far
(rollups, so ingest is seen at once), usage against allotments, spend against minimum
commitments and credit balances (:mod:`subledger.sync.consumption`), the expected
charges so far, the invoice lines placed on the period, and the difference (the amount
at risk when positive).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from subledger.core.db_types import decimal_text
from subledger.core.model.base import evidence_ref
from subledger.core.model.contract import Contract
from subledger.core.money import to_major
from subledger.sync.consumption import measures, period_usage, spend
from subledger.sync.contracts import ContractReadModel, ContractView, store_roles
from subledger.sync.settings import SyncSettings

_FOUR = Decimal("0.0001")


def _money(minor: int, currency: str) -> dict[str, Any]:
    return {"amount": decimal_text(to_major(minor, currency)), "amount_minor": minor, "currency": currency}


@dataclass
class Standing:
    """One customer's standing: one entry per contract with a period open now."""

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
    """Standings of many customers from one contract read model as of ``now``."""

    def __init__(self, session: Session, settings: SyncSettings, usage_source: str, now: datetime) -> None:
        self.now = now
        self.model = ContractReadModel(session, store_roles(session, settings, usage_source=usage_source), as_of=now)

    def contracts(self, customer: str | None = None) -> dict[str, list[Contract]]:
        """Active contracts by customer (canonical, else the contract's own customer id)."""
        out: dict[str, list[Contract]] = defaultdict(list)
        for c in self.model.contracts():
            if c.status != "active":
                continue
            who = self.model.canonical(c.system, c.customer_external_id) or c.customer_external_id
            if customer is None or who == customer:
                out[who].append(c)
        return out

    def standing(self, customer: str, contracts: list[Contract]) -> Standing:
        out = Standing(customer)
        for view in self.model.views(contracts):
            entry = self._contract(view)
            if entry is not None:
                out.contracts.append(entry)
        return out

    def _contract(self, view: ContractView) -> dict[str, Any] | None:
        c = view.contract
        if view.plan is None:
            return {"contract": c.external_id, "system": c.system, "currency": c.currency, "error": str(view.error),
                    "difference": _money(0, c.currency)}
        pv = view.current(self.now)
        if pv is None:
            return None
        rated, period, plan = pv.rating, pv.period, view.plan
        found = measures(view, pv)
        meters = []
        for u in plan.usages:
            used = period_usage(pv, u.id)
            row: dict[str, Any] = {"component": u.id, "meter": u.meter, "usage": decimal_text(used)}
            allotment = next((m for m in found if m.what == f"allotment:{u.id}"), None)
            if allotment is not None:
                row["allotment"] = decimal_text(allotment.limit)
                row["remaining"] = decimal_text(allotment.remaining)
                row["used_fraction"] = decimal_text(allotment.fraction.quantize(_FOUR))
            meters.append(row)
        commitments = [
            {"id": m.ident, "minimum": _money(int(m.limit), c.currency), "spend": _money(int(m.used), c.currency),
             "per_term": next(cm.per_term for cm in plan.commitments if cm.id == m.ident)}
            for m in found if m.kind == "commitment"
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
                entry["balance_units"] = decimal_text(balance.balance)
                entry["meter"] = grant.meter
            credits.append(entry)
        expected, invoiced = rated.total, pv.invoiced_minor
        out = {
            "contract": c.external_id,
            "system": c.system,
            "currency": c.currency,
            "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
            "meters": meters,
            "commitments": commitments,
            "credits": credits,
            "spend": _money(spend(pv), c.currency),
            "expected": _money(expected, c.currency),
            "expected_lines": [ln.to_json(c.currency) for ln in rated.lines],
            "invoiced": _money(invoiced, c.currency),
            "difference": _money(expected - invoiced, c.currency),
            "evidence": [evidence_ref(c.system, "contract", c.external_id), *(ln.ref() for ln in pv.lines)],
        }
        if pv.gap is not None:
            out["usage_read_through"] = pv.gap.isoformat()
        if view.notes:
            out["notes"] = list(view.notes)
        return out
