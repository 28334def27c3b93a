"""Building the journal from obligations: balanced, per-currency, double-entry drafts.

For each obligation the builder walks its billings and its monthly recognition in
time order, keeping the position ``billed - recognized``. A positive position is a
contract liability (deferred revenue); a negative one is a contract asset (unbilled
receivable). Every event moves the position, and the builder books exactly the change
of each balance, so neither balance ever goes negative and, at every instant,
``liability - asset = billed - recognized`` for every obligation.

Entries group the events the way an ERP expects them:

* one entry per billing document (invoice, credit note, credit purchase): Dr AR, Cr tax
  liability, Cr contract liability / unbilled receivable per obligation;
* one recognition entry per group (contract) and month: Dr contract liability /
  unbilled receivable, Cr revenue per product, Cr breakage, Dr contra accounts;
* one entry per payment: Dr cash, Cr AR (unapplied cash to the customer balance).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from subledger.core.revrec.accounts import AccountRole, ChartOfAccounts
from subledger.core.revrec.calendar import Month, as_utc, months_between, through_instant
from subledger.core.revrec.obligation import LineKind, Obligation
from subledger.core.revrec.rounding import round_fraction

_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class LineDraft:
    """One debit or credit line of a draft entry (exactly one side is non-zero)."""

    role: AccountRole
    account: str
    debit_minor: int = 0
    credit_minor: int = 0
    product: str | None = None
    obligation_key: str | None = None
    contract_id: str | None = None
    customer_external_id: str | None = None
    memo: str = ""
    evidence: tuple[dict[str, Any], ...] = ()

    @property
    def net(self) -> int:
        """Debit minus credit."""
        return self.debit_minor - self.credit_minor


@dataclass(frozen=True)
class EntryDraft:
    """A journal entry before posting: its identity ``key``, content and origin period.

    ``key`` identifies what the entry is about (``invoice:stripe:in_1``,
    ``recognition:ctr_1:2026-01``); the external id adds a hash of the content, so the
    same content always gets the same id and changed content gets a new one.
    """

    key: str
    kind: str
    entry_date: date
    currency: str
    lines: tuple[LineDraft, ...]
    memo: str = ""
    source: tuple[dict[str, Any], ...] = ()

    @property
    def origin_period(self) -> Month:
        return Month.of(self.entry_date)

    def totals(self) -> tuple[int, int]:
        return (sum(line.debit_minor for line in self.lines), sum(line.credit_minor for line in self.lines))

    def is_balanced(self) -> bool:
        debit, credit = self.totals()
        return debit == credit

    def content_hash(self) -> str:
        """SHA-256 of what the entry says (not of when or where it gets posted)."""
        doc = {
            "key": self.key,
            "date": self.entry_date.isoformat(),
            "currency": self.currency,
            "lines": [
                [ln.role.value, ln.account, ln.debit_minor, ln.credit_minor, ln.obligation_key or "", ln.product or ""]
                for ln in self.lines
            ],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def external_id(self) -> str:
        return f"{self.key}:{self.content_hash()[:12]}"


@dataclass(frozen=True)
class Document:
    """A billing document (invoice, credit note): the AR and tax side of its billings."""

    key: str
    kind: str
    at: datetime
    currency: str
    customer_external_id: str | None = None
    tax_minor: int = 0
    memo: str = ""
    evidence: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class PaymentIn:
    """Cash received (negative: refunded) and how much of it was applied to invoices."""

    key: str
    at: datetime
    currency: str
    amount_minor: int
    applied_minor: int
    customer_external_id: str | None = None
    evidence: tuple[dict[str, Any], ...] = ()


@dataclass
class _Acc:
    """Accumulates signed nets (debit positive) per line identity for one entry."""

    kind: str
    entry_date: date
    currency: str
    memo: str = ""
    source: list[dict[str, Any]] = field(default_factory=list)
    nets: dict[tuple[Any, ...], int] = field(default_factory=lambda: defaultdict(int))
    evidence: dict[tuple[Any, ...], list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, ident: tuple[Any, ...], net: int, evidence: Iterable[dict[str, Any]]) -> None:
        self.nets[ident] += net
        bucket = self.evidence[ident]
        for ref in evidence:
            if ref not in bucket:
                bucket.append(ref)


def _ident(
    role: AccountRole, account: str, ob: Obligation | None, *, customer: str | None = None
) -> tuple[Any, ...]:
    if ob is None:
        return (role, account, None, None, None, customer)
    return (role, account, ob.key, ob.product, ob.contract_id, ob.customer_external_id)


def _finish(key: str, acc: _Acc) -> EntryDraft | None:
    lines: list[LineDraft] = []
    for ident, net in acc.nets.items():
        if net == 0:
            continue
        role, account, ob_key, product, contract_id, customer = ident
        lines.append(
            LineDraft(
                role=role,
                account=account,
                debit_minor=net if net > 0 else 0,
                credit_minor=-net if net < 0 else 0,
                product=product,
                obligation_key=ob_key,
                contract_id=contract_id,
                customer_external_id=customer,
                evidence=tuple(acc.evidence[ident]),
            )
        )
    if not lines:
        return None
    lines.sort(key=lambda ln: (ln.credit_minor > 0, ln.role.value, ln.account, ln.obligation_key or ""))
    draft = EntryDraft(key, acc.kind, acc.entry_date, acc.currency, tuple(lines), acc.memo, tuple(acc.source))
    if not draft.is_balanced():  # pragma: no cover - a bug, never user input
        raise AssertionError(f"unbalanced journal draft {key}: {draft.totals()}")
    return draft


def _recognition_events(ob: Obligation, through: date) -> list[tuple[datetime, Month, dict[LineKind, int]]]:
    """The rounded change of each kind's cumulative amount between checkpoints.

    Checkpoints are every month end up to ``through`` and the instant just after each
    billing, so what was earned up to a billing (a credit note's catch-up, usage before
    its invoice) is booked before the billing itself moves the position.
    """
    if not ob.recognitions:
        return []
    stop = through_instant(through)
    first = min(Month.of(r.curve.begins) for r in ob.recognitions)
    last = Month.of(through)
    if first > last:
        return []
    checkpoints = {min(m.end, stop) for m in months_between(first, last)}
    checkpoints |= {b.at + _MICRO for b in ob.billings if first.start <= b.at < stop}
    posted = {id(r): round_fraction(r.curve.value(first.start), ob.rounding) for r in ob.recognitions}
    settled = max(r.curve.settles for r in ob.recognitions)
    events = []
    for bound in sorted(checkpoints):
        if bound > settled and any(b >= settled for b, _m, _d in events[-1:]):
            break  # every curve is final: later checkpoints would add nothing
        deltas: dict[LineKind, int] = defaultdict(int)
        for r in ob.recognitions:
            if r.curve.begins >= bound:
                continue
            rounded = round_fraction(r.curve.value(bound), ob.rounding)
            deltas[r.kind] += rounded - posted[id(r)]
            posted[id(r)] = rounded
        events.append((bound, Month.of(bound - _MICRO), dict(deltas)))
    return [e for e in events if any(e[2].values())]


def build_entries(
    obligations: Sequence[Obligation],
    *,
    through: date,
    chart: ChartOfAccounts | None = None,
    documents: Sequence[Document] = (),
    payments: Sequence[PaymentIn] = (),
) -> list[EntryDraft]:
    """Every journal entry the data implies, in its own (origin) period, through ``through``.

    Billings after ``through`` and recognition after the end of ``through`` are left out.
    """
    chart = chart or ChartOfAccounts()
    docs = {d.key: d for d in documents}
    stop = through_instant(through)
    accs: dict[str, _Acc] = {}
    ar_role, ar = AccountRole.ACCOUNTS_RECEIVABLE, chart.account(AccountRole.ACCOUNTS_RECEIVABLE)
    cl_role, cl = AccountRole.CONTRACT_LIABILITY, chart.account(AccountRole.CONTRACT_LIABILITY)
    ca_role, ca = AccountRole.UNBILLED_RECEIVABLE, chart.account(AccountRole.UNBILLED_RECEIVABLE)

    def doc_acc(key: str, ob: Obligation, at: datetime) -> _Acc:
        if key not in accs:
            doc = docs.get(key)
            when = as_utc(doc.at if doc else at)
            accs[key] = _Acc(
                kind=doc.kind if doc else key.split(":", 1)[0],
                entry_date=when.date(),
                currency=ob.currency,
                memo=doc.memo if doc else "",
                source=list(doc.evidence) if doc else [],
            )
        return accs[key]

    for ob in obligations:
        events: list[tuple[datetime, int, Any]] = []
        for b in ob.billings:
            if b.at < stop:
                events.append((b.at, 1, b))
        for bound, month, deltas in _recognition_events(ob, through):
            events.append((bound - _MICRO, 0, (month, deltas)))
        events.sort(key=lambda e: (e[0], e[1]))
        position = 0  # billed - recognized
        for _at, order, payload in events:
            before_l, before_a = max(position, 0), max(-position, 0)
            if order == 1:
                b = payload
                position += b.amount_minor
                acc = doc_acc(b.document, ob, b.at)
                doc = docs.get(b.document)
                customer = (doc.customer_external_id if doc else None) or ob.customer_external_id
                acc.add(_ident(ar_role, ar, None, customer=customer), b.amount_minor, b.evidence)
            else:
                month, deltas = payload
                key = f"recognition:{ob.group}:{month}:{ob.currency}"
                if key not in accs:
                    end = min(month.last_day, through)
                    accs[key] = _Acc(kind="recognition", entry_date=end, currency=ob.currency,
                                     memo=f"revenue recognized {month}")
                acc = accs[key]
                for kind, amount in sorted(deltas.items()):
                    if amount == 0:
                        continue
                    position -= amount
                    role, account = chart.for_kind(kind, ob.product)
                    evidence = [ref for r in ob.recognitions if r.kind is kind for ref in r.evidence]
                    acc.add(_ident(role, account, ob), -amount, evidence or ob.evidence)
            after_l, after_a = max(position, 0), max(-position, 0)
            evidence = ob.evidence
            if after_l != before_l:
                acc.add(_ident(cl_role, cl, ob), -(after_l - before_l), evidence)
            if after_a != before_a:
                acc.add(_ident(ca_role, ca, ob), after_a - before_a, evidence)

    for doc in documents:
        if doc.tax_minor and doc.at < stop:
            acc = accs.get(doc.key) or accs.setdefault(
                doc.key, _Acc(doc.kind, as_utc(doc.at).date(), doc.currency, doc.memo, list(doc.evidence))
            )
            acc.add(_ident(ar_role, ar, None, customer=doc.customer_external_id), doc.tax_minor, doc.evidence)
            tax = chart.account(AccountRole.TAX_LIABILITY)
            acc.add(_ident(AccountRole.TAX_LIABILITY, tax, None, customer=doc.customer_external_id),
                    -doc.tax_minor, doc.evidence)

    cash, balance = chart.account(AccountRole.CASH), chart.account(AccountRole.CUSTOMER_BALANCE)
    for p in payments:
        if p.at >= stop:
            continue
        acc = accs.setdefault(p.key, _Acc("payment", as_utc(p.at).date(), p.currency, "", list(p.evidence)))
        who = p.customer_external_id
        acc.add(_ident(AccountRole.CASH, cash, None, customer=who), p.amount_minor, p.evidence)
        acc.add(_ident(ar_role, ar, None, customer=who), -p.applied_minor, p.evidence)
        acc.add(_ident(AccountRole.CUSTOMER_BALANCE, balance, None, customer=who),
                -(p.amount_minor - p.applied_minor), p.evidence)

    drafts = [d for key, acc in sorted(accs.items()) if (d := _finish(key, acc)) is not None]
    return drafts


def check_balanced(drafts: Iterable[EntryDraft]) -> None:
    """Raise if any draft's debits and credits differ (always a bug, never bad input)."""
    for d in drafts:
        if not d.is_balanced():
            raise AssertionError(f"entry {d.key} is not balanced: {d.totals()}")
