"""Prepaid credits: grants, their balances, and deterministic draw-down.

Draw-down order is fixed: lower ``priority`` first, then the soonest expiry (a grant
that never expires last), then the oldest grant (earliest effective time), then the
grant id. A grant can pay a period it overlaps (effective before the period ends, not
expired when it starts); usage is priced per period, so timing inside a period is not
distinguished. After a period's draws, a grant that expires by the period's end loses
its remaining balance in an ``expiry`` movement. Balances never go negative: a draw
takes at most the balance.

Every change is a :class:`CreditMovement` with a deterministic ``entry_key``, so posting
the same rating twice adds nothing to the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from subledger.core.db_types import decimal_text
from subledger.core.money import to_major
from subledger.core.rating.periods import BillingPeriod

Amount = int | Decimal  # minor units for money grants, units for unit grants

GRANT = "grant"
TOP_UP = "top_up"
DRAW_DOWN = "draw_down"
EXPIRY = "expiry"

_NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Grant:
    """A credit grant the engine can draw from.

    Attributes:
        id: unique among the contract's grants.
        money: True for money (``amount`` in minor units), False for units of ``meter``.
        amount: the initial amount.
        applies_to: component ids a money grant may pay; empty means any charge.
        top_ups: ``(effective_at, amount)`` pairs added later.
        evidence: where the grant came from (contract terms or a billing system).
    """

    id: str
    money: bool
    amount: Amount
    effective_at: datetime
    expires_at: datetime | None = None
    priority: int = 0
    category: str = "paid"
    cost_basis: Decimal | None = None
    currency: str | None = None
    meter: str | None = None
    applies_to: frozenset[str] = frozenset()
    top_ups: tuple[tuple[datetime, Amount], ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    def order_key(self) -> tuple[Any, ...]:
        """The draw-down order: priority, soonest expiry, oldest, id."""
        expires = _NEVER if self.expires_at is None else self.expires_at
        return (self.priority, expires, self.effective_at, self.id)

    def usable_in(self, start: datetime, end: datetime) -> bool:
        """True when the grant overlaps ``[start, end)``."""
        return self.effective_at < end and (self.expires_at is None or self.expires_at > start)


class GrantBalance(NamedTuple):
    """A grant's balance, and which of its grant/top-up movements have been posted."""

    balance: Amount
    posted: frozenset[str] = frozenset()


class CreditMovement(NamedTuple):
    """One credit-ledger movement: positive for grants and top-ups, negative for draws and expiries."""

    entry_key: str
    grant_id: str
    kind: str
    occurred_at: datetime
    amount_minor: int | None = None
    units: Decimal | None = None
    currency: str | None = None
    evidence: tuple[dict[str, Any], ...] = ()

    @property
    def amount(self) -> Amount:
        return self.amount_minor if self.amount_minor is not None else self.units  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "entry_key": self.entry_key,
            "grant": self.grant_id,
            "kind": self.kind,
            "occurred_at": self.occurred_at.isoformat(),
            "evidence": list(self.evidence),
        }
        if self.amount_minor is not None and self.currency:
            out["amount"] = decimal_text(to_major(self.amount_minor, self.currency))
            out["amount_minor"] = self.amount_minor
            out["currency"] = self.currency
        if self.units is not None:
            out["units"] = decimal_text(self.units)
        return out


def opening_balances(grants: Iterable[Grant]) -> dict[str, GrantBalance]:
    """The state before anything is posted: every grant at zero, nothing posted."""
    return {g.id: GrantBalance(0 if g.money else Decimal(0)) for g in grants}


