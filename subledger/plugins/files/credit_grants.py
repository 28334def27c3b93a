"""Credit grant files to :class:`~subledger.core.model.CreditGrant`.

A grant is prepaid credit a customer can draw on: money (``amount`` in ``currency``) or
units of one meter (``units`` and ``meter``), never both. Fields (CSV columns or JSON
keys):

``id`` (required), ``customer`` (required), ``contract``, ``currency`` (required for a
money grant, and for the price of a paid unit grant), ``amount`` (major units) or
``units`` + ``meter``, ``price`` (what the customer paid, major units: default the amount
for a paid money grant; required for a paid unit grant, which has no face value in money;
never for a promotional grant), ``category`` (``paid``, the default, or ``promotional``),
``priority`` (whole number, default 0: lower is drawn first), ``effective_at`` (required,
timestamp or date), ``expires_at``, ``breakage`` (``at_expiry`` or ``proportional``; paid
grants only; default: the contract's policy), ``expected_breakage_rate`` (a decimal from 0
to 1, required with ``proportional`` and only with it) and ``metadata`` (accepted for your
own bookkeeping; a credit grant record has no attributes to keep it in).

``cost_basis`` (what the customer paid per unit of credit) is derived: 0 for a
promotional grant, ``price / amount`` (money) or ``price / units`` (units, in major units
per unit) for a paid grant when that ratio is an exact decimal, else left empty (the
grant's ``price_minor`` is the exact figure).
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

from subledger.core.db_types import decimal_text
from subledger.core.model import CreditGrant, payload_hash, record_id
from subledger.core.money import to_major
from subledger.plugins.files import fields
from subledger.plugins.files.fields import RowError
from subledger.plugins.files.mapping import RecordKind, Source

CATEGORIES = ("paid", "promotional")
BREAKAGE = ("at_expiry", "proportional")
KEYS = (
    "id", "customer", "contract", "currency", "amount", "units", "meter", "price", "category", "priority",
    "effective_at", "expires_at", "breakage", "expected_breakage_rate",
)
_EXACT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero])


class CreditGrants(RecordKind):
    stream = "credit_grants"
    record_type = "credit_grant"
    columns = KEYS
    required_columns = ("id", "customer", "effective_at")
    metadata_columns = True
    example = (' such as {"id": "cg_1", "customer": "acme", "currency": "USD", "amount": "1200.00", '
               '"effective_at": "2026-01-01"}')

    def map_document(self, data: dict[str, Any], src: Source) -> CreditGrant:
        fields.check_keys(data, KEYS, metadata=True)
        external_id = fields.required_text(data, "id")
        customer = fields.required_text(data, "customer")
        contract = fields.text(data, "contract", required=False)
        category = fields.choice(data, "category", CATEGORIES, default="paid")
        currency = fields.currency(data, required=False)
        has_amount = not fields.is_absent(data.get("amount"))
        has_units = not fields.is_absent(data.get("units"))
        if has_amount and has_units:
            raise RowError("units", "amount and units are both given",
                           "a grant is money (amount, in currency) or units of one meter (units and meter): "
                           "keep one of them")
        amount: int | None = None
        units: Decimal | None = None
        meter: str | None = None
        if has_amount:
            if currency is None:
                raise RowError("currency", "currency is missing for a money grant",
                               "write the currency of the amount, e.g. USD")
            amount = fields.money(data["amount"], currency, "amount")
            if amount <= 0:
                raise RowError("amount", f"amount {_major(amount, currency)} is not positive",
                               "write the credit granted as a positive amount, e.g. 1200.00")
            if not fields.is_absent(data.get("meter")):
                raise RowError("meter", "meter is given for a money grant",
                               "remove meter (money credit pays for any usage), or write the grant as units "
                               "of that meter instead of an amount")
        elif has_units:
            units = fields.decimal_value(data["units"], "units")
            if units <= 0:
                raise RowError("units", f"units {decimal_text(units)} is not positive",
                               "write the units granted as a positive number, e.g. 100000")
            if fields.is_absent(data.get("meter")):
                raise RowError("meter", "meter is missing for a unit grant",
                               "write the meter key the units are for, e.g. api_calls")
            meter = fields.required_text(data, "meter", max_length=128)
        else:
            raise RowError("amount", "neither amount nor units is given",
                           "write amount (money, with currency) or units and meter (credit in units of a meter)")
        price = _price(data, category, currency, amount, units)
        priority = fields.integer(data, "priority", default=0)
        effective_at = fields.timestamp(data, "effective_at", required=True)
        assert effective_at is not None
        expires_at = fields.timestamp(data, "expires_at")
        if expires_at is not None and expires_at <= effective_at:
            raise RowError("expires_at", f"expires_at {expires_at.isoformat()} is not after effective_at "
                           f"{effective_at.isoformat()}", "a grant expires after it takes effect: correct "
                           "expires_at or effective_at")
        breakage, rate = _breakage(data, category)
        fields.metadata(data)  # checked for shape; a credit grant has no attributes to keep it in
        return CreditGrant(
            id=record_id("cg", src.system, external_id),
            system=src.system,
            external_id=external_id,
            fetched_at=src.fetched_at,
            payload_hash=payload_hash(data),
            customer_external_id=customer,
            contract_external_id=contract,
            category=category,
            currency=currency,
            amount_minor=amount,
            units=units,
            meter=meter,
            cost_basis=_cost_basis(category, currency, price, amount, units),
            price_minor=price,
            priority=priority,
            effective_at=effective_at,
            expires_at=expires_at,
            breakage=breakage,
            expected_breakage_rate=rate,
        )


def _price(data: dict[str, Any], category: str, currency: str | None, amount: int | None,
           units: Decimal | None) -> int | None:
    """What the customer paid, in minor units; None for a promotional grant."""
    given = not fields.is_absent(data.get("price"))
    if category == "promotional":
        if given:
            raise RowError("price", "a promotional grant has no price",
                           "remove price, or set category to paid if the customer paid for the credit")
        return None
    if not given:
        if amount is not None:
            return amount  # a paid money grant bought at face value
        raise RowError("price", f"price is missing for a paid grant of {decimal_text(units or Decimal(0))} units",
                       "write price: what the customer paid for the units, in major units of currency "
                       "(and write currency); or set category to promotional if the credit was free")
    if currency is None:
        raise RowError("currency", "currency is missing for the price",
                       "write the currency the customer paid in, e.g. USD")
    price = fields.money(data["price"], currency, "price")
    if price <= 0:
        raise RowError("price", f"price {_major(price, currency)} is not positive for a paid grant",
                       "write what the customer paid; credit given for nothing is category promotional")
    return price


def _breakage(data: dict[str, Any], category: str) -> tuple[str | None, Decimal | None]:
    breakage = None
    if not fields.is_absent(data.get("breakage")):
        breakage = fields.choice(data, "breakage", BREAKAGE, default="")
    rate = fields.optional_decimal(data, "expected_breakage_rate")
    if breakage is not None and category == "promotional":
        raise RowError("breakage", "breakage is given for a promotional grant",
                       "remove breakage: only paid credit has breakage (promotional credit is not revenue)")
    if rate is not None and breakage != "proportional":
        raise RowError("expected_breakage_rate", "expected_breakage_rate is given but breakage is not proportional",
                       "set breakage to proportional, or remove expected_breakage_rate")
    if breakage == "proportional" and rate is None:
        raise RowError("expected_breakage_rate", "expected_breakage_rate is missing for proportional breakage",
                       "write the share of the credit expected to expire unused, from 0 to 1, e.g. 0.15")
    if rate is not None and not Decimal(0) <= rate <= Decimal(1):
        raise RowError("expected_breakage_rate", f"expected_breakage_rate {decimal_text(rate)} is not between "
                       "0 and 1", "write the expected unused share as a fraction from 0 to 1, e.g. 0.15 for 15%")
    return breakage, rate


def _cost_basis(category: str, currency: str | None, price: int | None, amount: int | None,
                units: Decimal | None) -> Decimal | None:
    """Paid per unit of credit, when that is an exact decimal (else None: price_minor is exact)."""
    if category == "promotional":
        return Decimal(0)
    if price is None or currency is None:
        return None
    try:
        if amount is not None:
            return _EXACT.divide(Decimal(price), Decimal(amount))
        if units is not None:
            return _EXACT.divide(to_major(price, currency), units)
    except (decimal.Inexact, decimal.InvalidOperation, decimal.DivisionByZero):
        return None
    return None


def _major(minor: int, currency: str) -> str:
    return decimal_text(to_major(minor, currency))
