"""The contract read model: one answer to "what should this contract bill, for which
customer, paid by which line".

Every number about a contract's expectation comes from here: the reconciliation rules
(unbilled, over-billing, thresholds, CRM usage fields, terms drift), ``subledger rate``
on the store, the standing endpoint and revenue recognition. Given the store and an
*as-of* instant, :class:`ContractReadModel`:

1. **resolves identity**: the contract's canonical customer, and that customer's ids in
   the usage system and in every billing system (the identity map; a customer that is
   not linked is never guessed);
2. **gathers** the usage it may judge (the usage system's coverage windows), the credit
   grants (the terms' own; a billing system's grants for the customer when the terms
   declare none), and the billed invoices and credit notes of the customer's billing
   accounts, all as they stood at the as-of instant;
3. **rates** every billing period that has started by the as-of instant with the rating
   engine, chaining state from the term's start (usage after the instant is not seen);
4. **places** every invoice line on the contract, period and charge it pays (see
   :func:`place`), and keeps each line it cannot place with the reason and the fix.

**Coverage.** A period is *covered* when the usage system has read the usage of every
meter the contract prices for the whole period up to the as-of instant (and, when the
contract carries state from period to period, for every earlier period of the term).
Nothing judges a period that is not covered: it is reported as "not covered: pull
usage from DATE".

Build one model per question (a reconciliation, a command, a request) and ask it for
many contracts: it reads each table once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlmodel import Session, select

from subledger.core.errors import ConfigError
from subledger.core.model.action import Action
from subledger.core.model.base import evidence_ref
from subledger.core.model.contract import Contract
from subledger.core.model.credit import CreditGrant
from subledger.core.model.credit_note import CreditNote
from subledger.core.model.invoice import Invoice, InvoiceLine
from subledger.core.model.sync_state import Connection
from subledger.core.money import allocate
from subledger.core.rating import (
    BillingPeriod,
    Grant,
    PeriodRating,
    RatedLine,
    RatingPlan,
    UsageQuery,
    compile_terms,
    opening_state,
    rate_period,
)
from subledger.core.rating.charges import (
    ADJUSTMENTS,
    CREDIT_PURCHASE,
    FLAT_FEES,
    TRUE_UPS,
    kind_charge,
    meter_of,
    rated_charge,
    term_charge,
)
from subledger.core.rating.engine import rate_periods
from subledger.core.rating.periods import midnight
from subledger.core.store.coverage import Coverage, load_coverage
from subledger.core.store.rating_inputs import RollupIndex, grant_from_row, indexed_usage, usage_evidence
from subledger.core.terms import load_terms
from subledger.sync.identity import system_ids
from subledger.sync.settings import SyncSettings

RATED_STATUSES = ("active", "signed", "ended", "cancelled")
BILLED_STATUSES = ("open", "paid", "uncollectible")
_SKIPPED_CREDIT_NOTES = ("draft", "void", "deleted")


class _Connection(Protocol):
    name: str
    plugin: str
    roles: list[str]


@dataclass(frozen=True)
class Roles:
    """Which systems the read model reads for what.

    Attributes:
        contract_systems: where contract terms come from (the CRM role's connections).
        billing_systems: where invoices, credit notes and grants come from (billing, not ERP).
        usage_system: where usage is read (the first metering connection), or a usage
            source that is not a connection (usage pushed to the service).
        usage_complete: the usage source reports no coverage windows and is taken as
            complete (usage pushed to ``subledger serve``: the pusher owns completeness).
    """

    contract_systems: tuple[str, ...]
    billing_systems: tuple[str, ...]
    usage_system: str | None
    usage_complete: bool = False
    same_ids: bool = False

    @classmethod
    def everything(cls, session: Session) -> Roles:
        """Roles for a store loaded by hand (no connections): every system's contracts and
        billing documents, usage from every system, taken as complete, and a customer known
        by the same id everywhere (no identity map was ever built)."""
        contracts = session.exec(select(Contract.system).distinct()).all()
        billing = {*session.exec(select(Invoice.system).distinct()).all(),
                   *session.exec(select(CreditGrant.system).distinct()).all()}
        return cls(tuple(sorted(contracts)), tuple(sorted(billing)), None, usage_complete=True, same_ids=True)

    @classmethod
    def of(
        cls, connections: Sequence[_Connection], ownership: Any, *, usage_system: str | None = None,
        usage_source: str | None = None,
    ) -> Roles:
        """Roles from connections and the settings' ``ownership``.

        Args:
            usage_system: read usage from this connection (``subledger rate --usage-system``).
            usage_source: where pushed usage is stored, used when no connection meters usage.
        """

        def having(role: str) -> list[str]:
            return [c.name for c in connections if role in c.roles]

        erp = set(having("erp"))
        metering = having(ownership.usage)
        names = {c.name for c in connections}
        chosen = usage_system or (metering[0] if metering else usage_source)
        return cls(
            contract_systems=tuple(having(ownership.contract_terms)),
            billing_systems=tuple(s for s in having(ownership.invoices) if s not in erp),
            usage_system=chosen,
            usage_complete=chosen is not None and chosen not in names,
        )


def store_roles(
    session: Session, settings: SyncSettings, *, usage_system: str | None = None, usage_source: str | None = None
) -> Roles:
    """:meth:`Roles.of` the store's enabled connections, with their roles from ``settings``."""
    rows = session.exec(select(Connection).where(Connection.enabled).order_by(Connection.name)).all()
    if not rows and usage_source is None:
        found = Roles.everything(session)
        return found if usage_system is None else replace(found, usage_system=usage_system)
    conns = [_Conn(c.name, c.plugin, list(settings.roles_of(c.name, c.plugin))) for c in rows]
    if usage_system is None and usage_source is not None and settings.ownership.usage in settings.roles.get(
            usage_source, []):
        usage_system = usage_source  # the settings make pushed usage the usage, whatever the connections meter
    roles = Roles.of(conns, settings.ownership, usage_system=usage_system, usage_source=usage_source)
    return roles


@dataclass
class _Conn:
    name: str
    plugin: str
    roles: list[str]


# ---------------------------------------------------------------------------- invoice lines


@dataclass(slots=True)
class InvoicedLine:
    """One billed invoice line, and where the read model placed it.

    ``credited_minor`` is the (negative) share of credit notes against its invoice, so
    ``net_minor`` is what the customer is really charged for it. After placement
    ``contract_id``, ``period_start``, ``charge`` and ``term`` say what it pays, and
    ``how`` how that was decided; an unplaced line has ``reason`` and ``fix`` instead.
    """

    system: str
    invoice: str
    number: str | None
    line_key: str
    kind: str
    component: str | None
    meter: str | None
    quantity: Decimal | None
    amount_minor: int
    currency: str
    service_start: date | None
    service_end: date | None
    invoice_contract: str | None
    customer: str
    issued_at: datetime | None
    invoice_period_start: date | None
    grants: tuple[str, ...] = ()
    pending: str | None = None  # not billed yet: the action that will bill it (its status), or a draft
    action_id: str | None = None
    credited_minor: int = 0
    credit_notes: list[str] = field(default_factory=list)
    contract_id: str | None = None
    period_start: date | None = None
    charge: str | None = None
    term: str | None = None
    how: str = ""
    reason: str | None = None
    fix: str | None = None

    @property
    def net_minor(self) -> int:
        return self.amount_minor + self.credited_minor

    @property
    def day(self) -> date | None:
        """The day the line bills: its service start, else its invoice's period start or issue day."""
        if self.service_start is not None:
            return self.service_start
        if self.invoice_period_start is not None:
            return self.invoice_period_start
        return self.issued_at.astimezone(UTC).date() if self.issued_at else None

    @property
    def key(self) -> tuple[str, str, str]:
        """(system, invoice external id, line key): how recognition finds the line."""
        return (self.system, self.invoice, self.line_key)

    def ref(self) -> dict[str, Any]:
        """Evidence: the invoice line, with its invoice number and amount (or the pending action)."""
        if self.action_id is not None and self.pending is not None:
            return evidence_ref(self.system, "action", self.action_id, status=self.pending,
                                amount_minor=self.amount_minor)
        return evidence_ref(
            self.system, "invoice_line", f"{self.invoice}/{self.line_key}", invoice=self.number or self.invoice,
            amount_minor=self.amount_minor, credited_minor=self.credited_minor or None,
            credit_notes=self.credit_notes or None,
        )


# -------------------------------------------------------------------------------- views


@dataclass
class Charge:
    """Expected against invoiced for one charge of one period.

    ``pending`` are corrections subledger has committed to but that are not billed yet:
    approved or in-flight actions, actions done whose invoice has not been read back, and
    invoices it wrote that are still drafts. They are not billed (``difference_minor``
    ignores them: the money is still at stake), but nothing is planned for what they cover.
    """

    charge: str
    expected_minor: int = 0
    invoiced_minor: int = 0
    expected: list[RatedLine] = field(default_factory=list)
    invoiced: list[InvoicedLine] = field(default_factory=list)
    pending: list[InvoicedLine] = field(default_factory=list)

    @property
    def difference_minor(self) -> int:
        """Expected minus invoiced: unbilled when positive, over-billed when negative."""
        return self.expected_minor - self.invoiced_minor

    @property
    def pending_minor(self) -> int:
        return sum(ln.amount_minor for ln in self.pending)


@dataclass
class PeriodView:
    """One billing period of a contract as of the model's instant.

    ``gap`` is the first instant whose usage was not read (None: covered); ``ended`` is
    True once the period is over at the as-of instant (only ended periods are judged).
    """

    period: BillingPeriod
    rating: PeriodRating
    ended: bool
    gap: datetime | None
    lines: list[InvoicedLine] = field(default_factory=list)

    @property
    def covered(self) -> bool:
        return self.gap is None

    @property
    def judged(self) -> bool:
        """Ended and covered: the only periods reconciliation compares."""
        return self.ended and self.gap is None

    def charges(self, plan: RatingPlan) -> dict[str, Charge]:
        """Expected and invoiced per charge (credit purchases are not compared)."""
        out: dict[str, Charge] = {}
        for line in self.rating.lines:
            c = out.setdefault(rated_charge(line, plan), Charge(rated_charge(line, plan)))
            c.expected_minor += line.amount
            c.expected.append(line)
        for ln in self.lines:
            if ln.charge is None or ln.charge == CREDIT_PURCHASE:
                continue
            c = out.setdefault(ln.charge, Charge(ln.charge))
            if ln.pending is not None:
                c.pending.append(ln)
                continue
            c.invoiced_minor += ln.net_minor
            c.invoiced.append(ln)
        return out

    @property
    def invoiced_minor(self) -> int:
        return sum(ln.net_minor for ln in self.lines if ln.charge != CREDIT_PURCHASE and ln.pending is None)


@dataclass
class ContractView:
    """A contract with its customer across systems, its rated periods and the lines that pay them.

    Attributes:
        customer: the canonical customer id (None when the contract's customer is not linked).
        usage_customer: the customer's id in the usage system (None: not linked there).
        billing_accounts: (system, customer id) of every billing account of the customer.
        plan: the compiled terms (None when they cannot be rated: see ``error``).
        periods: every billing period started by the as-of instant, in order.
        future_lines: lines placed on periods that have not started yet (billed in advance).
        notes: what a person should know about how the view was built.
    """

    contract: Contract
    customer: str | None
    usage_customer: str | None
    billing_accounts: tuple[tuple[str, str], ...]
    plan: RatingPlan | None
    error: ConfigError | None = None
    periods: list[PeriodView] = field(default_factory=list)
    store_grants: list[CreditGrant] = field(default_factory=list)
    future_lines: list[InvoicedLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _rate_at: Callable[[ContractView, PeriodView, datetime], PeriodRating] | None = field(default=None, repr=False)

    @property
    def who(self) -> str:
        """How findings and output name the customer: canonical, else the contract's own id."""
        return self.customer or self.contract.customer_external_id

    def meter_of(self, component: str) -> str | None:
        """The meter a usage component is on."""
        if self.plan is None:
            return None
        return next((u.meter for u in self.plan.usages if u.id == component), None)

    def period_at(self, day: date) -> PeriodView | None:
        """The rated period holding ``day``."""
        return next((p for p in self.periods if p.period.start <= day < p.period.end), None)

    def current(self, as_of: datetime) -> PeriodView | None:
        """The period open at ``as_of`` (None when the term has no period then)."""
        day = as_of.astimezone(UTC).date()
        p = self.period_at(day)
        return p if p is not None and not p.ended else None

    def rating_at(self, period: PeriodView, cut: datetime) -> PeriodRating:
        """``period`` rated with the usage before ``cut`` only, from the same opening state.

        Recognition asks for each month end inside a period, so usage is recognized as it
        occurs with the same prices, allotments and credits as the period's expectation.
        """
        assert self._rate_at is not None
        return self._rate_at(self, period, cut)


# ---------------------------------------------------------------------------- placement


def line_term(plan: RatingPlan, line: InvoicedLine) -> tuple[str, str | None, str] | None:
    """(charge, term, how) of a line on a contract, or None when the contract does not bill it.

    By term first: a ``component`` naming one of the contract's components, commitments,
    discounts or credit grants. Then by kind and meter: a usage line on a meter the contract
    prices, a recurring fee when the contract has fees, a true-up when it has a minimum,
    discounts, caps and credits as adjustments. A line selling prepaid credit (its evidence
    names a grant, or its component is a grant) is a credit purchase.
    """
    grant_ids = {g.id for g in plan.grants}
    sold = [g for g in line.grants if g in grant_ids] or line.grants
    if line.amount_minor > 0 and line.kind != "credit" and (sold or line.component in grant_ids):
        return CREDIT_PURCHASE, (sold[0] if sold else line.component), "credit grant"
    if line.component:
        charge = term_charge(plan, line.component)
        if charge is not None:
            return charge, line.component, "component"
    charge = kind_charge(line.kind, line.meter)
    if charge is None:
        return None
    meter = meter_of(charge)
    if meter is not None:
        on_meter = [u.id for u in plan.usages if u.meter == meter]
        if not on_meter:
            return None
        return charge, on_meter[0] if len(on_meter) == 1 else None, "kind and meter"
    if charge == FLAT_FEES:
        if not plan.fees:
            return None
        return charge, plan.fees[0].id if len(plan.fees) == 1 else None, "kind"
    if charge == TRUE_UPS:
        minimums = [c.id for c in plan.commitments if c.minimum]
        if not minimums:
            return None
        return charge, minimums[0] if len(minimums) == 1 else None, "kind"
    named = next((g for g in line.grants if g in grant_ids), None)
    return ADJUSTMENTS, named, "kind"


def _in_term(contract: Contract, day: date) -> bool:
    return contract.start_date <= day and (contract.end_date is None or day <= contract.end_date)


def place(line: InvoicedLine, views: Sequence[ContractView], as_of: datetime) -> ContractView | None:
    """Put ``line`` on the contract, period and charge it pays; return the contract, or None.

    Among the customer's contracts in the line's currency: the one its invoice names, else
    those whose term holds the line's day and that bill it (:func:`line_term`), preferring
    one that bills it by name. Within the contract the period is the one whose rated line
    has the same charge and service start (an arrears fee is billed in a later period than
    it starts in), else the one holding the line's day. A line that fits no contract, or
    several equally, is left unplaced with the reason and the fix.
    """
    day = line.day
    rated = [v for v in views if v.plan is not None and v.contract.currency == line.currency]
    if not rated:
        return _unplaced(line, f"no contract of this customer in {line.currency} can be rated",
                         "check the contract's currency and terms (`subledger findings list --rule unbilled_usage`)")
    named = [v for v in rated if line.invoice_contract and v.contract.external_id == line.invoice_contract]
    fits: list[tuple[ContractView, tuple[str, str | None, str]]] = []
    for v in named or rated:
        assert v.plan is not None
        found = line_term(v.plan, line)
        if found is not None and (named or (day is not None and _in_term(v.contract, day))):
            fits.append((v, found))
    if len(fits) > 1:
        by_name = [f for f in fits if f[1][2] in ("component", "credit grant")]
        fits = by_name if by_name else fits
    if not fits:
        if day is None:
            return _unplaced(line, "the line has no service period and its invoice no period or issue date",
                             "give the line its service_start and service_end")
        covering = [v for v in rated if _in_term(v.contract, day)]
        if not covering:
            return _unplaced(line, f"no contract of this customer covers {day}",
                             "check the contract's dates, or link the invoice to its contract")
        return _unplaced(
            line, f"the line (kind {line.kind!r}, component {line.component!r}, meter {line.meter!r}) is not a "
            f"charge of contract {covering[0].contract.external_id}",
            "give the line the contract component it bills (component), or its kind and meter",
        )
    if len(fits) > 1:
        names = ", ".join(v.contract.external_id for v, _ in fits)
        return _unplaced(line, f"contracts {names} all bill this line", "name the contract on the invoice")
    view, (charge, term, how) = fits[0]
    line.contract_id, line.charge, line.term, line.how = view.contract.id, charge, term, how
    target = _period_of(view, line, day)
    if target is None:
        assert view.plan is not None and day is not None
        grid = view.plan.schedule
        future = grid.period(grid.cycle_of(day))
        if future is None:
            view.future_lines.append(line)  # outside the schedule: the named contract, out of term
            line.reason = f"contract {view.contract.external_id} has no billing period holding {day}"
            line.fix = "check the line's service period"
            return view
        line.period_start = future.start
        view.future_lines.append(line)
        return view
    line.period_start = target.period.start
    target.lines.append(line)
    return view


def _period_of(view: ContractView, line: InvoicedLine, day: date | None) -> PeriodView | None:
    if line.service_start is not None and line.charge == FLAT_FEES:
        assert view.plan is not None
        for p in view.periods:
            for rl in p.rating.lines:
                if (rl.service_start == line.service_start and rated_charge(rl, view.plan) == FLAT_FEES
                        and (line.term is None or rl.component == line.term)):
                    return p
    return view.period_at(day) if day is not None else None


def _unplaced(line: InvoicedLine, reason: str, fix: str) -> None:
    line.reason, line.fix = reason, fix
    return None


# ---------------------------------------------------------------------------- the model


def carries_state(plan: RatingPlan, period: BillingPeriod) -> bool:
    """True when ``period``'s expectation depends on earlier periods' usage (pools, rollovers,
    per-term minimums, the balance of a credit grant still usable in it), so an earlier gap
    leaves it unjudged too."""
    return bool(
        any(g.usable_in(period.start_at, period.end_at) for g in plan.grants)
        or any(c.per_term for c in plan.commitments)
        or any(u.allotment is not None and (u.allotment.per_term or u.allotment.rollover) for u in plan.usages)
    )


class ContractReadModel:
    """Contracts as of an instant: customers resolved, periods rated, invoice lines placed.

    Args:
        session: the store.
        roles: which systems hold contracts, invoices and usage (:meth:`Roles.of`).
        as_of: the instant everything is judged at; usage, invoices, credit notes and
            ledger movements after it are not seen.
        index: the usage system's rollups already in memory (built on first use).
    """

    def __init__(self, session: Session, roles: Roles, *, as_of: datetime, index: RollupIndex | None = None) -> None:
        if as_of.tzinfo is None:
            raise ValueError("as_of must be an aware datetime")
        self.session = session
        self.roles = roles
        self.as_of = as_of.astimezone(UTC)
        self._index = index
        self._ids: dict[str, dict[str, list[str]]] | None = None
        self._canonical: dict[tuple[str, str], str] | None = None
        self._coverage: Coverage | None = None
        self._lines: dict[tuple[str, str], list[InvoicedLine]] | None = None
        self._grants: dict[tuple[str, str], list[CreditGrant]] | None = None
        self._views: dict[str, ContractView] = {}
        self._unplaced: dict[str, list[InvoicedLine]] = {}
        self._contracts: list[Contract] | None = None
        self._by_customer: dict[str, list[Contract]] | None = None

    # ------------------------------------------------------------------ shared inputs
    @property
    def index(self) -> RollupIndex:
        if self._index is None:
            self._index = RollupIndex(self.session, self.roles.usage_system)
        return self._index

    @property
    def ids(self) -> dict[str, dict[str, list[str]]]:
        """canonical customer -> system -> that system's ids."""
        if self._ids is None:
            self._ids = system_ids(self.session)
            self._canonical = {(s, e): c for c, systems in self._ids.items() for s, exts in systems.items()
                               for e in exts}
        return self._ids

    def canonical(self, system: str, external_id: str) -> str | None:
        """The canonical customer of a system's customer record, or None when it is not linked."""
        _ = self.ids
        assert self._canonical is not None
        return self._canonical.get((system, external_id))

    @property
    def coverage(self) -> Coverage:
        if self._coverage is None:
            self._coverage = load_coverage(self.session, self.roles.usage_system, complete=self.roles.usage_complete)
        return self._coverage

    def contracts(self) -> list[Contract]:
        """Every contract of the contract systems the model rates."""
        if self._contracts is None:
            self._contracts = list(self.session.exec(
                select(Contract)
                .where(Contract.system.in_(self.roles.contract_systems), Contract.status.in_(RATED_STATUSES))
                .order_by(Contract.system, Contract.external_id)
            ).all())
        return self._contracts

    # ----------------------------------------------------------------------- views
    def views(self, contracts: Iterable[Contract] | None = None) -> list[ContractView]:
        """The views of ``contracts`` (default: every contract the model rates), in order.

        Placing a customer's invoice lines needs all its contracts, so the first request
        for a customer builds the views of all of them.
        """
        wanted = list(contracts) if contracts is not None else self.contracts()
        for c in wanted:
            if c.id in self._views:
                continue
            key = self._customer_key(c)
            if key in self._unplaced:
                # The customer's lines are placed already: a contract the model does not rate
                # (another system's, say) is rated alone, for comparison.
                self._views[c.id] = self._build(c)
            else:
                self._build_customer(key, [c])
        return [self._views[c.id] for c in wanted]

    def view(self, contract: Contract) -> ContractView:
        return self.views([contract])[0]

    def unplaced(self) -> list[InvoicedLine]:
        """Every invoice line of a customer with contracts that no contract could take."""
        self.views()
        return [ln for lines in self._unplaced.values() for ln in lines]

    def not_covered(self) -> list[NotCovered]:
        """Ended periods that were not judged because their usage was not read, by usage gap."""
        gaps: dict[datetime, NotCovered] = {}
        for v in self.views():
            for p in v.periods:
                if p.ended and p.gap is not None:
                    gap = gaps.setdefault(p.gap, NotCovered(self.roles.usage_system, p.gap))
                    gap.periods.append((v.contract.external_id, p.period.start))
        return [gaps[k] for k in sorted(gaps)]

    # ----------------------------------------------------------------------- build
    def _customer_key(self, contract: Contract) -> str:
        canonical = self.canonical(contract.system, contract.customer_external_id)
        return canonical if canonical is not None else f"{contract.system}\x1f{contract.customer_external_id}"

    def _groups(self) -> dict[str, list[Contract]]:
        """The rated contracts by customer (canonical, else the contract's own customer)."""
        if self._by_customer is None:
            self._by_customer = defaultdict(list)
            for c in self.contracts():
                self._by_customer[self._customer_key(c)].append(c)
        return self._by_customer

    def _build_customer(self, key: str, asked: Sequence[Contract]) -> None:
        siblings = self._groups().get(key, [])
        known = {c.id for c in siblings}
        views = [self._build(c) for c in [*siblings, *(c for c in asked if c.id not in known)]]
        for v in views:
            self._views[v.contract.id] = v
        lines = [ln for account in self._accounts(views) for ln in self.lines_of(account)]
        unplaced = []
        for line in lines:
            if line.kind == "tax":
                continue
            if place(line, views, self.as_of) is None:
                unplaced.append(line)
        self._unplaced[key] = unplaced

    def _accounts(self, views: Sequence[ContractView]) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for v in views:
            for account in v.billing_accounts:
                seen.setdefault(account, None)
        return list(seen)

    def _build(self, contract: Contract) -> ContractView:
        canonical = self.canonical(contract.system, contract.customer_external_id)
        usage_system = self.roles.usage_system
        notes: list[str] = []
        if canonical is not None:
            found = self.ids.get(canonical, {})
            usage_ids = found.get(usage_system or "", [])
            accounts = tuple((s, e) for s in self.roles.billing_systems for e in found.get(s, []))
        elif self.roles.same_ids:
            own = contract.customer_external_id
            usage_ids = [own]
            accounts = tuple((s, own) for s in self.roles.billing_systems)
        else:
            own = contract.customer_external_id
            usage_ids = [own] if contract.system == usage_system else []
            accounts = ((contract.system, own),) if contract.system in self.roles.billing_systems else ()
            notes.append(f"customer {own} of {contract.system} is not linked to a canonical customer: "
                         "run `subledger sync` (identity) or `subledger link`")
        if not usage_ids and self.roles.usage_complete and usage_system is not None:
            # Usage pushed to the service names the customer by its canonical id (the
            # contract's own id when customers are not linked).
            usage_ids = [canonical or contract.customer_external_id]
        if len(usage_ids) > 1:
            notes.append(f"customer has {len(usage_ids)} accounts in {usage_system}; usage is read from {usage_ids[0]}")
        usage_customer = usage_ids[0] if usage_ids else None
        store_grants = self._grants_of(contract, accounts)
        view = ContractView(contract, canonical, usage_customer, accounts, None, notes=notes,
                            store_grants=store_grants, _rate_at=self._rate_at)
        try:
            terms = load_terms(contract.terms, source=f"contract {contract.external_id} ({contract.system})")
            extra: list[Grant] = []
            if not terms.credits:  # the terms' credits are the contract's; else the billing system's grants are
                extra = [g for row in store_grants if (g := grant_from_row(row, contract.currency)) is not None]
            plan = compile_terms(terms, contract_id=contract.external_id, system=contract.system, extra_grants=extra)
            view.plan = plan
            if usage_customer is None and plan.usages:
                notes.append(f"customer has no account in the usage system {usage_system}: its usage is not read")
            self._rate(view)
        except ConfigError as exc:  # terms the engine refuses, or usage out of the rating's bounds
            view.error, view.plan, view.periods = exc, None, []
        return view

    def _queries(self, plan: RatingPlan, period: BillingPeriod, cut: datetime) -> dict[UsageQuery, UsageQuery]:
        """Each usage query of ``period`` -> the same query ending at ``cut`` (or itself)."""
        out = {}
        for q in plan.usage_queries(period):
            stop = min(q.end, cut)
            out[q] = q if stop == q.end else UsageQuery(q.meter, q.aggregation, q.start, stop, q.unique_property,
                                                         q.group_by, q.transactions)
        return out

    def _usage(self, customer: str | None, queries: dict[UsageQuery, UsageQuery]) -> dict[UsageQuery, Any]:
        live = {q: c for q, c in queries.items() if c.end > c.start}
        if customer is None or not live:
            return {}
        answers = indexed_usage(self.session, self.index, customer, list(live.values()))
        return {q: answers.get(c, ()) for q, c in live.items()}

    def _rate(self, view: ContractView) -> None:
        plan = view.plan
        assert plan is not None
        started = [p for p in plan.periods(until=self.as_of.date()) if p.start_at <= self.as_of]
        queries: dict[UsageQuery, UsageQuery] = {}
        for p in started:
            queries.update(self._queries(plan, p, self.as_of))
        usage = self._usage(view.usage_customer, queries)
        ratings = rate_periods(plan, usage, periods=started) if started else []
        meters = sorted({u.meter for u in plan.usages} | set(plan.unit_meters))
        earlier_gap: datetime | None = None
        for p, rated in zip(started, ratings, strict=True):
            gap = None
            if meters:
                if view.usage_customer is None:
                    gap = p.start_at  # the customer is not linked to the usage system: nothing was read
                else:
                    gap = self.coverage.gap(meters, p.start_at, min(p.end_at, self.as_of))
                if gap is None and carries_state(plan, p):
                    gap = earlier_gap
                if gap is not None and earlier_gap is None:
                    earlier_gap = gap
            view.periods.append(PeriodView(p, rated, p.end_at <= self.as_of, gap))

    def _rate_at(self, view: ContractView, pv: PeriodView, cut: datetime) -> PeriodRating:
        assert view.plan is not None
        index = view.periods.index(pv)
        state = view.periods[index - 1].rating.state if index else opening_state(view.plan)
        usage = self._usage(view.usage_customer, self._queries(view.plan, pv.period, min(cut, self.as_of)))
        return rate_period(view.plan, pv.period, usage, state)

    def usage_evidence(self, view: ContractView, line: RatedLine) -> dict[str, Any] | None:
        """Event count and first and last event ids behind a rated usage line (findings, output)."""
        meter = view.meter_of(line.component)
        if meter is None or view.usage_customer is None or line.kind != "usage":
            return None
        end = min(midnight(line.service_end), self.as_of)
        return usage_evidence(self.session, self.roles.usage_system, view.usage_customer, meter,
                              midnight(line.service_start), end)

    # ---------------------------------------------------------------- billing data
    def _grants_of(self, contract: Contract, accounts: Sequence[tuple[str, str]]) -> list[CreditGrant]:
        """A billing system's grants for the contract's customer: named for this contract, or
        for no contract and effective during its term."""
        if self._grants is None:
            self._grants = defaultdict(list)
            rows = self.session.exec(
                select(CreditGrant).where(CreditGrant.system.in_(self.roles.billing_systems),
                                          CreditGrant.effective_at < self.as_of)
                .order_by(CreditGrant.system, CreditGrant.external_id)
            ).all()
            for row in rows:
                self._grants[(row.system, row.customer_external_id)].append(row)
        out = []
        own = {c.external_id for c in self.contracts()}
        for account in accounts:
            for g in self._grants.get(account, []):
                if g.contract_external_id == contract.external_id:
                    out.append(g)
                elif g.contract_external_id is None or g.contract_external_id not in own:
                    when = g.effective_at.astimezone(UTC).date()
                    if _in_term(contract, when):
                        out.append(g)
        return out

    def lines_of(self, account: tuple[str, str]) -> list[InvoicedLine]:
        """The billed lines of one billing account (system, customer id) as of the model's instant."""
        if self._lines is None:
            self._lines = self._load_lines()
        return self._lines.get(account, [])

    def _load_lines(self) -> dict[tuple[str, str], list[InvoicedLine]]:
        billing = self.roles.billing_systems
        out: dict[tuple[str, str], list[InvoicedLine]] = defaultdict(list)
        if not billing:
            return out
        rows = self.session.exec(
            select(
                Invoice.system, Invoice.external_id, Invoice.number, Invoice.customer_external_id,
                Invoice.contract_external_id, Invoice.issued_at, Invoice.period_start,
                InvoiceLine.line_key, InvoiceLine.kind, InvoiceLine.component, InvoiceLine.meter,
                InvoiceLine.quantity, InvoiceLine.amount_minor, InvoiceLine.currency, InvoiceLine.service_start,
                InvoiceLine.service_end, InvoiceLine.evidence, Invoice.status,
            )
            .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
            .where(Invoice.system.in_(billing), Invoice.status.in_((*BILLED_STATUSES, "draft")))
            .order_by(Invoice.system, Invoice.external_id, InvoiceLine.line_key)
        ).all()
        written = self._written_invoices()
        by_invoice: dict[tuple[str, str], list[InvoicedLine]] = defaultdict(list)
        for (system, ext, number, customer, contract, issued, p_start, key, kind, component, meter, qty, amount,
             currency, s_start, s_end, evidence, status) in rows:
            draft = status == "draft"
            if draft and (system, ext) not in written:
                continue  # someone else's draft is not billing
            if issued is not None and issued > self.as_of:
                continue
            grants = tuple(str(r["id"]) for r in evidence or []
                           if isinstance(r, dict) and r.get("object") == "credit_grant" and r.get("id"))
            line = InvoicedLine(system, ext, number, key, kind or "other", component, meter, qty, amount,
                                (currency or "").upper(), s_start, s_end, contract, customer, issued, p_start,
                                _grant_ids(system, grants), pending="draft" if draft else None,
                                action_id=written.get((system, ext)) if draft else None)
            out[(system, customer)].append(line)
            by_invoice[(system, ext)].append(line)
        self._apply_credit_notes(by_invoice)
        stored = set(self.session.exec(
            select(Invoice.system, Invoice.external_id).where(Invoice.system.in_(billing))).all())
        for line in self._pending_actions(stored):
            out[(line.system, line.customer)].append(line)
        return out

    def _written_invoices(self) -> dict[tuple[str, str], str]:
        """(system, invoice id) -> the action that wrote it, for every invoice subledger created."""
        rows = self.session.exec(
            select(Action.connection, Action.external_id, Action.id)
            .where(Action.kind == "create_invoice", Action.status == "done", Action.external_id.is_not(None))  # type: ignore[union-attr]
        ).all()
        return {(system, ext): aid for system, ext, aid in rows if ext}

    def _pending_actions(self, seen: set[tuple[str, str]]) -> list[InvoicedLine]:
        """Invoice lines subledger has committed to write and that are not in the store yet:
        approved and in-flight actions, and done ones whose invoice was not read back."""
        rows = self.session.exec(
            select(Action).where(Action.kind == "create_invoice",
                                 Action.connection.in_(self.roles.billing_systems),  # type: ignore[attr-defined]
                                 Action.status.in_(("approved", "in_flight", "done")))  # type: ignore[attr-defined]
            .order_by(Action.id)
        ).all()
        out = []
        for a in rows:
            if a.status == "done" and (a.connection, a.external_id or "") in seen:
                continue  # read back: its invoice's lines count (a draft as pending, a void as nothing)
            if a.created_at > self.as_of:
                continue
            p = a.payload or {}
            customer = str(p.get("customer_external_id") or "")
            for n, ln in enumerate(p.get("lines") or []):
                try:
                    amount = int(ln["amount_minor"])
                except (KeyError, TypeError, ValueError):
                    continue
                out.append(InvoicedLine(
                    a.connection, f"action:{a.id}", None, str(ln.get("line_key") or n + 1), ln.get("kind") or "other",
                    ln.get("component"), ln.get("meter"),
                    Decimal(str(ln["quantity"])) if ln.get("quantity") not in (None, "") else None, amount,
                    str(ln.get("currency") or p.get("currency") or "").upper(), _day(ln.get("service_start")),
                    _day(ln.get("service_end")), p.get("contract_external_id"), customer, a.created_at,
                    _day(p.get("period_start")), pending=a.status, action_id=a.id,
                ))
        return out

    def _apply_credit_notes(self, by_invoice: dict[tuple[str, str], list[InvoicedLine]]) -> None:
        """Spread each credit note over its invoice's lines (pro rata, exact), net of its tax."""
        notes = self.session.exec(
            select(CreditNote).where(CreditNote.system.in_(self.roles.billing_systems),
                                     CreditNote.invoice_external_id.is_not(None))  # type: ignore[union-attr]
            .order_by(CreditNote.system, CreditNote.external_id)
        ).all()
        for cn in notes:
            if cn.status in _SKIPPED_CREDIT_NOTES or (cn.issued_at is not None and cn.issued_at > self.as_of):
                continue
            lines = [ln for ln in by_invoice.get((cn.system, cn.invoice_external_id or ""), [])
                     if ln.kind != "tax" and ln.net_minor > 0]
            if not lines:
                continue
            tax = sum(int(x.get("amount_minor", 0)) for x in cn.lines or [] if x.get("kind") == "tax")
            rest = cn.total_minor - tax
            # A credit note line naming a component credits that component's lines; the rest
            # is spread over every line of the invoice in proportion to what it still bills.
            for item in cn.lines or []:
                component, amount = item.get("component"), int(item.get("amount_minor", 0))
                same = [ln for ln in lines if component and ln.component == component and ln.net_minor > 0]
                if item.get("kind") == "tax" or not same or amount <= 0:
                    continue
                take = min(amount, sum(ln.net_minor for ln in same))
                _credit(same, take, cn.external_id)
                rest -= take
            if rest > 0:
                _credit([ln for ln in lines if ln.net_minor > 0], rest, cn.external_id)


def _credit(lines: Sequence[InvoicedLine], amount: int, note: str) -> None:
    """Take ``amount`` off ``lines`` in proportion to what each still bills (exact)."""
    if not lines:
        return
    for ln, share in zip(lines, allocate(amount, [ln.net_minor for ln in lines]), strict=True):
        if share:
            ln.credited_minor -= share
            if note not in ln.credit_notes:
                ln.credit_notes.append(note)


def _day(value: Any) -> date | None:
    """A payload's ISO date (or None)."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _grant_ids(system: str, ids: tuple[str, ...]) -> tuple[str, ...]:
    """A billing system's grant ids as the rating engine knows them (``system:external id``), plus as named."""
    return tuple(dict.fromkeys([*(f"{system}:{i}" for i in ids), *ids]))


# ----------------------------------------------------------------------------- helpers


@dataclass
class NotCovered:
    """Ended billing periods left unjudged because ``system``'s usage from ``gap`` was not read."""

    system: str | None
    gap: datetime
    periods: list[tuple[str, date]] = field(default_factory=list)  # (contract, period start)

    def text(self) -> str:
        """``not covered: pull usage from 2026-01-01 (stripe): 12 periods of 3 contracts, 2026-01 to 2026-04``."""
        months = sorted(start for _, start in self.periods)
        contracts = len({c for c, _ in self.periods})
        return (f"{not_covered_text(self.system, self.gap)}: {len(self.periods)} ended period(s) of {contracts} "
                f"contract(s) not judged, {months[0]:%Y-%m} to {months[-1]:%Y-%m}")

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system, "pull_usage_from": self.gap.isoformat(),
            "periods": [{"contract": c, "period_start": d.isoformat()} for c, d in self.periods],
            "message": self.text(),
        }


def not_covered_text(system: str | None, gap: datetime) -> str:
    """What a period that was not judged says: ``not covered: pull usage from 2026-01-01 (stripe)``."""
    return f"not covered: pull usage from {gap.date().isoformat()}" + (f" ({system})" if system else "")
