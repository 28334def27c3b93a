"""Planning what to post: the journal the data implies versus the journal already posted.

The posted journal is immutable. A re-run compares each desired entry (by ``key``) with
the active posted entry of the same key:

* same content: nothing is posted (re-running posts nothing new);
* new key: the entry is posted in its own period, or in the first open period when
  its own period is closed (late data);
* changed content: the posted entry is reversed and the new content posted, both in
  the first open period on or after the original;
* a posted entry the data no longer implies (a voided invoice) is reversed.

Closed periods are never touched: nothing is ever posted into them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date

from subledger.core.revrec.calendar import Month
from subledger.core.revrec.journal import EntryDraft, LineDraft


@dataclass(frozen=True)
class PostedEntry:
    """What the planner needs to know about an entry already in the journal."""

    id: str
    external_id: str
    key: str
    kind: str
    content_hash: str
    entry_date: date
    period: Month
    currency: str
    reverses_entry_id: str | None
    lines: tuple[LineDraft, ...] = ()
    memo: str = ""


@dataclass(frozen=True)
class Posting:
    """An entry to post: content, where it goes, and the entry it reverses (if any)."""

    draft: EntryDraft
    external_id: str
    period: Month
    entry_date: date
    reverses: PostedEntry | None = None

    @property
    def is_correction(self) -> bool:
        return self.period != self.draft.origin_period or self.reverses is not None


def reversal_of(entry: PostedEntry) -> EntryDraft:
    """The mirror image of a posted entry: every debit becomes a credit and back."""
    lines = tuple(replace(ln, debit_minor=ln.credit_minor, credit_minor=ln.debit_minor) for ln in entry.lines)
    return EntryDraft(
        key=entry.key, kind="reversal", entry_date=entry.entry_date, currency=entry.currency,
        lines=lines, memo=f"reverses {entry.external_id}",
    )


def active_entries(posted: Iterable[PostedEntry]) -> dict[str, PostedEntry]:
    """Posted entries that are not reversals and have not been reversed, by key."""
    entries = list(posted)
    reversed_ids = {e.reverses_entry_id for e in entries if e.reverses_entry_id}
    active: dict[str, PostedEntry] = {}
    for e in sorted(entries, key=lambda e: (e.period, e.external_id)):
        if e.reverses_entry_id is None and e.id not in reversed_ids:
            active[e.key] = e
    return active


def plan_postings(
    desired: Sequence[EntryDraft],
    posted: Sequence[PostedEntry],
    *,
    through: date,
    closed_through: Month | None,
    managed_kinds: frozenset[str] | None = None,
) -> list[Posting]:
    """What to post so the active journal equals ``desired`` (see the module docstring).

    Args:
        desired: every entry the data implies through ``through`` (from ``build_entries``).
        posted: every entry already in the journal.
        through: entries posted after this date are left alone (a run never rewrites
            what a later run posted).
        closed_through: the last closed period, or None.
        managed_kinds: only active entries of these kinds are reversed when no longer
            desired (default: the kinds in ``desired``).
    """
    first_open = closed_through.next() if closed_through is not None else None
    active = active_entries(posted)
    used_ids = {e.external_id for e in posted}
    kinds = managed_kinds if managed_kinds is not None else frozenset(d.kind for d in desired)
    plan: list[Posting] = []

    def place(period: Month, when: date) -> tuple[Month, date]:
        if first_open is not None and period < first_open:
            return first_open, first_open.first_day
        return period, when

    def new_id(base: str) -> str:
        candidate, n = base, 1
        while candidate in used_ids:
            n += 1
            candidate = f"{base}:{n}"
        used_ids.add(candidate)
        return candidate

    def reverse(entry: PostedEntry) -> None:
        period, when = place(entry.period, entry.entry_date)
        plan.append(Posting(reversal_of(entry), new_id(f"{entry.external_id}:reversal"), period, when, entry))

    for draft in desired:
        current = active.pop(draft.key, None)
        if current is not None:
            if current.entry_date > through or current.content_hash == draft.content_hash():
                continue
            reverse(current)
        period, when = place(draft.origin_period, draft.entry_date)
        plan.append(Posting(draft, new_id(draft.external_id()), period, when))

    for entry in active.values():
        if entry.kind in kinds and entry.entry_date <= through:
            reverse(entry)
    return plan
