"""One expectation: leakage, `subledger rate`, the standing endpoint and revenue recognition
agree to the cent on every contract-period of random contracts (issue 14, "Done when").

Each example stores one or two customers whose contract lives in the ``crm`` connection,
whose usage lives in ``meter`` and whose invoices live in ``billing``, each under a
different customer id (see ``properties_support``). For every ended period:

1. ``unbilled_usage`` / ``over_billing`` (run by ``reconcile``, which resolves the
   identities first): per charge, a finding exactly when expected and invoiced differ,
   with ``details.expected_minor`` the expectation and ``details.invoiced_minor`` what
   the test invoiced; no other finding;
2. ``subledger rate CONTRACT --period YYYY-MM`` on the store (``rate_store``, through the
   CLI's own store and settings: ``SUBLEDGER_DATABASE_URL`` / ``SUBLEDGER_CONFIG``): the
   same lines and total as the rating engine given the same terms and usage directly
   (docs/rating.md: the engine is a pure function of terms, usage and period), covered
   and ended, and the invoiced amount the test billed;
3. the standing endpoint (``StandingCalculator``) at the period's last instant: its
   ``expected`` is that expectation; at a random instant inside the period it is the
   period rated with the usage before that instant (docs/service.md, "the period so far
   rated by the rating engine");
4. ``recognize`` through the last day of the term: the revenue the journal posts for the
   contract is the sum of its periods' expectations, plus what paid credit paid for
   (a paid draw releases deferred revenue; it is not contra revenue), plus the breakage
   of unused paid credit when it expired by then (docs/revrec/prepaid-credits.md,
   breakage-at-expiry.md, sources.md "Contract-derived obligations").

A smaller family of contracts (per-unit usage with a per-period allotment, a flat fee, one
minimum per period or per term; no tiers, caps, discounts or grants) is also priced from
first principles in the test (``reference_totals``: Decimal, each line rounded once half
up to cents) and must match all four. A third property asks the standing endpoint at
each period's first instant (a period is ``[start, end)``).

The ``@example`` cases are minimal failing examples the properties found; they run first,
so a property fails fast (and deterministically) while one of them still fails.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from properties_support import (
    AS_OF,
    GRANT_EXPIRING_IN_A_PERIOD,
    MINIMUM_WITH_MONTHLY_FEE,
    REVENUE_ROLES,
    SETTINGS,
    TRUE_UP_GONE_BY_PERIOD_END,
    TWO_MONTHS,
    Case,
    cases,
    charge_of,
    customers,
    forget_cli_engine,
    journal_by_month,
    make_invoices,
    open_findings,
    point_cli_at,
    rate,
    rate_until,
    recognition_date,
    reference_totals,
    revenue_through,
    seed,
    simple_cases,
    stamp_head,
)
from sqlalchemy import Engine
from sqlmodel import Session

from subledger.api.standing import StandingCalculator
from subledger.commands.rate import rate_store
from subledger.core.revrec.calendar import through_instant
from subledger.sync.engine import reconcile
from subledger.sync.recognition import recognize
from subledger.sync.rules.billing import OverBillingRule, UnbilledUsageRule

MICRO = timedelta(microseconds=1)
PROPERTY = settings(
    max_examples=30, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def store(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """The shared engine (SQLite, and PostgreSQL when configured), initialised as the CLI
    expects, with the CLI pointed at it for the whole test."""
    stamp_head(engine)
    point_cli_at(engine, tmp_path, monkeypatch)
    yield engine
    forget_cli_engine()



def lines_of(rating) -> list[tuple[str, str, int]]:  # type: ignore[no-untyped-def]
    return [(ln.key, ln.kind, ln.amount) for ln in rating.lines]


def standing_expected(engine: Engine, case: Case, now) -> int:  # type: ignore[no-untyped-def]
    """``expected`` (minor units) of the standing entry for the case's contract at ``now``."""
    with Session(engine) as s:
        calc = StandingCalculator(s, SETTINGS, "api", now=now)
        found = [entry for who, contracts in calc.contracts().items()
                 for entry in calc.standing(who, contracts).to_json()["contracts"]
                 if entry["contract"] == case.contract_ext]
    assert len(found) == 1, f"{case.contract_ext}: standing at {now} has {len(found)} entries"
    return int(found[0]["expected"]["amount_minor"])


