"""Invariants of recognition and the journal, checked on generated contracts (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from subledger.core.revrec.accounts import AccountRole
from subledger.core.revrec.amortization import AmortizationPolicy, ServicePeriod
from subledger.core.revrec.calendar import Month, through_instant
from subledger.core.revrec.commitments import CommitmentPolicy, commitment_curve
from subledger.core.revrec.credits import BreakagePolicy, breakage_curve, redemptions_curve
from subledger.core.revrec.curves import Ratable
from subledger.core.revrec.journal import build_entries
from subledger.core.revrec.obligation import Billing, LineKind, Obligation, Recognition, Treatment
from subledger.core.revrec.posting import PostedEntry, Posting, plan_postings
from subledger.core.revrec.schedule import daily, final_amount, monthly
from subledger.core.revrec.usage import per_unit

R = AccountRole
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
prices = st.integers(min_value=-10**9, max_value=10**9)
policies = st.sampled_from(list(AmortizationPolicy))


@st.composite
def periods(draw: st.DrawFn) -> ServicePeriod:
    start = EPOCH + timedelta(seconds=draw(st.integers(0, 400 * 86400)))
    length = timedelta(seconds=draw(st.integers(0, 800 * 86400)))
    return ServicePeriod(start, start + length)


@given(price=prices, period=periods(), policy=policies)
def test_every_ratable_schedule_sums_to_its_price(price: int, period: ServicePeriod,
                                                  policy: AmortizationPolicy) -> None:
    slices = monthly(Ratable(price, period, policy))
    assert sum(s.amount_minor for s in slices) == price
    # Cumulative rounding: no month is more than one minor unit from its exact share.
    exact_total = Fraction(0)
    curve = Ratable(price, period, policy)
    for s in slices:
        assert isinstance(s.period, Month)
        share = curve.value(s.period.end) - curve.value(s.period.start)
        exact_total += share
        assert abs(s.amount_minor - share) <= 1


@settings(max_examples=40)
@given(price=st.integers(0, 10**7), period=periods())
def test_daily_and_monthly_schedules_agree(price: int, period: ServicePeriod) -> None:
    curve = Ratable(price, period, AmortizationPolicy.BY_DAY)
    by_month: dict[Month, int] = defaultdict(int)
    for s in daily(curve):
        assert isinstance(s.period, date)
        by_month[Month.of(s.period)] += s.amount_minor
    assert {m: a for m, a in by_month.items() if a} == {s.period: s.amount_minor for s in monthly(curve)}


usage_days = st.lists(st.tuples(st.integers(0, 700), st.integers(0, 10**6)), max_size=30)


@given(usage=usage_days, price=st.decimals(min_value=0, max_value=5, places=4))
def test_usage_schedules_sum_to_the_rounded_usage_charge(usage: list[tuple[int, int]], price: Decimal) -> None:
    steps = [(date(2025, 1, 1) + timedelta(days=d), q) for d, q in usage]
    curve = per_unit(steps, price, "USD")
    total = sum(s.amount_minor for s in monthly(curve)) if steps else 0
    assert total == (final_amount(curve) if steps else 0)
    assert abs(total - sum(Fraction(q) for _, q in steps) * Fraction(price) * 100) < 1


@st.composite
def credit_cases(draw: st.DrawFn) -> tuple[int, list[tuple[datetime, int]], BreakagePolicy, Fraction]:
    purchase = draw(st.integers(1, 10**7))
    amounts = draw(st.lists(st.integers(1, 10**6), max_size=12))
    redemptions, left = [], purchase
    for i, a in enumerate(amounts):
        a = min(a, left)
        if a == 0:
            break
        redemptions.append((EPOCH + timedelta(days=20 * i + 1), a))
        left -= a
    policy = draw(st.sampled_from(list(BreakagePolicy)))
    rate = Fraction(draw(st.integers(0, 99)), 100)
    return purchase, redemptions, policy, rate


@given(case=credit_cases())
def test_prepaid_credits_recognize_the_purchase_and_never_go_negative(case) -> None:  # type: ignore[no-untyped-def]
    purchase, redemptions, policy, rate = case
    expiry = EPOCH + timedelta(days=300)
    redeemed = redemptions_curve(purchase, redemptions, expiry)
    breakage = breakage_curve(purchase, redeemed, expiry, policy, rate)
    assert final_amount(redeemed) + final_amount(breakage) == purchase
    for month in Month(2025, 1), Month(2025, 4), Month(2025, 8), Month(2025, 11), Month(2026, 1):
        balance = purchase - redeemed.value(month.end) - breakage.value(month.end)
        assert balance >= 0  # the contract liability (the credit balance) is never negative


@given(minimum=st.integers(0, 10**6), usage=st.lists(st.tuples(st.integers(0, 89), st.integers(0, 10**5)),
                                                       max_size=10),
       policy=st.sampled_from(list(CommitmentPolicy)), expected=st.integers(1, 10**6))
def test_commitment_policies_recognize_max_of_minimum_and_usage(minimum, usage, policy, expected) -> None:  # type: ignore[no-untyped-def]
    term = ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 3, 31))
    steps = [(date(2026, 1, 1) + timedelta(days=d), a) for d, a in usage]
    curve = commitment_curve(minimum, term, steps, policy, expected_usage_minor=expected)
    assert sum(s.amount_minor for s in monthly(curve)) == max(minimum, sum(a for _, a in usage))
    values = [curve.value(m.end) for m in (Month(2026, 1), Month(2026, 2), Month(2026, 3))]
    assert values == sorted(values)  # recognition never goes backwards


@st.composite
def contract_books(draw: st.DrawFn) -> list[Obligation]:
    """A few contracts, each with ratable fees and usage, billed at random times."""
    obligations = []
    for c in range(draw(st.integers(1, 3))):
        for o in range(draw(st.integers(1, 3))):
            period = draw(periods())
            price = draw(st.integers(0, 10**6))
            if draw(st.booleans()):
                curve = Ratable(price, period, draw(policies))
                treatment = Treatment.RATABLE
            else:
                steps = [(period.start + timedelta(days=d), q) for d, q in
                         draw(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 5000)), max_size=5))]
                curve = per_unit(steps, Decimal("0.05"), "USD")
                treatment = Treatment.USAGE
                price = final_amount(curve) if steps else 0
            if not price:
                continue
            cuts = sorted(draw(st.lists(st.integers(1, 9), min_size=1, max_size=3)))
            parts = [price * k // 10 for k in cuts] + [price]
            amounts = [b - a for a, b in zip([0, *parts], parts, strict=False)]
            billings = tuple(
                Billing(EPOCH + timedelta(days=draw(st.integers(0, 900))), amt, f"invoice:t:{c}-{o}-{i}")
                for i, amt in enumerate(amounts) if amt
            )
            obligations.append(Obligation(
                key=f"c{c}-o{o}", currency="USD", treatment=treatment, product=f"p{o}",
                recognitions=(Recognition(LineKind.REVENUE, curve),), billings=billings, contract_id=f"c{c}",
            ))
    return obligations


through_days = st.integers(0, 1200).map(lambda d: date(2025, 1, 1) + timedelta(days=d))


@settings(max_examples=60, deadline=None)
@given(book=contract_books(), through=through_days)
def test_journal_is_balanced_and_deferred_equals_billed_minus_recognized(book, through) -> None:  # type: ignore[no-untyped-def]
    entries = build_entries(book, through=through)
    assert all(e.is_balanced() for e in entries)
    per_contract: dict[str, int] = defaultdict(int)
    per_obligation: dict[tuple[str | None, AccountRole], int] = defaultdict(int)
    for e in entries:
        for ln in e.lines:
            if ln.role in (R.CONTRACT_LIABILITY, R.UNBILLED_RECEIVABLE):
                per_contract[ln.contract_id or ""] += -ln.net  # liability minus asset
                per_obligation[(ln.obligation_key, ln.role)] += ln.net
    stop = through_instant(through)
    for contract in {ob.contract_id for ob in book}:
        obs = [ob for ob in book if ob.contract_id == contract]
        billed = sum(ob.billed_through(through) for ob in obs)
        recognized = sum(ob.recognized_before(stop) for ob in obs)
        assert per_contract.get(contract or "", 0) == billed - recognized
    for (_key, role), net in per_obligation.items():
        assert (net <= 0) if role is R.CONTRACT_LIABILITY else (net >= 0)  # never a negative balance


def _as_posted(plan: list[Posting], existing: list[PostedEntry]) -> list[PostedEntry]:
    return existing + [PostedEntry(
        id=f"id:{p.external_id}", external_id=p.external_id, key=p.draft.key, kind=p.draft.kind,
        content_hash=p.draft.content_hash() if p.reverses is None else "", entry_date=p.entry_date,
        period=p.period, currency=p.draft.currency, reverses_entry_id=p.reverses.id if p.reverses else None,
        lines=p.draft.lines,
    ) for p in plan]


@settings(max_examples=40, deadline=None)
@given(book=contract_books(), later=contract_books(), through=through_days, lock=st.integers(0, 30))
def test_rerunning_posts_nothing_and_closed_periods_never_change(book, later, through, lock) -> None:  # type: ignore[no-untyped-def]
    closed = Month(2025, 1)
    for _ in range(lock):
        closed = closed.next()
    posted = _as_posted(plan_postings(build_entries(book, through=through), [], through=through,
                                      closed_through=None), [])
    assert plan_postings(build_entries(book, through=through), posted, through=through,
                         closed_through=closed) == []
    # New and changed data after the close: nothing lands in a closed period, and the
    # active journal then equals what the data implies.
    changed = build_entries(book + later, through=through)
    plan = plan_postings(changed, posted, through=through, closed_through=closed)
    assert all(p.period > closed for p in plan)
    posted = _as_posted(plan, posted)
    assert plan_postings(changed, posted, through=through, closed_through=closed) == []
    totals: dict[AccountRole, int] = defaultdict(int)
    for e in posted:
        for ln in e.lines:
            totals[ln.role] += ln.net
    want: dict[AccountRole, int] = defaultdict(int)
    for d in changed:
        for ln in d.lines:
            want[ln.role] += ln.net
    assert {k: v for k, v in totals.items() if v} == {k: v for k, v in want.items() if v}
