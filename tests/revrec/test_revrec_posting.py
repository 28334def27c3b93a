"""Planning postings: idempotent re-runs, reversing corrections, closed periods."""

from __future__ import annotations

from datetime import UTC, date, datetime

from subledger.core.revrec.amortization import ServicePeriod
from subledger.core.revrec.calendar import Month
from subledger.core.revrec.curves import Ratable
from subledger.core.revrec.journal import build_entries
from subledger.core.revrec.obligation import Billing, LineKind, Obligation, Recognition, Treatment
from subledger.core.revrec.posting import PostedEntry, Posting, plan_postings


def as_posted(postings: list[Posting], existing: list[PostedEntry] = ()) -> list[PostedEntry]:  # type: ignore[assignment]
    """What the store would hold after posting ``postings`` on top of ``existing``."""
    out = list(existing)
    for p in postings:
        out.append(PostedEntry(
            id=f"id:{p.external_id}", external_id=p.external_id, key=p.draft.key, kind=p.draft.kind,
            content_hash=p.draft.content_hash() if p.reverses is None else "", entry_date=p.entry_date,
            period=p.period, currency=p.draft.currency,
            reverses_entry_id=p.reverses.id if p.reverses else None, lines=p.draft.lines,
        ))
    return out


def fee(amount: int) -> Obligation:
    period = ServicePeriod.from_dates(date(2026, 1, 1), date(2026, 3, 31))
    return Obligation(
        key="fee", currency="USD", treatment=Treatment.RATABLE, product="fee",
        recognitions=(Recognition(LineKind.REVENUE, Ratable(amount, period)),),
        billings=(Billing(datetime(2026, 1, 1, tzinfo=UTC), amount, "invoice:s:1"),), contract_id="c1",
    )


def test_first_run_posts_every_entry_in_its_own_period() -> None:
    drafts = build_entries([fee(9000)], through=date(2026, 3, 31))
    plan = plan_postings(drafts, [], through=date(2026, 3, 31), closed_through=None)
    assert [(p.draft.kind, str(p.period)) for p in plan] == [
        ("invoice", "2026-01"), ("recognition", "2026-01"), ("recognition", "2026-02"), ("recognition", "2026-03"),
    ]
    assert not any(p.is_correction for p in plan)


def test_rerunning_over_the_same_data_posts_nothing() -> None:
    drafts = build_entries([fee(9000)], through=date(2026, 3, 31))
    posted = as_posted(plan_postings(drafts, [], through=date(2026, 3, 31), closed_through=None))
    assert plan_postings(drafts, posted, through=date(2026, 3, 31), closed_through=Month(2026, 2)) == []


def test_changed_data_in_an_open_period_is_reversed_and_reposted_there() -> None:
    through = date(2026, 3, 31)
    posted = as_posted(plan_postings(build_entries([fee(9000)], through=through), [], through=through,
                                     closed_through=None))
    plan = plan_postings(build_entries([fee(9900)], through=through), posted, through=through, closed_through=None)
    reversals = [p for p in plan if p.reverses is not None]
    assert {p.reverses.key for p in reversals} == {d.key for d in build_entries([fee(9000)], through=through)}
    assert all(p.period == p.reverses.period for p in reversals)
    assert all(p.external_id.endswith(":reversal") for p in reversals)


def test_late_data_for_a_closed_period_posts_in_the_first_open_period() -> None:
    through = date(2026, 3, 31)
    posted = as_posted(plan_postings(build_entries([fee(9000)], through=through), [], through=through,
                                     closed_through=None))
    plan = plan_postings(build_entries([fee(9900)], through=through), posted, through=through,
                         closed_through=Month(2026, 2))
    assert plan and all(p.period >= Month(2026, 3) for p in plan)
    late = [p for p in plan if p.reverses is None and p.draft.origin_period < Month(2026, 3)]
    assert late and all(p.entry_date == date(2026, 3, 1) for p in late)
    # Posting the corrections makes the next run quiet again.
    assert plan_postings(build_entries([fee(9900)], through=through), as_posted(plan, posted), through=through,
                         closed_through=Month(2026, 2)) == []


def test_an_entry_the_data_no_longer_implies_is_reversed() -> None:
    through = date(2026, 3, 31)
    posted = as_posted(plan_postings(build_entries([fee(9000)], through=through), [], through=through,
                                     closed_through=None))
    plan = plan_postings([], posted, through=through, closed_through=None,
                         managed_kinds=frozenset({"invoice", "recognition"}))
    assert len(plan) == 4 and all(p.reverses is not None for p in plan)


def test_content_that_comes_back_gets_a_fresh_external_id() -> None:
    through = date(2026, 3, 31)
    a = build_entries([fee(9000)], through=through)
    b = build_entries([fee(9900)], through=through)
    posted = as_posted(plan_postings(a, [], through=through, closed_through=None))
    posted = as_posted(plan_postings(b, posted, through=through, closed_through=None), posted)
    back = plan_postings(a, posted, through=through, closed_through=None)
    new_ids = [p.external_id for p in back if p.reverses is None]
    assert new_ids and all(i.endswith(":2") for i in new_ids)
    assert len({p.external_id for p in back} | {p.external_id for p in posted}) == len(back) + len(posted)


def test_entries_dated_after_through_are_left_alone() -> None:
    posted = as_posted(plan_postings(build_entries([fee(9000)], through=date(2026, 3, 31)), [],
                                     through=date(2026, 3, 31), closed_through=None))
    assert plan_postings(build_entries([fee(9000)], through=date(2026, 1, 31)), posted,
                         through=date(2026, 1, 31), closed_through=None) == []