def check_one_expectation(engine: Engine, group: list[Case]) -> None:
    for case in group:
        note(repr(case))
        rate(case)
        make_invoices(case)
    seed(engine, group)
    reconcile(engine, settings=SETTINGS, actor="t", now=AS_OF, rules=[UnbilledUsageRule(), OverBillingRule()])
    findings = open_findings(engine)
    explained = set()
    for case in group:
        for i, (period, rating) in enumerate(zip(case.periods, case.ratings, strict=True)):
            where = f"{case.contract_ext} period {period.start}"
            # 2. subledger rate on the store, as of after the term.
            [(rated, notes)] = rate_store(case.contract_ext, period.start.strftime("%Y-%m"), None, as_of=AS_OF)
            assert (notes["covered"], notes["ended"]) == (True, True), f"{where}: {notes}"
            assert lines_of(rated) == lines_of(rating), f"{where}: rate on the store vs the engine on the same usage"
            assert rated.total == rating.total, where
            if case.simple:
                assert rated.total == reference_totals(case)[i], f"{where}: vs the first-principles reference"

            # 1. leakage: expected against invoiced, per charge.
            expected: dict[str, int] = defaultdict(int)
            invoiced: dict[str, int] = defaultdict(int)
            for ln in rated.lines:
                expected[charge_of(case, ln.kind, ln.component)] += ln.amount
            for inv in case.invoices:
                for il in inv.lines:
                    if il.period_start == period.start:
                        invoiced[il.charge] += il.line["amount_minor"]
            assert notes["invoiced_minor"] == sum(invoiced.values()), f"{where}: invoiced as `rate` reports it"
            assert sum(expected.values()) == rated.total
            for charge in sorted({*expected, *invoiced}):
                diff = expected[charge] - invoiced[charge]
                keys = {rule: ("unbilled_usage" if rule == 1 else "over_billing", case.contract_id, period.start,
                               charge) for rule in (1, -1)}
                if diff == 0:
                    assert keys[1] not in findings and keys[-1] not in findings, \
                        f"{where} {charge}: billed exactly, yet {findings.get(keys[1]) or findings.get(keys[-1])}"
                    continue
                key = keys[1 if diff > 0 else -1]
                assert key in findings, f"{where} {charge}: expected {expected[charge]}, invoiced " \
                    f"{invoiced[charge]}: no {key[0]} finding"
                f = findings[key]
                assert (f.details["expected_minor"], f.details["invoiced_minor"], f.amount_minor) == (
                    expected[charge], invoiced[charge], diff), f"{where} {charge}: {f.summary}"
                explained.add(key)

            # 3. standing: at the period's last instant it sees the whole period's usage...
            assert standing_expected(engine, case, period.end_at - MICRO) == rating.total, \
                f"{where}: standing at the period's last instant"
            # ... and inside the period, the period rated on the usage so far (its first
            # instant is tested on its own below, so that each failure is reported apart).
            probe = period.start_at + (period.end_at - period.start_at) * max(case.probes[i], 1) // 1_000_000
            assert standing_expected(engine, case, probe) == rate_until(case, i, probe).total, \
                f"{where}: standing at {probe.isoformat()}"
    extra = {k: f.summary for k, f in findings.items() if k not in explained}
    assert not extra, f"findings no invoice explains: {extra}"

    # 4. recognition through the last day of each term (the end of its last month under a
    # monthly amortization policy, which recognizes a month's share when the month ends).
    for end in sorted({recognition_date(c) for c in group}):
        with Session(engine) as s:
            recognize(s, through=end, as_of=AS_OF, settings=SETTINGS)
            s.commit()
        for case in (c for c in group if recognition_date(c) == end):
            posted = journal_by_month(engine, case.contract_id)
            recognized = -sum(v for roles in posted.values() for role, v in roles.items() if role in REVENUE_ROLES)
            want = revenue_through(case, through_instant(end))
            assert recognized == want, f"{case.contract_ext}: recognized {recognized} through {end}, " \
                f"expected {want} (periods {[r.total for r in case.ratings]})"
            if case.simple:
                assert recognized == sum(reference_totals(case)), f"{case.contract_ext}: vs the reference"


@PROPERTY
@given(group=customers(cases(0), cases(1)))
@example(group=GRANT_EXPIRING_IN_A_PERIOD)
@example(group=TRUE_UP_GONE_BY_PERIOD_END)
@example(group=MINIMUM_WITH_MONTHLY_FEE)
def test_leakage_rate_standing_and_recognition_give_one_expectation(store: Engine, group: list[Case]) -> None:
    check_one_expectation(store, group)


@settings(PROPERTY, max_examples=20)
@given(group=customers(simple_cases(0), simple_cases(1)))
@example(group=MINIMUM_WITH_MONTHLY_FEE)
def test_the_expectation_matches_a_first_principles_reference(store: Engine, group: list[Case]) -> None:
    check_one_expectation(store, group)


@settings(PROPERTY, max_examples=15)
@given(group=customers(cases(0), cases(1)))
@example(group=TWO_MONTHS)
def test_standing_shows_a_period_from_its_first_instant(store: Engine, group: list[Case]) -> None:
    """A period is ``[start, end)``: at its first instant it is the period open now, rated
    with no usage of its own yet, after the periods before it (docs/service.md, docs/rating.md)."""
    for case in group:
        note(repr(case))
        rate(case)
        make_invoices(case)
    seed(store, group)
    reconcile(store, settings=SETTINGS, actor="t", now=AS_OF, rules=[])  # identities only
    for case in group:
        for i, period in enumerate(case.periods):
            assert standing_expected(store, case, period.start_at) == rate_until(case, i, period.start_at).total, \
                f"{case.contract_ext} period {period.start}: standing at its first instant"
