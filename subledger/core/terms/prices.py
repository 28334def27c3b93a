"""Price models: how a quantity of usage becomes an amount.

Tiers follow Stripe: ``up_to`` is inclusive, the next tier starts just above it, and
the last tier is open (``up_to: null``). Every price is in major units of the contract
currency (``"0.05"`` is five cents in USD) and may carry more decimals than the
currency has; rounding to minor units happens once per rated line.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, model_validator

from subledger.core.db_types import decimal_text
from subledger.core.terms.base import TermsModel
from subledger.core.terms.decimals import NonNegativeDecimal, PositiveDecimal, TermError, UpTo


class Tier(TermsModel):
    """One tier: units up to and including ``up_to`` at ``unit_price``, plus a flat fee."""

    up_to: UpTo = Field(default=None, description="inclusive upper bound; null or absent for the last, open tier")
    unit_price: NonNegativeDecimal = Field(default=Decimal(0), description="price per unit in this tier")
    flat_fee: NonNegativeDecimal = Field(
        default=Decimal(0), description="charged once when usage reaches this tier"
    )


def _check_tiers(tiers: list[Tier]) -> None:
    previous: Decimal | None = None
    for i, tier in enumerate(tiers):
        last = i == len(tiers) - 1
        if tier.up_to is None and not last:
            raise TermError(
                "the tier is open (no up_to) but tiers follow it",
                fix="only the last tier may be open; give this tier an up_to or move it last",
                at=f"tiers[{i}].up_to",
            )
        if tier.up_to is None:
            continue
        if previous is not None and tier.up_to <= previous:
            relation = "equals" if tier.up_to == previous else "is below"
            raise TermError(
                f"up_to {relation} tiers[{i - 1}].up_to {decimal_text(previous)}: "
                "the tiers overlap or are out of order",
                fix="list tiers in ascending order with each up_to larger than the one before "
                "(up_to is inclusive; the next tier starts just above it)",
                at=f"tiers[{i}].up_to",
                value=decimal_text(tier.up_to),
            )
        previous = tier.up_to
    if tiers[-1].up_to is not None:
        raise TermError(
            "the last tier has an up_to, so larger quantities have no price",
            fix="set the last tier's up_to to null (or \"inf\")",
            at=f"tiers[{len(tiers) - 1}].up_to",
            value=decimal_text(tiers[-1].up_to),
        )


class PerUnitPrice(TermsModel):
    """Every unit at one price."""

    model: Literal["per_unit"]
    unit_price: NonNegativeDecimal


class GraduatedPrice(TermsModel):
    """Each unit at the price of the tier it falls in; a tier's flat fee once it is reached.

    The first tier's flat fee is charged even at zero usage (as Stripe does).
    """

    model: Literal["graduated"]
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiers_ascend(self) -> GraduatedPrice:
        _check_tiers(self.tiers)
        return self


class VolumePrice(TermsModel):
    """All units at the price of the tier the total reaches, plus that tier's flat fee.

    Orb calls this "bulk". Zero usage reaches the first tier.
    """

    model: Literal["volume"]
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiers_ascend(self) -> VolumePrice:
        _check_tiers(self.tiers)
        return self


class PackagePrice(TermsModel):
    """A price per block of units: ``package_price`` for every ``package_size`` units.

    A partial block is rounded ``up`` (charged as a whole block) or ``down`` (free).
    """

    model: Literal["package"]
    package_size: PositiveDecimal
    package_price: NonNegativeDecimal
    rounding: Literal["up", "down"] = "up"


class PercentagePrice(TermsModel):
    """A share of each transaction's amount, plus a fixed fee per transaction.

    Give ``percent`` (``"2.9"``) or ``basis_points`` (``"290"``), not both. The fee of one
    transaction is ``amount * rate + fixed_fee``, then raised to ``minimum_fee`` and
    lowered to ``maximum_fee`` when those are set. The meter's event quantity is the
    transaction amount in major units of the contract currency.
    """

    model: Literal["percentage"]
    percent: NonNegativeDecimal | None = None
    basis_points: NonNegativeDecimal | None = None
    fixed_fee: NonNegativeDecimal = Field(default=Decimal(0), description="per transaction")
    minimum_fee: NonNegativeDecimal | None = Field(default=None, description="per transaction")
    maximum_fee: NonNegativeDecimal | None = Field(default=None, description="per transaction")

    @model_validator(mode="after")
    def _one_rate(self) -> PercentagePrice:
        if (self.percent is None) == (self.basis_points is None):
            raise TermError(
                "a percentage price needs exactly one of percent and basis_points",
                fix="write percent: \"2.9\" or basis_points: \"290\" (100 basis points = 1 percent)",
            )
        if (
            self.minimum_fee is not None
            and self.maximum_fee is not None
            and self.minimum_fee > self.maximum_fee
        ):
            raise TermError(
                f"minimum_fee {decimal_text(self.minimum_fee)} is above maximum_fee "
                f"{decimal_text(self.maximum_fee)}",
                fix="make minimum_fee at most maximum_fee",
            )
        return self

    @property
    def rate(self) -> Decimal:
        """The share as a fraction: 2.9 percent and 290 basis points are both ``0.029``."""
        if self.percent is not None:
            return self.percent / 100
        assert self.basis_points is not None
        return self.basis_points / 10000


PriceModel = Annotated[
    PerUnitPrice | GraduatedPrice | VolumePrice | PackagePrice | PercentagePrice,
    Field(discriminator="model"),
]
"""One of the price models, chosen by its ``model`` field."""

QUANTITY_MODELS = ("per_unit", "graduated", "volume", "package")
"""Models priced on an aggregated quantity (allotments and unit credits apply to these)."""