class CreditBook:
    """The credit ledger while one period is rated: balances plus the movements made."""

    __slots__ = ("_balances", "_posted", "contract_id", "grants", "movements", "period")

    def __init__(
        self, grants: tuple[Grant, ...], state: Mapping[str, GrantBalance], period: BillingPeriod,
        contract_id: str,
    ) -> None:
        self.grants = grants  # already in draw-down order
        self.period = period
        self.contract_id = contract_id
        self.movements: list[CreditMovement] = []
        self._balances: dict[str, Amount] = {}
        self._posted: dict[str, frozenset[str]] = {}
        for grant in grants:
            held = state.get(grant.id)
            self._balances[grant.id] = held.balance if held else (0 if grant.money else Decimal(0))
            self._posted[grant.id] = held.posted if held else frozenset()
        self._post_grants()

    def _key(self, grant: Grant, kind: str, suffix: str) -> str:
        return f"{self.contract_id}:{grant.id}:{kind}:{suffix}"

    def _move(self, grant: Grant, kind: str, amount: Amount, at: datetime, key: str) -> None:
        self._balances[grant.id] += amount
        if grant.money:
            self.movements.append(
                CreditMovement(key, grant.id, kind, at, amount_minor=int(amount), currency=grant.currency,
                               evidence=(grant.evidence,))
            )
        else:
            self.movements.append(
                CreditMovement(key, grant.id, kind, at, units=Decimal(amount), evidence=(grant.evidence,))
            )

    def _post_grants(self) -> None:
        end = self.period.end_at
        for grant in self.grants:
            posted = self._posted[grant.id]
            if GRANT not in posted and grant.effective_at < end:
                self._move(grant, GRANT, grant.amount, grant.effective_at, self._key(grant, GRANT, "initial"))
                posted = posted | {GRANT}
            for i, (at, amount) in enumerate(grant.top_ups):
                tag = f"{TOP_UP}:{i}"
                if tag not in posted and at < end:
                    self._move(grant, TOP_UP, amount, at, self._key(grant, TOP_UP, str(i)))
                    posted = posted | {tag}
            self._posted[grant.id] = posted

    def balance(self, grant_id: str) -> Amount:
        return self._balances[grant_id]

    def draw_units(self, meter: str, quantity: Decimal, component: str) -> tuple[Decimal, tuple[dict[str, Any], ...]]:
        """Cover up to ``quantity`` units of ``meter`` from unit grants; returns (covered, evidence)."""
        covered = Decimal(0)
        evidence: list[dict[str, Any]] = []
        start, end = self.period.start_at, self.period.end_at
        for grant in self.grants:
            if quantity <= 0:
                break
            if grant.money or grant.meter != meter or not grant.usable_in(start, end):
                continue
            take = min(self._balances[grant.id], quantity)
            if take <= 0:
                continue
            key = self._key(grant, DRAW_DOWN, f"{self.period.start.isoformat()}:{component}")
            self._move(grant, DRAW_DOWN, -take, end, key)
            covered += take
            quantity -= take
            evidence.append(grant.evidence)
        return covered, tuple(evidence)

    def draw_money(self, due_total: int, due_by_component: Mapping[str, int]) -> list[tuple[Grant, int]]:
        """Pay the period's charges from money grants; returns (grant, amount drawn) in order.

        A grant limited by ``applies_to`` pays at most what its components still owe.
        """
        draws: list[tuple[Grant, int]] = []
        remaining = dict(due_by_component)
        start, end = self.period.start_at, self.period.end_at
        for grant in self.grants:
            if due_total <= 0:
                break
            if not grant.money or not grant.usable_in(start, end):
                continue
            payable = due_total
            if grant.applies_to:
                payable = min(payable, sum(max(remaining.get(c, 0), 0) for c in grant.applies_to))
            take = min(int(self._balances[grant.id]), payable)
            if take <= 0:
                continue
            self._move(grant, DRAW_DOWN, -take, end, self._key(grant, DRAW_DOWN, self.period.start.isoformat()))
            due_total -= take
            if grant.applies_to:
                left = take
                for component in sorted(grant.applies_to):
                    part = min(max(remaining.get(component, 0), 0), left)
                    remaining[component] = remaining.get(component, 0) - part
                    left -= part
            draws.append((grant, take))
        return draws

    def close(self) -> dict[str, GrantBalance]:
        """Expire what is left of grants that end by the period's end; return the new state."""
        end = self.period.end_at
        for grant in self.grants:
            if grant.expires_at is not None and grant.expires_at <= end and self._balances[grant.id] > 0:
                key = self._key(grant, EXPIRY, self.period.start.isoformat())
                self._move(grant, EXPIRY, -self._balances[grant.id], grant.expires_at, key)
        return {
            g.id: GrantBalance(self._balances[g.id], self._posted[g.id]) for g in self.grants
        }


def in_draw_order(grants: Iterable[Grant]) -> tuple[Grant, ...]:
    """The grants sorted into draw-down order."""
    return tuple(sorted(grants, key=Grant.order_key))
