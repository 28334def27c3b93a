"""Charges: the groups in which expected and invoiced amounts are compared.

A rated line and an invoice line can be compared only when both say what they are for.
Billing systems describe the same thing differently (a Stripe line names a price, a
contract names a component), so amounts are compared per *charge*:

* ``usage:<meter>`` — usage of one meter, however many components price it;
* ``flat_fee`` — recurring and one-off fees;
* ``minimum_true_up`` — minimum-commitment true-ups;
* ``adjustments`` — discounts, caps (maximum commitments) and credits applied, which
  billing systems split and merge in their own ways.

Within a charge a line can also name its *term*: the contract's component, commitment,
discount or credit grant id. :func:`term_charge` maps a term id of a contract to its
charge; :func:`kind_charge` places a line that names no term by its kind and meter.
"""

from __future__ import annotations

from subledger.core.rating.lines import CREDIT, DISCOUNT, FLAT_FEE, MAXIMUM_CAP, MINIMUM_TRUE_UP, USAGE, RatedLine
from subledger.core.rating.plan import RatingPlan

FLAT_FEES = "flat_fee"
TRUE_UPS = "minimum_true_up"
ADJUSTMENTS = "adjustments"
USAGE_PREFIX = "usage:"
CREDIT_PURCHASE = "credit_purchase"  # a line that sells prepaid credit: placed on its grant, never compared

_RATED = {FLAT_FEE: FLAT_FEES, MINIMUM_TRUE_UP: TRUE_UPS, DISCOUNT: ADJUSTMENTS, CREDIT: ADJUSTMENTS,
          MAXIMUM_CAP: ADJUSTMENTS}
# Invoice line kinds (the canonical vocabulary, plus the rating engine's own names).
_INVOICED = {
    "recurring": FLAT_FEES,
    "flat_fee": FLAT_FEES,
    "true_up": TRUE_UPS,
    "minimum_true_up": TRUE_UPS,
    "discount": ADJUSTMENTS,
    "credit": ADJUSTMENTS,
    "maximum_cap": ADJUSTMENTS,
}


def usage_charge(meter: str) -> str:
    """The charge of a meter's usage: ``usage:api_calls``."""
    return USAGE_PREFIX + meter


def meter_of(charge: str) -> str | None:
    """The meter of a usage charge, else None."""
    return charge.removeprefix(USAGE_PREFIX) if charge.startswith(USAGE_PREFIX) else None


def rated_charge(line: RatedLine, plan: RatingPlan) -> str:
    """The charge a rated line belongs to."""
    if line.kind == USAGE:
        meter = next((u.meter for u in plan.usages if u.id == line.component), line.component)
        return usage_charge(meter)
    return _RATED.get(line.kind, ADJUSTMENTS)


def term_charge(plan: RatingPlan, term: str) -> str | None:
    """The charge of one of the contract's terms (component, commitment, discount or grant id)."""
    for u in plan.usages:
        if u.id == term:
            return usage_charge(u.meter)
    if any(f.id == term for f in plan.fees):
        return FLAT_FEES
    for c in plan.commitments:
        if c.id == term:
            return TRUE_UPS if c.minimum else ADJUSTMENTS
    if any(d.id == term for d in plan.discounts) or any(g.id == term for g in plan.grants):
        return ADJUSTMENTS
    return None


def kind_charge(kind: str | None, meter: str | None) -> str | None:
    """The charge of an invoice line that names no term: by its kind (and a usage line's meter)."""
    if kind == "usage":
        return usage_charge(meter) if meter else None
    return _INVOICED.get(kind or "")
