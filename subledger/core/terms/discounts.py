"""Discounts: a percent or an amount off one component or the whole invoice."""

from __future__ import annotations

from pydantic import Field, model_validator

from subledger.core.db_types import decimal_text
from subledger.core.terms.base import Identifier, TermsModel
from subledger.core.terms.decimals import NonNegativeDecimal, TermDate, TermError


class Discount(TermsModel):
    """A discount for a duration.

    ``percent`` takes that share off; ``amount`` takes a fixed sum off each period, never
    more than the charges it applies to. ``applies_to`` names one component; without it
    the discount applies to the whole invoice. The discount runs from ``starts`` (the
    contract start by default) for ``periods`` billing periods, or until ``ends``
    (exclusive), or for the whole term when neither is given.
    """

    id: Identifier
    percent: NonNegativeDecimal | None = None
    amount: NonNegativeDecimal | None = Field(default=None, description="per period, major units")
    applies_to: str | None = Field(default=None, description="a component id; empty means the whole invoice")
    starts: TermDate | None = None
    periods: int | None = Field(default=None, ge=1)
    ends: TermDate | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Discount:
        if (self.percent is None) == (self.amount is None):
            raise TermError(
                "a discount needs exactly one of percent and amount",
                fix="write percent: \"10\" for ten percent off, or amount: \"25.00\"",
            )
        if self.percent is not None and self.percent > 100:
            raise TermError(
                f"percent {decimal_text(self.percent)} is above 100", fix="use a percent from 0 to 100"
            )
        if self.periods is not None and self.ends is not None:
            raise TermError("periods and ends are both set", fix="give the duration one way: periods or ends")
        if self.starts and self.ends and self.ends <= self.starts:
            raise TermError(f"ends {self.ends} is not after starts {self.starts}", fix="make ends later than starts")
        return self
