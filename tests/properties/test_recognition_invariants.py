"""Invariants of revenue recognition on random contracts in a store (issue 14, Deliver 3):

* recognized over the term = the transaction price: for any contract, the sum of its
  periods' expectations plus what paid credit paid for plus the breakage of unused paid
  credit; for a minimum commitment, max(M, usage value) (docs/revrec/commitments.md);
* deferred + recognized - billed = unbilled, per contract, at every month end, neither
  balance negative (docs/revrec/journal.md, "Contract asset and contract liability");
* nothing is recognized after the contract ends unless a documented policy says so: the
  only documented ones are breakage at expiry (docs/revrec/breakage-at-expiry.md) and,
  under a monthly amortization policy, the share of the term's last month, recognized
  when that month ends (docs/revrec/amortization-monthly-*.md).

Contracts, usage and invoices are generated as in ``test_one_expectation`` (identities
split across the ``crm``, ``meter`` and ``billing`` connections); ``recognize`` runs
through the term's last day, then through a date after every term and every expiry.
Revenue, deferred revenue and unbilled receivable are read from the posted journal
(``JournalLine.role``, debit minus credit, by contract); the schedule
(``RevenueScheduleLine``) must agree with it. The ``@example`` cases are minimal failing
examples the properties found.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, example, given, note, settings
from properties_support import (
    AS_OF,
    FAR,
    GRANT_EXPIRING_IN_A_PERIOD,
    MINIMUM_WITH_MONTHLY_FEE,
    REVENUE_ROLES,
    SETTINGS,
    TRUE_UP_GONE_BY_PERIOD_END,
    Case,
    breakage,
    cases,
    customers,
    half_up_cents,
    journal_by_month,
    make_invoices,
    month_end,
    months,
    rate,
    recognition_date,
    reference_periods,
    revenue_through,
    schedule_by_month,
    seed,
    simple_cases,
)
from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.revrec.calendar import through_instant
from subledger.sync.engine import reconcile
from subledger.sync.recognition import recognize

PROPERTY = settings(
    max_examples=30, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)



def revenue(posted: dict[str, dict[str, int]], last: str | None = None) -> int:
    """Revenue net of contra, with breakage, posted in periods up to ``last`` (YYYY-MM)."""
    return -sum(v for period, roles in posted.items() if last is None or period <= last
                for role, v in roles.items() if role in REVENUE_ROLES)


def balance(posted: dict[str, dict[str, int]], role: str, last: str) -> int:
    """Debit minus credit of ``role`` posted in periods up to ``last``."""
    return sum(roles.get(role, 0) for period, roles in posted.items() if period <= last)


def billed_before(case: Case, instant) -> int:  # type: ignore[no-untyped-def]
    """Everything invoiced to the customer before ``instant`` (tax-free invoices)."""
    return sum(ln.line["amount_minor"] for inv in case.invoices if inv.issued_at < instant for ln in inv.lines)


def setup(engine: Engine, group: list[Case]) -> None:
    for case in group:
        note(repr(case))
        rate(case)
        make_invoices(case)
    seed(engine, group)
    reconcile(engine, settings=SETTINGS, actor="t", now=AS_OF, rules=[])  # identities only


def recognize_through(engine: Engine, day) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        recognize(s, through=day, as_of=AS_OF, settings=SETTINGS)
        s.commit()


def check_invariants(engine: Engine, group: list[Case]) -> None:
    setup(engine, group)
    at_end: dict[str, int] = {}
    for day in sorted({recognition_date(c) for c in group}):
        recognize_through(engine, day)
        for case in (c for c in group if recognition_date(c) == day):
            at_end[case.contract_ext] = revenue(journal_by_month(engine, case.contract_id))
    recognize_through(engine, FAR)
    for case in group:
        posted = journal_by_month(engine, case.contract_id)
        schedule = schedule_by_month(engine, case.contract_id)
        name = case.contract_ext

        # Recognized over the term = the transaction price.
        price = revenue_through(case, through_instant(FAR))
        assert revenue(posted) == price, f"{name}: journal revenue {revenue(posted)}, transaction price {price}"
        assert sum(schedule.values()) == price, f"{name}: schedule {sum(schedule.values())}, price {price}"

        # deferred + recognized - billed = unbilled, at every month end.
        for y, m in months(case.start, FAR):
            last = f"{y:04d}-{m:02d}"
            deferred = -balance(posted, "contract_liability", last)
            unbilled = balance(posted, "unbilled_receivable", last)
            recognized = revenue(posted, last)
            billed = billed_before(case, through_instant(month_end(y, m)))
            assert deferred + recognized - billed == unbilled, (
                f"{name} at the end of {last}: deferred {deferred} + recognized {recognized} - billed {billed} "
                f"!= unbilled {unbilled}")
            # Neither balance is ever negative for an obligation, so neither is for a contract.
            assert deferred >= 0 and unbilled >= 0, f"{name} at the end of {last}: deferred {deferred}, " \
                f"unbilled {unbilled}"

        # Nothing after the contract ends but breakage at expiry (and, under a monthly
        # policy, the last month's share at that month's end, which recognition_date allows).
        end_month = f"{case.end.year:04d}-{case.end.month:02d}"
        late = {(period, kind): v for (period, kind), v in schedule.items() if period > end_month and v}
        assert all(kind == "breakage" for _, kind in late), f"{name}: recognized after the term: {late}"
        late_roles = {(period, role): v for period, roles in posted.items() if period > end_month
                      for role, v in roles.items() if role in REVENUE_ROLES and v}
        assert all(role == "breakage_revenue" for _, role in late_roles), \
            f"{name}: posted after the term: {late_roles}"
        unused, expires = breakage(case)
        stop = through_instant(recognition_date(case))
        after = unused if expires is not None and expires >= stop else 0
        assert revenue(posted) - at_end[name] == after, (
            f"{name}: {revenue(posted) - at_end[name]} recognized after {recognition_date(case)}, "
            f"only {after} of breakage may be")


@PROPERTY
@given(group=customers(cases(0), cases(1)))
@example(group=GRANT_EXPIRING_IN_A_PERIOD)
@example(group=TRUE_UP_GONE_BY_PERIOD_END)
@example(group=MINIMUM_WITH_MONTHLY_FEE)
def test_recognition_invariants_on_random_contracts(engine: Engine, group: list[Case]) -> None:
    check_invariants(engine, group)


@settings(PROPERTY, max_examples=20)
@given(group=customers(simple_cases(0, term_minimum=True), simple_cases(1, term_minimum=True)))
@example(group=MINIMUM_WITH_MONTHLY_FEE)
def test_a_minimum_commitment_recognizes_max_of_minimum_and_usage_value(engine: Engine, group: list[Case]) -> None:
    """Per-unit usage (and a fee) under a per-term minimum M: the term recognizes
    max(M, usage value), the usage value priced from first principles."""
    check_invariants(engine, group)
    for case in group:
        spend = sum(spend for spend, _ in reference_periods(case))
        minimum = half_up_cents(Decimal(case.terms["commitments"][0]["amount"]))
        posted = journal_by_month(engine, case.contract_id)
        assert revenue(posted) == max(minimum, spend), \
            f"{case.contract_ext}: recognized {revenue(posted)}, max(M {minimum}, usage value {spend})"
