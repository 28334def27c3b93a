"""Commitments: a minimum spend billed as a true-up, and a maximum (cap) per period."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from subledger.core.terms.base import Identifier, TermsModel
from subledger.core.terms.decimals import NonNegativeDecimal, TermError


class Commitment(TermsModel):
    """A spend commitment over the charges of ``applies_to`` (all components when empty).

    ``minimum``: when the period's (or, with ``per: term``, the whole term's) net charges
    fall short of ``amount``, a true-up line bills the difference; a per-term true-up is
    billed in the term's last period. ``maximum``: charges above ``amount`` in a period
    are taken off by a cap line. Per-period amounts are prorated by day for a partial
    period unless ``proration`` is ``none``. Caps apply first; a minimum is measured on
    the spend after the caps on its components unless ``measured_on`` is
    ``uncapped_spend``.
    """

    id: Identifier
    kind: Literal["minimum", "maximum"]
    amount: NonNegativeDecimal = Field(description="major units of the contract currency")
    per: Literal["period", "term"] = "period"
    applies_to: list[str] = Field(default_factory=list, description="component ids; empty means all")
    proration: Literal["by_day", "none"] = "by_day"
    # None (not "capped_spend") when unset, so existing terms keep their documents and hashes.
    measured_on: Literal["capped_spend", "uncapped_spend"] | None = Field(
        default=None,
        description="minimum only: the spend a minimum is measured on; capped_spend (default) counts "
        "the caps' reductions, uncapped_spend ignores them",
    )

    @model_validator(mode="after")
    def _cap_is_per_period(self) -> Commitment:
        if self.kind == "maximum" and self.per == "term":
            raise TermError(
                "a maximum per term is not supported", fix="use per: period for a maximum (cap)"
            )
        if self.kind == "maximum" and self.measured_on is not None:
            raise TermError(
                "measured_on is set on a maximum; it says what spend a minimum is measured on",
                fix="remove measured_on from the maximum (a cap is always measured on the spend before commitments)",
                at="measured_on",
                value=self.measured_on,
            )
        return self

    @property
    def measured_on_capped_spend(self) -> bool:
        """Whether a minimum is measured on the spend after caps (the default)."""
        return self.measured_on != "uncapped_spend"
