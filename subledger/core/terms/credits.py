"""Prepaid credit grants written into a contract."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from subledger.core.terms.base import Identifier, TermsModel
from subledger.core.terms.decimals import NonNegativeDecimal, TermDate, TermError


class TopUp(TermsModel):
    """More credit added to a grant on its ``effective`` date (same kind as the grant: money or units)."""

    effective: TermDate
    amount: NonNegativeDecimal | None = None
    units: NonNegativeDecimal | None = None


class CreditGrantTerms(TermsModel):
    """A prepaid credit grant: money (``amount``, major units) or units of a ``meter``.

    Grants are drawn down by ``priority`` (lower first), then soonest expiry (a grant
    without expiry last), then oldest ``effective`` date, then id. ``expires`` is the
    first day the grant can no longer be used. ``cost_basis`` is what the customer paid
    per unit of credit: by default 1 for paid money grants and 0 for promotional ones.
    """

    id: Identifier
    amount: NonNegativeDecimal | None = Field(default=None, description="money, major units")
    units: NonNegativeDecimal | None = Field(default=None, description="units of meter")
    meter: str | None = Field(default=None, description="the meter a units grant covers")
    applies_to: list[str] = Field(
        default_factory=list, description="component ids a money grant may pay; empty means all"
    )
    effective: TermDate | None = Field(default=None, description="defaults to the contract start date")
    expires: TermDate | None = None
    priority: int = 0
    category: Literal["paid", "promotional"] = "paid"
    cost_basis: NonNegativeDecimal | None = None
    top_ups: list[TopUp] = Field(default_factory=list)

    @model_validator(mode="after")
    def _money_or_units(self) -> CreditGrantTerms:
        if (self.amount is None) == (self.units is None):
            raise TermError(
                "a credit grant needs exactly one of amount (money) and units",
                fix="write amount: \"500.00\" for money, or units: 1000 with meter: <meter>",
            )
        if self.units is not None and not self.meter:
            raise TermError("a units grant needs the meter it covers", fix="add meter: <meter key>")
        if self.amount is not None and self.meter:
            raise TermError(
                "meter is set on a money grant", fix="use applies_to with component ids to limit a money grant"
            )
        if self.effective and self.expires and self.expires <= self.effective:
            raise TermError(
                f"expires {self.expires} is not after effective {self.effective}",
                fix="make expires a later date than effective",
            )
        for i, top_up in enumerate(self.top_ups):
            if (top_up.amount is None) != (self.amount is None) or (top_up.units is None) != (
                self.units is None
            ):
                raise TermError(
                    f"top_ups[{i}] is not the same kind as the grant",
                    fix="top up a money grant with amount and a units grant with units",
                )
        return self

    @property
    def is_money(self) -> bool:
        return self.amount is not None

    @property
    def effective_cost_basis(self) -> Decimal | None:
        """The cost basis, with the defaults for money grants filled in."""
        if self.cost_basis is not None:
            return self.cost_basis
        if self.is_money:
            return Decimal(1) if self.category == "paid" else Decimal(0)
        return Decimal(0) if self.category == "promotional" else None
