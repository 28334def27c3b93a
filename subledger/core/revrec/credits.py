"""Prepaid credits: a contract liability at purchase, released as credits are redeemed.

Paid credits are consideration received for future goods or services, so the
purchase is deferred and each redemption is recognized as revenue when it happens.
What is never redeemed (breakage) is recognized under one of two policies, set per
contract:

* ``at_expiry`` (remote): the unredeemed balance is recognized when the credits expire
  and redemption becomes remote;
* ``proportional``: an expected breakage rate is recognized in proportion to the
  redemptions, ``expected breakage x redeemed / expected redemptions``, capped so the
  liability never goes negative; at expiry the estimate is trued up to the actual
  unredeemed balance (a negative catch-up if redemptions beat the estimate).

Promotional credits carry no consideration: consuming them reduces the revenue of what
they pay for, a contra-revenue line (:func:`promotional_consumption`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction

from subledger.core.errors import ConfigError
from subledger.core.revrec.calendar import as_utc
from subledger.core.revrec.curves import Computed, Incurred

_MICRO = timedelta(microseconds=1)


class BreakagePolicy(StrEnum):
    """When unredeemed prepaid credits become revenue."""

    AT_EXPIRY = "at_expiry"
    PROPORTIONAL = "proportional"

    @classmethod
    def parse(cls, value: str | BreakagePolicy | None) -> BreakagePolicy:
        if value in (None, ""):
            return cls.AT_EXPIRY
        text = str(value).strip().lower()
        if text == "remote":
            return cls.AT_EXPIRY
        try:
            return cls(text)
        except ValueError:
            raise ConfigError(
                f"breakage policy {value!r} is not known", fix="use at_expiry (alias remote) or proportional"
            ) from None


def redemptions_curve(
    purchase_minor: int, redemptions: Iterable[tuple[date | datetime, int]], expires_at: datetime | None
) -> Incurred:
    """Redemptions as revenue, refusing any that would overdraw the balance or come late.

    Raises:
        ConfigError: a redemption after expiry, or more redeemed than was bought.
    """
    curve = Incurred.of(redemptions)
    running = Fraction(0)
    for when, amount in curve.steps:
        if expires_at is not None and when >= as_utc(expires_at):
            raise ConfigError(
                f"credit redeemed at {when.isoformat()}, on or after its expiry {expires_at.isoformat()}",
                fix="check the credit ledger: expired credits cannot be drawn down",
            )
        running += amount
        if running > purchase_minor:
            raise ConfigError(
                f"credits redeemed ({running}) exceed the {purchase_minor} bought",
                fix="record the top-up grant, or correct the draw-downs; a balance is never negative",
            )
    return curve


def breakage_curve(
    purchase_minor: int,
    redeemed: Incurred,
    expires_at: datetime | None,
    policy: BreakagePolicy,
    expected_breakage_rate: Fraction | None = None,
) -> Computed:
    """Breakage recognized to date under ``policy`` (see the module docstring)."""
    purchase = Fraction(purchase_minor)
    expiry = as_utc(expires_at) if expires_at is not None else None
    if policy is BreakagePolicy.PROPORTIONAL:
        rate = expected_breakage_rate
        if rate is None or not 0 <= rate < 1:
            raise ConfigError(
                f"proportional breakage needs an expected breakage rate in [0, 1), got {rate}",
                fix="set revenue_recognition.expected_breakage_rate in the contract terms, e.g. 0.15",
            )
        expected_breakage = purchase * rate
        expected_redemptions = purchase - expected_breakage

    def fn(at: datetime) -> Fraction:
        if expiry is not None and at > expiry:
            return purchase - redeemed.value(expiry)
        if policy is BreakagePolicy.AT_EXPIRY:
            return Fraction(0)
        red = redeemed.value(at)
        return max(min(expected_breakage * red / expected_redemptions, purchase - red), Fraction(0))

    if expiry is None:
        return Computed(fn, redeemed.begins, redeemed.settles, label=f"breakage {policy}")
    return Computed(fn, min(redeemed.begins, expiry), expiry + _MICRO, label=f"breakage {policy}")


def promotional_consumption(consumptions: Iterable[tuple[date | datetime, int]]) -> Incurred:
    """Promotional credits consumed: negative (contra) revenue when consumed."""
    return Incurred.of((when, -Fraction(amount)) for when, amount in consumptions)
