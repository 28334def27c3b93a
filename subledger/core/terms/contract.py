"""The contract terms document, and the contract file that wraps it with a header.

:class:`ContractTerms` is everything that prices a contract; it is what
``Contract.terms`` stores. :class:`ContractDocument` is a whole contract file: a header
(id, customer, name, status) plus the terms, all at the top level.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError
from subledger.core.money import Rounding, exponent, normalize_currency
from subledger.core.terms.base import TermsModel
from subledger.core.terms.billing import BillingCycle
from subledger.core.terms.bounds import MAX_MINOR, money_fix, money_problem
from subledger.core.terms.commitments import Commitment
from subledger.core.terms.components import Component, FlatFee, UsageComponent
from subledger.core.terms.credits import CreditGrantTerms
from subledger.core.terms.decimals import TermDate, TermError
from subledger.core.terms.discounts import Discount

TERMS_VERSION = 1


class ContractTerms(TermsModel):
    """What a customer agreed to pay: currency, term, billing cycle and priced components.

    ``end_date`` is the last day of service, inclusive: a one-year contract from
    2026-01-01 ends on 2026-12-31. Amounts are major units of ``currency``; each rated
    line is rounded once to minor units with ``rounding``.
    """

    version: Literal[1] = Field(default=TERMS_VERSION, description="terms format version")
    currency: str = Field(description="ISO 4217 code, e.g. USD")
    start_date: TermDate
    end_date: TermDate | None = Field(default=None, description="last day of service, inclusive; null if open")
    rounding: Rounding = Rounding.HALF_UP
    billing: BillingCycle = Field(default_factory=BillingCycle)
    components: list[Component] = Field(min_length=1)
    commitments: list[Commitment] = Field(default_factory=list)
    credits: list[CreditGrantTerms] = Field(default_factory=list)
    discounts: list[Discount] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict, description="free-form labels, e.g. CRM ids")
    revenue_recognition: dict[str, str | int | Decimal | bool | None] | None = Field(
        default=None,
        description="revenue recognition policy (amortization, commitment and breakage policies); "
        "validated by subledger.core.revrec, see docs/revrec/policies.md",
    )

    @field_validator("currency", mode="before")
    @classmethod
    def _iso_currency(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise TermError(f"{value!r} is not a currency code", fix="write a code such as USD, EUR or JPY")
        try:
            code = normalize_currency(value)
            exponent(code)
        except ConfigError as exc:
            raise TermError(exc.message, fix=exc.fix or "use an ISO 4217 code") from None
        return code

    @model_validator(mode="after")
    def _consistent(self) -> ContractTerms:
        if self.end_date is not None and self.end_date < self.start_date:
            raise TermError(
                f"end_date is before start_date {self.start_date}",
                at="end_date",
                value=self.end_date.isoformat(),
                fix="end_date is the last day of service (inclusive); make it on or after start_date",
            )
        for i, commitment in enumerate(self.commitments):
            if commitment.per == "term" and self.end_date is None:
                raise TermError(
                    "a per-term commitment needs a term with an end_date",
                    fix="add end_date, or make the commitment per: period",
                    at=f"commitments[{i}].per",
                    value="term",
                )
        self._check_ids()
        self._check_references()
        self._check_money_places()
        return self

    def _check_ids(self) -> None:
        seen: dict[str, str] = {}
        groups = {
            "components": [c.id for c in self.components],
            "commitments": [c.id for c in self.commitments],
            "credits": [c.id for c in self.credits],
            "discounts": [d.id for d in self.discounts],
        }
        for group, ids in groups.items():
            for i, ident in enumerate(ids):
                where = f"{group}[{i}].id"
                if ident in seen:
                    raise TermError(
                        f"the id is already used by {seen[ident]}",
                        fix="give every component, commitment, credit and discount its own id",
                        at=where,
                        value=ident,
                    )
                seen[ident] = where

    def _check_references(self) -> None:
        ids = {c.id for c in self.components}
        known = ", ".join(sorted(ids))
        refs: list[tuple[str, str]] = []
        for i, commitment in enumerate(self.commitments):
            refs += [(f"commitments[{i}].applies_to", ref) for ref in commitment.applies_to]
        for i, grant in enumerate(self.credits):
            refs += [(f"credits[{i}].applies_to", ref) for ref in grant.applies_to]
        for i, discount in enumerate(self.discounts):
            if discount.applies_to is not None:
                refs.append((f"discounts[{i}].applies_to", discount.applies_to))
        for where, ref in refs:
            if ref not in ids:
                raise TermError("no component has this id", fix=f"use one of: {known}", at=where, value=ref)
        quantity_meters = {
            c.meter for c in self.components if isinstance(c, UsageComponent) and c.prices_quantity
        }
        for i, grant in enumerate(self.credits):
            if grant.meter is not None and grant.meter not in quantity_meters:
                raise TermError(
                    "no usage component priced on quantity uses this meter",
                    at=f"credits[{i}].meter",
                    value=grant.meter,
                    fix="use the meter of a usage component priced on quantity: "
                    + (", ".join(sorted(quantity_meters)) or "none"),
                )

    def _check_money_places(self) -> None:
        places = exponent(self.currency)
        amounts: list[tuple[str, Decimal | None]] = []
        amounts += [(f"commitments[{i}].amount", c.amount) for i, c in enumerate(self.commitments)]
        amounts += [(f"discounts[{i}].amount", d.amount) for i, d in enumerate(self.discounts)]
        for i, grant in enumerate(self.credits):
            amounts.append((f"credits[{i}].amount", grant.amount))
            amounts += [(f"credits[{i}].top_ups[{j}].amount", t.amount) for j, t in enumerate(grant.top_ups)]
        prices: list[tuple[str, Decimal | None]] = [
            (f"components[{i}].amount", c.amount) for i, c in enumerate(self.components) if isinstance(c, FlatFee)
        ]
        limit = Decimal(MAX_MINOR).scaleb(-places)
        for where, value in amounts + prices:
            if value is not None and value >= limit:
                raise TermError(
                    f"the amount {money_problem(MAX_MINOR)}",
                    at=where,
                    value=decimal_text(value),
                    fix=money_fix(self.currency, places),
                )
        for where, value in amounts:
            if value is not None and value != value.quantize(Decimal(1).scaleb(-places), rounding="ROUND_DOWN"):
                raise TermError(
                    f"more than {places} decimal places for {self.currency}",
                    at=where,
                    value=decimal_text(value),
                    fix=f"round it to {places} places (an amount of money, unlike a unit price, "
                    "must fit the currency's minor unit)",
                )

    @property
    def service_end(self) -> date | None:
        """The first day after the term (``end_date`` + 1), or None for an open term."""
        return None if self.end_date is None else self.end_date + timedelta(days=1)

    def component(self, component_id: str) -> FlatFee | UsageComponent:
        """The component with ``component_id``.

        Raises:
            KeyError: no such component.
        """
        for component in self.components:
            if component.id == component_id:
                return component
        raise KeyError(component_id)

    @property
    def meters(self) -> list[str]:
        """The meters the usage components price, in order of first use."""
        return list(dict.fromkeys(c.meter for c in self.components if isinstance(c, UsageComponent)))


HEADER_FIELDS = ("id", "customer", "name", "status")


class _ContractHeader(TermsModel):
    id: str = Field(
        min_length=1, max_length=255, pattern=r"^\S(.*\S)?$",
        description="the contract's id in its source (unique per source)",
    )
    customer: str = Field(min_length=1, max_length=255, description="the customer's external id")
    name: str = ""
    status: Literal["draft", "active", "ended", "cancelled"] = "active"


class ContractDocument(ContractTerms, _ContractHeader):
    """A whole contract file: the header (id, customer, name, status) and the terms."""

    def terms(self) -> ContractTerms:
        """The terms without the header, as ``Contract.terms`` stores them."""
        values = {name: getattr(self, name) for name in ContractTerms.model_fields}
        return ContractTerms.model_construct(_fields_set=self.model_fields_set - set(HEADER_FIELDS), **values)
