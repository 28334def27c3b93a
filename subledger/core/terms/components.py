"""Contract components: recurring flat fees and usage charges on a meter."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, model_validator

from subledger.core.terms.base import Identifier, TermsModel
from subledger.core.terms.billing import Cadence
from subledger.core.terms.decimals import NonNegativeDecimal, TermError
from subledger.core.terms.prices import QUANTITY_MODELS, PriceModel

Aggregation = Literal["sum", "count", "max", "unique_count", "latest"]
"""How a period's usage events become one quantity."""


class FlatFee(TermsModel):
    """A recurring fee: ``amount`` x ``quantity`` per cadence (the billing cycle by default).

    ``advance`` fees are billed at the start of their service period, ``arrears`` fees at
    its end. A partial period (the term starts or ends between two period starts) is
    prorated by day unless ``proration`` is ``none``.
    """

    type: Literal["flat_fee"]
    id: Identifier
    name: str = ""
    amount: NonNegativeDecimal = Field(description="price per cadence, major units")
    quantity: NonNegativeDecimal = Field(default=Decimal(1), description="e.g. seats")
    timing: Literal["advance", "arrears"] = "advance"
    cadence: Cadence | None = Field(default=None, description="defaults to the billing cycle")
    proration: Literal["by_day", "none"] = "by_day"


class Allotment(TermsModel):
    """Units included free before overage is charged.

    ``per: period`` grants ``quantity`` every billing period; unused units carry into
    the next period when ``rollover`` is true, up to ``rollover_cap`` carried units.
    ``per: term`` is one pool for the whole term, drawn down period by period.
    """

    quantity: NonNegativeDecimal
    per: Literal["period", "term"] = "period"
    rollover: bool = False
    rollover_cap: NonNegativeDecimal | None = None

    @model_validator(mode="after")
    def _rollover_is_per_period(self) -> Allotment:
        if self.per == "term" and self.rollover:
            raise TermError(
                "rollover is set on a term pool, which already spans the whole term",
                fix="remove rollover, or use per: period",
            )
        if self.rollover_cap is not None and not self.rollover:
            raise TermError("rollover_cap is set but rollover is false", fix="set rollover: true or drop the cap")
        return self


class MatrixCell(TermsModel):
    """The price of one combination of dimension values, e.g. region=eu, tier=gpu."""

    values: dict[str, str] = Field(min_length=1)
    price: PriceModel


class UsageComponent(TermsModel):
    """A usage charge: the period's usage of ``meter``, aggregated, then priced.

    Price it with ``price``, or per dimension value: list the event ``dimensions`` (event
    property names) and give a ``matrix`` of cells, each with its own price model, plus
    an optional ``default_price`` for combinations the matrix does not list.
    """

    type: Literal["usage"]
    id: Identifier
    name: str = ""
    meter: str = Field(min_length=1, max_length=128)
    aggregation: Aggregation = "sum"
    unique_property: str | None = Field(default=None, description="the event property unique_count counts")
    price: PriceModel | None = None
    dimensions: list[str] = Field(default_factory=list)
    matrix: list[MatrixCell] = Field(default_factory=list)
    default_price: PriceModel | None = None
    allotment: Allotment | None = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> UsageComponent:
        self._check_meter(info.context)
        if self.aggregation == "unique_count" and not self.unique_property:
            raise TermError(
                "aggregation unique_count needs unique_property",
                fix="name the event property whose distinct values are counted, e.g. unique_property: user_id",
            )
        if self.unique_property and self.aggregation != "unique_count":
            raise TermError(
                f"unique_property is set but aggregation is {self.aggregation}",
                fix="use aggregation: unique_count or remove unique_property",
            )
        if self.dimensions:
            self._check_matrix()
        elif self.price is None:
            raise TermError("the component has no price", fix="add a price, or dimensions with a matrix")
        elif self.matrix or self.default_price is not None:
            raise TermError(
                "matrix or default_price is set without dimensions",
                fix="list the event properties the matrix is keyed on in dimensions",
            )
        models = [p.model for p in self.prices()]
        if "percentage" in models:
            if self.aggregation != "sum":
                raise TermError(
                    f"a percentage price needs aggregation sum, not {self.aggregation}",
                    fix="use aggregation: sum (each event's quantity is one transaction's amount)",
                )
            if self.allotment is not None:
                raise TermError(
                    "an allotment cannot apply to a percentage price",
                    fix="remove the allotment, or price the component per unit",
                )
        if self.allotment is not None and self.dimensions:
            raise TermError(
                "an allotment cannot apply to a component priced per dimension value",
                fix="move the included units to a separate component without dimensions",
            )
        return self

    def _check_meter(self, context: Any) -> None:
        meters = (context or {}).get("meters") if isinstance(context, dict) else None
        if meters is not None and self.meter not in meters:
            known = ", ".join(sorted(meters)[:10]) or "none"
            raise TermError(
                "the meter is not in the meter catalogue",
                fix=f"use one of the known meters ({known}) or add the meter first",
                at="meter",
                value=self.meter,
            )

    def _check_matrix(self) -> None:
        if self.price is not None:
            raise TermError(
                "price is set together with dimensions",
                fix="put the prices in matrix cells (and default_price), not in price",
            )
        if not self.matrix:
            raise TermError("dimensions are set but the matrix is empty", fix="add matrix cells with values and price")
        if len(set(self.dimensions)) != len(self.dimensions):
            raise TermError(f"dimensions {self.dimensions} repeat a name", fix="list each dimension once")
        wanted = set(self.dimensions)
        seen: set[tuple[str, ...]] = set()
        for i, cell in enumerate(self.matrix):
            if set(cell.values) != wanted:
                raise TermError(
                    f"the cell's keys {sorted(cell.values)} differ from dimensions {self.dimensions}",
                    fix="give every cell exactly one value for each dimension",
                    at=f"matrix[{i}].values",
                )
            key = tuple(cell.values[d] for d in self.dimensions)
            if key in seen:
                raise TermError(
                    f"the values {cell.values} repeat an earlier cell",
                    fix="list each combination of values once",
                    at=f"matrix[{i}].values",
                )
            seen.add(key)

    def prices(self) -> list[Any]:
        """Every price model the component uses."""
        found = [self.price] if self.price is not None else [c.price for c in self.matrix]
        if self.default_price is not None:
            found.append(self.default_price)
        return found

    @property
    def prices_quantity(self) -> bool:
        """True when every price is on a quantity (not a share of transaction amounts)."""
        return all(p.model in QUANTITY_MODELS for p in self.prices())


Component = Annotated[FlatFee | UsageComponent, Field(discriminator="type")]
"""A contract component, chosen by its ``type`` field."""
