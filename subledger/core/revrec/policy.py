"""Per-contract revenue recognition policy, read from the contract's terms document.

The policy lives in the terms under ``revenue_recognition`` (or, for terms formats that
do not allow extra sections, as ``metadata`` labels prefixed ``revrec.``)::

    revenue_recognition:
      amortization: by_day            # by_day | by_second | monthly_even | monthly_prorated
      breakage: at_expiry             # at_expiry (remote) | proportional
      expected_breakage_rate: "0.15"  # proportional breakage only
      commitment: shortfall_at_end    # ratable_minimum | scaled_consumption | shortfall_at_end
      expected_usage: "8000.00"       # scaled_consumption only, money over the term
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from subledger.core.errors import ConfigError
from subledger.core.money import Rounding
from subledger.core.revrec.amortization import AmortizationPolicy
from subledger.core.revrec.commitments import CommitmentPolicy
from subledger.core.revrec.credits import BreakagePolicy

_KEYS = ("amortization", "breakage", "expected_breakage_rate", "commitment", "expected_usage")


@dataclass(frozen=True)
class RevrecPolicy:
    """How one contract's obligations are recognized (defaults: by day, remote breakage)."""

    amortization: AmortizationPolicy = AmortizationPolicy.BY_DAY
    breakage: BreakagePolicy = BreakagePolicy.AT_EXPIRY
    expected_breakage_rate: Fraction | None = None
    commitment: CommitmentPolicy = CommitmentPolicy.SHORTFALL_AT_END
    expected_usage: Decimal | None = None
    rounding: Rounding = Rounding.HALF_UP

    @classmethod
    def from_terms(cls, terms: Mapping[str, Any] | None, *, source: str = "contract terms") -> RevrecPolicy:
        """Read the policy of a ``Contract.terms`` document; absent keys keep the defaults.

        Raises:
            ConfigError: a key or value is not understood (naming ``source`` and the key).
        """
        terms = terms or {}
        raw: dict[str, Any] = {}
        for label, value in (terms.get("metadata") or {}).items():
            if str(label).startswith("revrec."):
                raw[str(label).removeprefix("revrec.")] = value
        section = terms.get("revenue_recognition") or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{source}: revenue_recognition must be a mapping", fix="see docs/revrec/policies.md")
        raw.update(section)
        unknown = set(raw) - set(_KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: unknown revenue_recognition key(s) {sorted(unknown)}", fix=f"use: {', '.join(_KEYS)}"
            )
        try:
            rounding = Rounding(terms.get("rounding") or Rounding.HALF_UP)
        except ValueError:
            rounding = Rounding.HALF_UP
        try:
            return cls(
                amortization=AmortizationPolicy.parse(raw.get("amortization")),
                breakage=BreakagePolicy.parse(raw.get("breakage")),
                expected_breakage_rate=_fraction(raw.get("expected_breakage_rate"), "expected_breakage_rate"),
                commitment=CommitmentPolicy.parse(raw.get("commitment")),
                expected_usage=_decimal(raw.get("expected_usage"), "expected_usage"),
                rounding=rounding,
            )
        except ConfigError as exc:
            raise ConfigError(f"{source}: revenue_recognition: {exc.message}", fix=exc.fix) from None


def _decimal(value: Any, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, float):
        raise ConfigError(f"{name} {value!r} is a float", fix=f'quote it as a decimal string, e.g. {name}: "0.15"')
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{name} {value!r} is not a number", fix=f'write {name} as a decimal, e.g. "0.15"') from None


def _fraction(value: Any, name: str) -> Fraction | None:
    dec = _decimal(value, name)
    return None if dec is None else Fraction(dec)
