"""Minimum commitments: three policies that recognize the same total, max(minimum, usage).

With minimum ``M`` over a term, usage charges ``U(t)`` to date (minor units) and the
term's elapsed fraction ``F(t)``:

* ``ratable_minimum`` (a): ``M x F(t) + max(0, U(t) - M)``. The minimum is a stand-ready
  obligation earned over the term; usage above the minimum is recognized once
  cumulative usage passes it.
* ``scaled_consumption`` (b): ``max(min(U(t) x M / E, M), U(t))`` with ``E`` the expected
  usage. Each unit earns its share of the minimum when the customer is expected to
  under-use; what is left is recognized at term end.
* ``shortfall_at_end`` (c): ``U(t)`` during the term; the shortfall ``M - U`` (if any) at
  term end.

At term end every policy has recognized ``max(M, U)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from subledger.core.errors import ConfigError
from subledger.core.revrec.amortization import AmortizationPolicy, ServicePeriod, elapsed_fraction
from subledger.core.revrec.curves import NEVER, Computed, Curve, Incurred

_MICRO = timedelta(microseconds=1)


class CommitmentPolicy(StrEnum):
    """How a minimum commitment is recognized (one per contract)."""

    RATABLE_MINIMUM = "ratable_minimum"
    SCALED_CONSUMPTION = "scaled_consumption"
    SHORTFALL_AT_END = "shortfall_at_end"

    @classmethod
    def parse(cls, value: str | CommitmentPolicy | None) -> CommitmentPolicy:
        if value in (None, ""):
            return cls.SHORTFALL_AT_END
        aliases = {"a": cls.RATABLE_MINIMUM, "b": cls.SCALED_CONSUMPTION, "c": cls.SHORTFALL_AT_END}
        text = str(value).strip().lower()
        if text in aliases:
            return aliases[text]
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ConfigError(
                f"commitment policy {value!r} is not known", fix=f"use one of: {names}"
            ) from None


def commitment_curve(
    minimum_minor: int,
    term: ServicePeriod,
    usage: Iterable[tuple[date | datetime, int]],
    policy: CommitmentPolicy,
    *,
    expected_usage_minor: int | None = None,
    amortization: AmortizationPolicy = AmortizationPolicy.BY_DAY,
) -> Computed:
    """Recognized to date for a commitment and the usage charges it covers.

    ``usage`` is the rated usage charges (minor units) when they occur; charges outside
    the term belong to another commitment and are refused.

    Raises:
        ConfigError: usage outside the term, a negative minimum, or policy (b) without a
            positive expected usage.
    """
    if minimum_minor < 0:
        raise ConfigError(f"minimum commitment {minimum_minor} is negative", fix="use a minimum of 0 or more")
    used = Incurred.of(usage)
    for when, _ in used.steps:
        if not term.start <= when < term.end:
            raise ConfigError(
                f"usage charge at {when.isoformat()} is outside the commitment term "
                f"{term.start.date()} to {term.end.date()}",
                fix="split usage by term: each commitment covers only the usage of its own term",
            )
    return commitment_on_spend(
        minimum_minor, term, used, policy, expected_usage_minor=expected_usage_minor, amortization=amortization
    )


def commitment_on_spend(
    minimum_minor: int,
    term: ServicePeriod,
    spend: Curve,
    policy: CommitmentPolicy,
    *,
    expected_usage_minor: int | None = None,
    amortization: AmortizationPolicy = AmortizationPolicy.BY_DAY,
) -> Computed:
    """Like :func:`commitment_curve`, with the covered spend given as any curve ``U(t)``."""
    m = Fraction(minimum_minor)
    if policy is CommitmentPolicy.SCALED_CONSUMPTION:
        if not expected_usage_minor or expected_usage_minor <= 0:
            raise ConfigError(
                "the scaled_consumption policy needs the expected usage over the term",
                fix="set revenue_recognition.expected_usage in the contract terms (money, e.g. 8000.00)",
            )
        scale = m / expected_usage_minor

    def fn(at: datetime) -> Fraction:
        u = spend.value(at)
        if at >= term.end:
            return max(m, u)
        if policy is CommitmentPolicy.RATABLE_MINIMUM:
            return m * elapsed_fraction(term, amortization, at) + max(Fraction(0), u - m)
        if policy is CommitmentPolicy.SCALED_CONSUMPTION:
            return max(min(u * scale, m), u)
        return u

    settles = term.end + _MICRO if spend.settles >= NEVER else max(term.end, spend.settles) + _MICRO
    return Computed(fn, min(term.start, spend.begins), settles, label=f"commitment {policy}")
