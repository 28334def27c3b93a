"""Deriving performance obligations from the store (the I/O edge of recognition).

Reads contracts, invoices and their lines, credit notes, credit grants and their ledger,
payments and usage, and turns them into :class:`Obligation`, :class:`Document` and
:class:`PaymentIn` values for the pure journal builder. See ``docs/revrec/sources.md``
for the rules, summarized here:

* every invoice line (except tax, discounts and credits applied) is an obligation:
  recurring and one-off lines with a service period are ratable under the contract's
  amortization policy; usage lines are recognized in the months the metered usage
  occurred (by day over the service period when no usage is stored); true-up lines at
  the end of their period; lines with no service period when the invoice is issued;
* discount lines reduce the lines they apply to (same component, else every positive
  line pro rata) as contra revenue; credits applied from a paid grant reduce the line
  they pay (the grant recognizes the redemption); other credits applied (promotional,
  customer balance) are contra revenue;
* a credit note reduces its invoice's obligations pro rata: what was already recognized
  is reversed to the refunds contra account, the rest lowers the future schedule;
* a paid credit grant is a contract liability: its purchase invoice line (linked by
  evidence ``{"object": "credit_grant", "id": ...}``) bills it; ledger draw-downs are
  redemptions; breakage follows the contract's policy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlmodel import Session, select

from subledger.core.errors import ConfigError
from subledger.core.model import (
    Contract,
    CreditGrant,
    CreditLedgerEntry,
    CreditNote,
    Invoice,
    InvoiceLine,
    Meter,
    Payment,
    PaymentApplication,
    evidence_ref,
)
from subledger.core.money import allocate, exponent
from subledger.core.rating.charges import CREDIT_PURCHASE
from subledger.core.revrec.amortization import AmortizationPolicy, ServicePeriod
from subledger.core.revrec.calendar import as_utc, months_between
from subledger.core.revrec.contracts import (
    ContractObligation,
    ContractResult,
    Placement,
    RatedContract,
    contract_obligations,
    grant_draws,
)
from subledger.core.revrec.credits import BreakagePolicy, breakage_curve, redemptions_curve
from subledger.core.revrec.curves import CatchUp, Curve, Incurred, Ratable, Remainder, Scaled, Sum
from subledger.core.revrec.journal import Document, PaymentIn
from subledger.core.revrec.obligation import Billing, LineKind, Obligation, Recognition, Treatment
from subledger.core.revrec.policy import RevrecPolicy

_MICRO = timedelta(microseconds=1)
_SKIP_INVOICE_STATUSES = {"draft", "void", "deleted"}


@dataclass
class Sources:
    """Everything the journal builder needs, plus what could not be used and why."""

    obligations: list[Obligation] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    payments: list[PaymentIn] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Base:
    """An obligation being assembled from an invoice line and its adjustments."""

    key: str
    treatment: Treatment
    product: str
    amount: int
    gross: Curve
    currency: str
    group: str
    contract_id: str | None
    customer: str
    evidence: tuple[dict[str, Any], ...]
    component: str | None
    policy: RevrecPolicy
    recognitions: list[Recognition] = field(default_factory=list)
    billings: list[Billing] = field(default_factory=list)

    def net_curve(self) -> Curve:
        return Sum(tuple(r.curve for r in self.recognitions))

    def net_price(self) -> int:
        return self.amount + sum(b.amount_minor for b in self.billings[1:])

    def build(self) -> Obligation:
        return Obligation(
            key=self.key, currency=self.currency, treatment=self.treatment, product=self.product,
            recognitions=tuple(self.recognitions), billings=tuple(self.billings), group=self.group,
            contract_id=self.contract_id, customer_external_id=self.customer, evidence=self.evidence,
            rounding=self.policy.rounding,
        )


def _refs(ev: list[dict[str, Any]] | None, obj: str) -> list[str]:
    return [str(r.get("id")) for r in (ev or []) if isinstance(r, dict) and r.get("object") == obj and r.get("id")]


@dataclass(frozen=True)
class SourceScope:
    """Which systems recognition reads. None means every system.

    With an ERP connected, the ERP holds copies of the billing system's invoices and
    payments: recognize from the billing systems only, or each invoice counts twice.
    """

    billing_systems: tuple[str, ...] | None = None  # invoices, credit notes, payments, credit grants
    contract_systems: tuple[str, ...] | None = None  # contracts whose terms yield obligations

    def billing(self, stmt: Any, model: Any) -> Any:
        return stmt if self.billing_systems is None else stmt.where(model.system.in_(self.billing_systems))

    def contracts(self, stmt: Any) -> Any:
        return stmt if self.contract_systems is None else stmt.where(Contract.system.in_(self.contract_systems))


class _Loader:
    def __init__(
        self, session: Session, through: date | None, scope: SourceScope | None = None, *,
        contracts: Sequence[RatedContract] = (), placements: Mapping[tuple[str, str, str], Placement] | None = None,
        customer_of: Callable[[str, str], str | None] | None = None, as_of: datetime | None = None,
    ) -> None:
        self.session = session
        self.through = through
        self.scope = scope or SourceScope()
        self.as_of = as_of
        self.rated = list(contracts)
        self.placements = dict(placements or {})
        self.customer_of = customer_of or (lambda system, external_id: None)
        self.derived: dict[str, ContractResult] = {}
        self.rated_by_id: dict[str, RatedContract] = {}
        self.contract_grants: dict[str, str] = {}  # store grant id -> contract id (contract mode)
        self.grant_credits: dict[str, list[Billing]] = defaultdict(list)  # credit lines billed to a grant
        self.rating_grant: dict[str, str] = {}  # a contract-attached grant's rating id -> CreditGrant id
        self.invoice_contract: dict[tuple[str, str], Contract | None] = {}
        self.out = Sources()
        self.contracts: dict[tuple[str, str], Contract] = {}
        self.contracts_by_ext: dict[str, list[Contract]] = defaultdict(list)
        self.policies: dict[str, RevrecPolicy] = {}
        self.grants: dict[str, CreditGrant] = {}
        self.grant_purchases: dict[str, list[Billing]] = defaultdict(list)
        self.bases_by_invoice: dict[tuple[str, str], list[_Base]] = defaultdict(list)
        self.meters: dict[str, Meter] = {}
        self._usage_cache: dict[tuple[Any, ...], Decimal] = {}

    # --- lookups -----------------------------------------------------------------------

    def contract(self, system: str, external_id: str | None) -> Contract | None:
        if not external_id:
            return None
        found = self.contracts.get((system, external_id))
        if found is None and len(self.contracts_by_ext.get(external_id, [])) == 1:
            found = self.contracts_by_ext[external_id][0]
        return found

    def policy(self, contract: Contract | None) -> RevrecPolicy:
        if contract is None:
            return RevrecPolicy()
        if contract.id not in self.policies:
            try:
                self.policies[contract.id] = RevrecPolicy.from_terms(
                    contract.terms, source=f"contract {contract.system}/{contract.external_id}"
                )
            except ConfigError as exc:
                self.out.warnings.append(f"{exc}; using the default policy")
                self.policies[contract.id] = RevrecPolicy()
        return self.policies[contract.id]

    def grant_for(self, system: str, ev: list[dict[str, Any]] | None) -> CreditGrant | None:
        for ext in _refs(ev, "credit_grant"):
            for g in self.grants.values():
                if g.external_id == ext and g.system == system:
                    return g
            for g in self.grants.values():
                if g.external_id == ext:
                    return g
        return None

    def usage_quantity(self, customer: str, meter: str, start: datetime, end: datetime) -> Decimal | None:
        """Aggregate stored usage, or None when the store cannot say (no usage module)."""
        try:
            from subledger.core.store.usage import aggregate_usage
        except ImportError:  # pragma: no cover - the store always ships it
            return None
        m = self.meters.get(meter)
        key = (customer, meter, start, end)
        if key not in self._usage_cache:
            self._usage_cache[key] = aggregate_usage(
                self.session, customer_external_id=customer, meter=meter, start=start, end=end,
                aggregation=m.aggregation if m else "sum", unique_property=m.unique_property if m else None,
            )
        return self._usage_cache[key]

    # --- loading -----------------------------------------------------------------------

    def load(self) -> Sources:
        s = self.session
        scope = self.scope
        for c in s.exec(scope.contracts(select(Contract))).all():
            self.contracts[(c.system, c.external_id)] = c
            self.contracts_by_ext[c.external_id].append(c)
        for m in s.exec(select(Meter)).all():
            self.meters.setdefault(m.key, m)
        for g in s.exec(scope.billing(select(CreditGrant), CreditGrant).order_by(CreditGrant.id)).all():
            self.grants[g.id] = g
        for rc in self.rated:
            paid = frozenset(g.id for g in rc.plan.grants if g.category == "paid")
            derived = contract_obligations(rc, self.policy(rc.contract), paid_grants=paid)
            self.out.warnings.extend(derived.warnings)
            self.derived[rc.contract.id] = derived
            self.rated_by_id[rc.contract.id] = rc
            for gid in rc.store_grants:
                self.contract_grants[gid] = rc.contract.id
                if gid in self.grants:
                    g = self.grants[gid]
                    self.rating_grant[f"{g.system}:{g.external_id}"] = gid
                    self.rating_grant.setdefault(g.external_id, gid)
            if not rc.store_grants:
                self.terms_grants(rc, derived)
        invoices = s.exec(scope.billing(select(Invoice), Invoice).order_by(Invoice.system, Invoice.external_id)).all()
        lines: dict[str, list[InvoiceLine]] = defaultdict(list)
        for line in s.exec(select(InvoiceLine).order_by(InvoiceLine.invoice_id, InvoiceLine.line_key)).all():
            lines[line.invoice_id].append(line)
        for inv in invoices:
            if inv.status in _SKIP_INVOICE_STATUSES or inv.issued_at is None or self.later(inv.issued_at):
                continue
            self.invoice(inv, lines.get(inv.id, []))
        for cn in s.exec(
            scope.billing(select(CreditNote), CreditNote).order_by(CreditNote.system, CreditNote.external_id)
        ).all():
            if cn.status not in _SKIP_INVOICE_STATUSES and cn.issued_at is not None and not self.later(cn.issued_at):
                self.credit_note(cn)
        for bases in self.bases_by_invoice.values():
            self.out.obligations.extend(b.build() for b in bases)
        for rc in self.rated:
            contract = rc.contract
            for ob in self.derived[contract.id].obligations:
                recognitions = (Recognition(ob.kind, ob.curve, ob.evidence), *ob.extra)
                self.out.obligations.append(Obligation(
                    key=ob.key, currency=contract.currency, treatment=ob.treatment, product=ob.product,
                    recognitions=recognitions, billings=tuple(ob.billings), group=contract.id,
                    contract_id=contract.id, customer_external_id=rc.customer, evidence=ob.evidence,
                    rounding=self.policy(contract).rounding,
                ))
        self.credit_grants()
        self.payments()
        return self.out

    def invoice(self, inv: Invoice, lines: list[InvoiceLine]) -> None:
        contract = self.placed_contract(inv, lines) or self.contract(inv.system, inv.contract_external_id)
        policy = self.policy(contract)
        group = contract.id if contract else f"customer:{inv.customer_external_id}"
        doc_key = f"invoice:{inv.system}:{inv.external_id}"
        issued = as_utc(inv.issued_at)  # type: ignore[arg-type]
        inv_ref = evidence_ref(inv.system, "invoice", inv.external_id)
        tax_lines = [ln for ln in lines if ln.kind == "tax"]
        tax = sum(ln.amount_minor for ln in tax_lines) if tax_lines else inv.tax_minor
        self.out.documents.append(Document(
            key=doc_key, kind="invoice", at=issued, currency=inv.currency,
            customer_external_id=inv.customer_external_id, tax_minor=tax,
            memo=f"invoice {inv.number or inv.external_id}", evidence=(inv_ref,),
        ))
        bases: list[_Base] = []
        adjustments: list[tuple[LineKind, InvoiceLine]] = []
        for ln in lines:
            ev = (evidence_ref(inv.system, "invoice_line", f"{inv.external_id}/{ln.line_key}"), inv_ref,
                  *(ln.evidence or []))
            if ln.kind == "tax":
                continue
            if self.claim(inv, ln, Billing(issued, ln.amount_minor, doc_key, ev)):
                continue
            grant = self.grant_for(inv.system, ln.evidence)
            if grant is not None and ln.amount_minor > 0 and ln.kind != "credit":
                self.grant_purchases[grant.id].append(Billing(issued, ln.amount_minor, doc_key, ev))
                continue
            if ln.kind == "discount":
                adjustments.append((LineKind.DISCOUNT, ln))
                continue
            if ln.kind == "credit":
                paid = grant is not None and grant.category == "paid"
                adjustments.append((LineKind.REVENUE if paid else LineKind.PROMOTIONAL, ln))
                continue
            treatment, curve = self.line_curve(inv, ln, policy, issued)
            base = _Base(
                key=f"{doc_key}:{ln.line_key}", treatment=treatment,
                product=ln.component or ln.meter or ln.kind, amount=ln.amount_minor, gross=curve,
                currency=inv.currency, group=group, contract_id=contract.id if contract else None,
                customer=self.customer(inv.system, inv.customer_external_id), evidence=ev, component=ln.component,
                policy=policy,
            )
            base.recognitions.append(Recognition(LineKind.REVENUE, curve, ev))
            base.billings.append(Billing(issued, ln.amount_minor, doc_key, ev))
            bases.append(base)
        for kind, ln in adjustments:
            ev = (evidence_ref(inv.system, "invoice_line", f"{inv.external_id}/{ln.line_key}"), inv_ref,
                  *(ln.evidence or []))
            self.adjust(bases, kind, ln, ev, issued, doc_key, inv, policy, group, contract)
        self.bases_by_invoice[(inv.system, inv.external_id)] = bases
        self.invoice_contract[(inv.system, inv.external_id)] = contract

    def claim(self, inv: Invoice, ln: InvoiceLine, billing: Billing) -> bool:
        """Bill the contract obligation(s) the read model placed ``ln`` on; False when it stays
        invoice-driven (not placed, or nothing of the contract's rating matches it)."""
        placement = self.placements.get((inv.system, inv.external_id, ln.line_key))
        derived = self.derived.get(placement.contract_id) if placement is not None else None
        if placement is None or derived is None:
            return False
        grant = self.grant_for(inv.system, ln.evidence)
        if grant is None and placement.term in self.rating_grant:
            grant = self.grants.get(self.rating_grant[placement.term])  # the grant the line names by component
        attached = [gid for gid, cid in self.contract_grants.items() if cid == placement.contract_id
                    and self.grants[gid].category == "paid"]
        if placement.charge == CREDIT_PURCHASE:
            if grant is not None:
                self.grant_purchases[grant.id].append(billing)
                return True
            target = derived.terms_grants.get(placement.term or "")
            if target is None:
                return False
            target.billings.append(billing)
            return True
        if ln.kind == "credit":
            if grant is None and len(attached) == 1 and not derived.terms_grants:
                grant = self.grants[attached[0]]  # the contract's one paid grant
            if grant is not None and grant.category == "paid" and grant.id in self.contract_grants:
                self.grant_credits[grant.id].append(billing)  # releases the grant's liability
                return True
            target = derived.terms_grants.get(placement.term or "")
            if target is None and grant is None and len(derived.terms_grants) == 1:
                target = next(iter(derived.terms_grants.values()))
            if target is not None:
                target.billings.append(billing)
                return True
        shares = derived.billed_by(placement, billing.amount_minor)
        if not shares:
            return False
        for ob, share in shares:
            if share:
                ob.billings.append(Billing(billing.at, share, billing.document, billing.evidence))
        return True

    def terms_grants(self, rc: RatedContract, derived: ContractResult) -> None:
        """Obligations of the paid credit grants written in a contract's terms (no billing system
        keeps them): purchase price, rated draw-downs, breakage under the contract's policy."""
        policy = self.policy(rc.contract)
        currency = rc.contract.currency
        ref = evidence_ref(rc.contract.system, "contract", rc.contract.external_id)
        for g in rc.plan.grants:
            if g.category != "paid":
                continue
            basis = Fraction(g.cost_basis) if g.cost_basis is not None else Fraction(1)
            scale = Fraction(1) if g.money else Fraction(10) ** exponent(currency)

            def value(amount: Any, basis: Fraction = basis, scale: Fraction = scale) -> Fraction:
                return Fraction(amount) * basis * scale

            face = value(g.amount) + sum((value(a) for _, a in g.top_ups), Fraction(0))
            purchase = int(face)
            draws = [(when, value(amount)) for when, amount in grant_draws(rc, g.id, g.expires_at)]
            where = f"contract {rc.contract.system}/{rc.contract.external_id} credit {g.id}"
            try:
                redeemed = redemptions_curve(purchase, draws, g.expires_at)  # type: ignore[arg-type]
                breakage = breakage_curve(purchase, redeemed, g.expires_at, policy.breakage,
                                          policy.expected_breakage_rate)
            except ConfigError as exc:
                self.out.warnings.append(f"{where}: {exc}; skipped")
                continue
            ev = (ref, g.evidence)
            ob = ContractObligation(
                f"contract:{rc.contract.id}:credit:{g.id}", Treatment.CREDIT, g.meter or "prepaid_credits", g.id,
                rc.contract.start_date, LineKind.BREAKAGE, breakage, ev, charge=CREDIT_PURCHASE, amount=purchase,
            )
            if not g.money:  # units drawn are not in the rated usage lines: their value is revenue here
                ob.extra.append(Recognition(LineKind.REVENUE, redeemed, ev))
            derived.terms_grants[g.id] = ob
            derived.obligations.append(ob)

    def placed_contract(self, inv: Invoice, lines: list[InvoiceLine]) -> Contract | None:
        """The rated contract the read model placed the invoice's lines on (the first placed line's)."""
        for ln in lines:
            placement = self.placements.get((inv.system, inv.external_id, ln.line_key))
            if placement is not None and placement.contract_id in self.rated_by_id:
                return self.rated_by_id[placement.contract_id].contract
        return None

    def later(self, at: datetime | None) -> bool:
        """True when ``at`` is after the as-of instant (not yet known then)."""
        return self.as_of is not None and at is not None and as_utc(at) > self.as_of

    def line_curve(
        self, inv: Invoice, ln: InvoiceLine, policy: RevrecPolicy, issued: datetime
    ) -> tuple[Treatment, Curve]:
        if ln.service_start is None:
            return Treatment.POINT_IN_TIME, Incurred.of([(issued, ln.amount_minor)])
        period = ServicePeriod.from_dates(ln.service_start, ln.service_end or ln.service_start)
        if ln.kind == "true_up":
            return Treatment.COMMITMENT, Incurred.of([(period.end - _MICRO, ln.amount_minor)])
        if ln.kind == "usage":
            curve = self.usage_curve(inv, ln, period)
            return Treatment.USAGE, curve or Ratable(ln.amount_minor, period, AmortizationPolicy.BY_DAY)
        return Treatment.RATABLE, Ratable(ln.amount_minor, period, policy.amortization)

    def usage_curve(self, inv: Invoice, ln: InvoiceLine, period: ServicePeriod) -> Curve | None:
        """Spread a usage line over the months its metered usage occurred in."""
        if not ln.meter:
            return None
        months = list(months_between(period.first_month, period.last_month))
        if len(months) == 1:
            return Incurred.of([(period.end - _MICRO, ln.amount_minor)])
        bounds = [period.start] + [m.end for m in months[:-1]] + [period.end]
        total = self.usage_quantity(inv.customer_external_id, ln.meter, period.start, period.end)
        if not total:
            return None
        steps: list[tuple[datetime, Fraction]] = []
        previous = Decimal(0)
        for hi in bounds[1:]:
            cumulative = self.usage_quantity(inv.customer_external_id, ln.meter, period.start, hi) or Decimal(0)
            share = Fraction(cumulative - previous) / Fraction(total)
            steps.append((hi - _MICRO, share * ln.amount_minor))
            previous = cumulative
        return Incurred(tuple(steps))

    def adjust(
        self, bases: list[_Base], kind: LineKind, ln: InvoiceLine, ev: tuple[dict[str, Any], ...],
        issued: datetime, doc_key: str, inv: Invoice, policy: RevrecPolicy, group: str,
        contract: Contract | None,
    ) -> None:
        """Spread a discount or credit line over the lines it reduces."""
        targets = [b for b in bases if ln.component and b.component == ln.component and b.amount > 0]
        targets = targets or [b for b in bases if b.amount > 0]
        if not targets:
            point = Incurred.of([(issued, ln.amount_minor)])
            lone = _Base(
                key=f"{doc_key}:{ln.line_key}", treatment=Treatment.POINT_IN_TIME, product=ln.component or ln.kind,
                amount=ln.amount_minor, gross=point, currency=inv.currency, group=group,
                contract_id=contract.id if contract else None,
                customer=self.customer(inv.system, inv.customer_external_id),
                evidence=ev, component=ln.component, policy=policy,
            )
            lone.recognitions.append(Recognition(LineKind.DISCOUNT if kind is LineKind.REVENUE else kind, point, ev))
            lone.billings.append(Billing(issued, ln.amount_minor, doc_key, ev))
            bases.append(lone)
            return
        shares = allocate(ln.amount_minor, [b.amount for b in targets])
        for base, share in zip(targets, shares, strict=True):
            if share == 0:
                continue
            base.recognitions.append(Recognition(kind, Scaled(base.gross, Fraction(share, base.amount)), ev))
            base.billings.append(Billing(issued, share, doc_key, ev))

    def credit_note(self, cn: CreditNote) -> None:
        at = as_utc(cn.issued_at)  # type: ignore[arg-type]
        doc_key = f"credit_note:{cn.system}:{cn.external_id}"
        ref = evidence_ref(cn.system, "credit_note", cn.external_id)
        tax = sum(int(line.get("amount_minor", 0)) for line in cn.lines or [] if line.get("kind") == "tax")
        net = cn.total_minor - tax
        self.out.documents.append(Document(
            key=doc_key, kind="credit_note", at=at, currency=cn.currency,
            customer_external_id=cn.customer_external_id, tax_minor=-tax,
            memo=f"credit note {cn.number or cn.external_id}", evidence=(ref,),
        ))
        bases = [b for b in self.bases_by_invoice.get((cn.system, cn.invoice_external_id or ""), [])
                 if b.net_price() > 0]
        if not bases:
            # Its invoice's lines bill contract obligations (or it names no invoice): a refund
            # at its issue date, filed under the invoice's contract when there is one.
            point = Incurred.of([(at, -net)])
            invoice_key = (cn.system, cn.invoice_external_id or "")
            contract = self.invoice_contract.get(invoice_key)
            self.out.obligations.append(Obligation(
                key=doc_key, currency=cn.currency, treatment=Treatment.POINT_IN_TIME, product="refund",
                recognitions=(Recognition(LineKind.REFUND, point, (ref,)),),
                billings=(Billing(at, -net, doc_key, (ref,)),),
                group=contract.id if contract else f"customer:{cn.customer_external_id}",
                contract_id=contract.id if contract else None,
                customer_external_id=self.customer(cn.system, cn.customer_external_id), evidence=(ref,),
            ))
            if cn.invoice_external_id and invoice_key not in self.invoice_contract:
                self.out.warnings.append(
                    f"credit note {cn.system}/{cn.external_id} names invoice {cn.invoice_external_id}, "
                    "which is not in the store; it was booked as a refund at its issue date"
                )
            return
        shares = allocate(-net, [b.net_price() for b in bases])
        for base, share in zip(bases, shares, strict=True):
            if share == 0:
                continue
            reduction = Scaled(base.net_curve(), Fraction(share, base.net_price()))
            base.recognitions.append(Recognition(LineKind.REFUND, CatchUp(reduction, at), (ref,)))
            base.recognitions.append(Recognition(LineKind.REVENUE, Remainder(reduction, at), (ref,)))
            base.billings.append(Billing(at, share, doc_key, (ref,)))

    def credit_grants(self) -> None:
        ledger: dict[str, list[CreditLedgerEntry]] = defaultdict(list)
        for e in self.session.exec(select(CreditLedgerEntry).order_by(CreditLedgerEntry.id)).all():
            if not self.later(e.occurred_at):
                ledger[e.grant_id].append(e)
        for g in self.grants.values():
            if g.category != "paid" or self.later(g.effective_at):
                continue
            owner = self.contract_grants.get(g.id)
            rated = self.rated_by_id.get(owner) if owner else None
            contract = rated.contract if rated is not None else self.contract(g.system, g.contract_external_id)
            policy = self.policy(contract)
            currency = g.currency or (contract.currency if contract else None)
            if currency is None:
                self.out.warnings.append(f"credit grant {g.system}/{g.external_id} has no currency; skipped")
                continue
            basis = Fraction(g.cost_basis) if g.cost_basis is not None else Fraction(1)
            units = g.amount_minor is None

            def value(entry_amount: int | None, entry_units: Decimal | None, *, units: bool = units,
                      basis: Fraction = basis, currency: str = currency) -> Fraction:
                if units:
                    return Fraction(entry_units or 0) * basis * Fraction(10) ** exponent(currency)
                return Fraction(entry_amount or 0) * basis

            face = value(g.amount_minor, g.units)
            redemptions: list[tuple[datetime, Fraction]] = []
            for e in ledger.get(g.id, []):
                if e.kind == "top_up":
                    face += value(e.amount_minor, e.units)
                elif e.kind in ("draw_down", "reversal"):
                    redemptions.append((e.occurred_at, -value(e.amount_minor, e.units)))
            if rated is not None and g.id not in ledger:
                # The billing system keeps no ledger for it (a files grant): the rating's draws are its use.
                for when, drawn in grant_draws(rated, f"{g.system}:{g.external_id}", g.expires_at):
                    redemptions.append((when, value(None, drawn) if units else value(int(drawn), None)))  # type: ignore[arg-type]
            ref = evidence_ref(g.system, "credit_grant", g.external_id)
            purchase = g.price_minor if g.price_minor is not None else int(face)
            if g.price_minor is None and face != purchase:
                self.out.warnings.append(
                    f"credit grant {g.system}/{g.external_id}: the cost basis prices it at a fraction of a "
                    "minor unit; its purchase price is truncated"
                )
            at_face = list(redemptions)
            if g.price_minor is not None and face and g.price_minor != face:
                # Paid at a discount (or a premium): each unit of credit is worth price / face.
                redemptions = [(w, a * purchase / face) for w, a in redemptions]
            try:
                breakage_policy = BreakagePolicy.parse(g.breakage) if g.breakage else policy.breakage
                rate = Fraction(g.expected_breakage_rate) if g.expected_breakage_rate is not None else \
                    policy.expected_breakage_rate
                redeemed = redemptions_curve(purchase, [(w, a) for w, a in redemptions], g.expires_at)  # type: ignore[misc]
                breakage = breakage_curve(purchase, redeemed, g.expires_at, breakage_policy, rate)
            except ConfigError as exc:
                self.out.warnings.append(f"credit grant {g.system}/{g.external_id}: {exc}; skipped")
                continue
            billings = (*self.grant_purchases.get(g.id, ()), *self.grant_credits.get(g.id, ()))
            if not self.grant_purchases.get(g.id):
                self.out.warnings.append(
                    f"credit grant {g.system}/{g.external_id} has no purchase invoice line linked to it; "
                    "its redemptions show as unbilled receivable until one is"
                )
            if rated is not None and not units:
                # Contract mode: the contract's usage obligations earn the revenue the credit pays
                # for; the grant is the liability its credit lines release, and its breakage.
                recognitions: tuple[Recognition, ...] = (Recognition(LineKind.BREAKAGE, breakage, (ref,)),)
                if at_face != redemptions:  # credit bought below face: the difference is a discount
                    discount = Incurred.of([(w, p - f) for (w, p), (_, f) in zip(redemptions, at_face, strict=True)])
                    recognitions += (Recognition(LineKind.DISCOUNT, discount, (ref,)),)
            else:
                recognitions = (Recognition(LineKind.REVENUE, redeemed, (ref,)),
                                Recognition(LineKind.BREAKAGE, breakage, (ref,)))
            customer = rated.customer if rated is not None else self.customer(g.system, g.customer_external_id)
            self.out.obligations.append(Obligation(
                key=f"credit_grant:{g.system}:{g.external_id}", currency=currency, treatment=Treatment.CREDIT,
                product=g.meter or "prepaid_credits", recognitions=recognitions, billings=billings,
                group=contract.id if contract else f"customer:{g.customer_external_id}",
                contract_id=contract.id if contract else None, customer_external_id=customer,
                evidence=(ref,), rounding=policy.rounding,
            ))

    def customer(self, system: str, external_id: str) -> str:
        """The id obligations are filed under: the canonical customer when linked."""
        return self.customer_of(system, external_id) or external_id

    def payments(self) -> None:
        applied: dict[str, int] = defaultdict(int)
        for a in self.session.exec(select(PaymentApplication)).all():
            applied[a.payment_id] += a.amount_minor
        payments = self.scope.billing(select(Payment), Payment).order_by(Payment.system, Payment.external_id)
        for p in self.session.exec(payments).all():
            if p.status not in ("succeeded", "refunded", "paid"):
                continue
            self.out.payments.append(PaymentIn(
                key=f"payment:{p.system}:{p.external_id}", at=as_utc(p.received_at), currency=p.currency,
                amount_minor=p.amount_minor, applied_minor=applied.get(p.id, 0),
                customer_external_id=p.customer_external_id,
                evidence=(evidence_ref(p.system, "payment", p.external_id),),
            ))


def load_sources(
    session: Session, *, through: date | None = None, scope: SourceScope | None = None,
    contracts: Sequence[RatedContract] = (), placements: Mapping[tuple[str, str, str], Placement] | None = None,
    customer_of: Callable[[str, str], str | None] | None = None, as_of: datetime | None = None,
) -> Sources:
    """Obligations, billing documents and payments derived from the store.

    Args:
        contracts: contracts the read model rated; each yields its contract-derived
            obligations (:mod:`.contracts`).
        placements: (system, invoice, line key) -> where the read model placed that line;
            a placed line bills its contract's obligations instead of becoming its own.
        customer_of: (system, customer id) -> canonical customer, for the customer id
            obligations are filed under.
        as_of: documents, ledger entries and payments after this instant are not read.
    """
    return _Loader(session, through, scope, contracts=contracts, placements=placements, customer_of=customer_of,
                   as_of=as_of).load()

