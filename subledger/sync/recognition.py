"""Revenue recognition from the contract read model.

``subledger revrec run`` (and the demo) call :func:`recognize`: it builds the contract
read model as of an instant, hands recognition each contract's ratings — the same ones
reconciliation judges — with the periods rated again on the usage before each month end
(so usage is recognized as it occurs), and where every invoice line was placed, so a
line bills the obligation of the term it pays. Billing documents come from the billing
systems only (an ERP's copies would count twice) and contract terms from the CRMs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlmodel import Session

from subledger.core.db_types import utcnow
from subledger.core.revrec.accounts import ChartOfAccounts
from subledger.core.revrec.calendar import through_instant
from subledger.core.revrec.contracts import Placement, RatedContract, RatedPeriod
from subledger.core.revrec.run import RunResult, run_recognition
from subledger.core.revrec.sources import SourceScope
from subledger.sync.contracts import ContractReadModel, ContractView, Roles, not_covered_text, store_roles
from subledger.sync.settings import SyncSettings, load_settings


def month_ends(start: datetime, end: datetime) -> list[datetime]:
    """The first instants of months strictly inside ``(start, end)``."""
    out = []
    current = start.astimezone(UTC)
    while True:
        nxt = (current.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if nxt >= end:
            return out
        out.append(nxt)
        current = nxt


def rated_contract(view: ContractView, stop: datetime, as_of: datetime) -> RatedContract | None:
    """A view's periods as recognition needs them, through ``stop`` (None: it cannot be rated)."""
    if view.plan is None:
        return None
    periods = []
    for pv in view.periods:
        start, end = pv.period.start_at, pv.period.end_at
        if start >= stop:
            break
        last = min(end, stop)
        cuts = sorted({min(m, stop) for m in month_ends(start, end)} | {last})
        accruals = tuple(
            (cut, pv.rating if cut == end and cut <= as_of else view.rating_at(pv, cut)) for cut in cuts
        )
        # Recognition through ``stop`` needs the usage read up to the last cut, not the whole period.
        covered = pv.gap is None or pv.gap >= min(last, as_of)
        periods.append(RatedPeriod(pv.period, accruals, covered))
    return RatedContract(view.contract, view.who, view.plan, tuple(periods), tuple(g.id for g in view.store_grants))


def recognize(
    session: Session, *, through: date, as_of: datetime | None = None, chart: ChartOfAccounts | None = None,
    settings: SyncSettings | None = None, roles: Roles | None = None,
) -> RunResult:
    """Recognize revenue through ``through`` from the contract read model as of ``as_of`` (default now).

    Contracts whose terms cannot be rated, and periods whose usage was not read, are
    recognized from their invoices, with a warning saying so.
    """
    roles = roles or store_roles(session, settings or load_settings())
    model = ContractReadModel(session, roles, as_of=as_of or utcnow())
    stop = through_instant(through)
    rated, warnings = [], []
    placements: dict[tuple[str, str, str], Placement] = {}
    for view in model.views():
        c = view.contract
        found = rated_contract(view, stop, model.as_of)
        if found is None:
            warnings.append(f"contract {c.system}/{c.external_id} cannot be rated ({view.error}); "
                            "its obligations come from its invoices only")
            continue
        rated.append(found)
        for rp, pv in zip(found.periods, view.periods, strict=False):
            if not rp.covered and pv.gap is not None:
                warnings.append(f"contract {c.system}/{c.external_id} period {pv.period.start}: "
                                f"{not_covered_text(roles.usage_system, pv.gap)}; recognized from its invoices")
        for ln in [*(ln for pv in view.periods for ln in pv.lines), *view.future_lines]:
            if ln.charge is not None and ln.period_start is not None:
                placements[ln.key] = Placement(c.id, ln.period_start, ln.charge, ln.term)
    scope = SourceScope(billing_systems=roles.billing_systems, contract_systems=roles.contract_systems)
    return run_recognition(
        session, through=through, chart=chart, scope=scope, contracts=rated, placements=placements,
        customer_of=model.canonical, as_of=model.as_of, warnings=warnings,
    )
