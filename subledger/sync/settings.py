"""Sync settings: roles, sources of truth, identity matching, approvals and thresholds.

Read from ``$SUBLEDGER_CONFIG``, else ``subledger.yaml`` in the data directory; every
setting has a default, so no file is needed to start. See ``docs/sync.md``.
"""

from __future__ import annotations

import os
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from subledger.core.config_files import load_settings_file
from subledger.core.money import exponent, parse_major
from subledger.core.paths import data_dir

Role = Literal["crm", "billing", "metering", "erp"]

# What each connector is, unless the settings say otherwise.
DEFAULT_ROLES: dict[str, list[Role]] = {
    "files": ["crm", "billing", "metering"],
    "memory": ["crm", "billing", "metering"],
    "stripe": ["billing", "metering"],
    "orb": ["billing", "metering"],
    "metronome": ["billing", "metering"],
    "chargebee": ["billing"],
    "salesforce": ["crm"],
    "hubspot": ["crm"],
    "netsuite": ["erp"],
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentitySettings(_Strict):
    """How records of different systems are tied to one canonical customer."""

    master: str | list[str] | None = Field(
        default=None,
        description="connection whose customer ids are canonical (default: the first CRM connection); a list "
        "when several CRMs each own part of the customers",
    )
    link_field: dict[str, str] = Field(
        default_factory=dict,
        description="per connection, the metadata/external-id field holding the canonical id",
    )
    match_on: list[Literal["tax_id", "email_domain", "name"]] = ["tax_id", "email_domain", "name"]


class Ownership(_Strict):
    """The source of truth per kind of data (a role)."""

    contract_terms: Role = "crm"
    usage: Role = "metering"
    invoices: Role = "billing"
    ledger: Role = "erp"


class AutoApproval(_Strict):
    """Actions of ``rule`` up to ``max_amount`` apply without review.

    ``max_amount`` is major units per currency (``{USD: "500.00", JPY: "50000"}``): an
    action in a currency it does not list waits for a person. A bare amount (``"500.00"``)
    applies to every currency alike; prefer the mapping, since 500 is not the same money
    in every currency. No ``max_amount`` approves any amount.
    """

    rule: str
    max_amount: Decimal | dict[str, Decimal] | None = None

    @field_validator("max_amount")
    @classmethod
    def _exact_per_currency(cls, value: Decimal | dict[str, Decimal] | None) -> Decimal | dict[str, Decimal] | None:
        if isinstance(value, dict):
            for currency, amount in value.items():
                if amount < 0:
                    raise ValueError(f"{currency}: {amount} is negative; use 0 or more")
                parse_major(amount, currency)  # an unknown currency, or too many decimals for it, says so
        return value

    def limit_minor(self, currency: str) -> int | None:
        """The most an action in ``currency`` may amount to (minor units); None: no limit."""
        if self.max_amount is None:
            return None
        if isinstance(self.max_amount, Decimal):
            return parse_major(self.max_amount.quantize(Decimal(1).scaleb(-exponent(currency)), ROUND_DOWN),
                               currency)
        for name, amount in self.max_amount.items():
            if name.upper() == currency.upper():
                return parse_major(amount, currency)
        return -1  # not listed: a person approves


class SyncSettings(_Strict):
    """Everything the sync engine can be told."""

    roles: dict[str, list[Role]] = Field(default_factory=dict)
    ownership: Ownership = Ownership()
    identity: IdentitySettings = IdentitySettings()
    auto_approve: list[AutoApproval] = Field(default_factory=list)
    thresholds: list[Decimal] = [Decimal("0.8"), Decimal("1")]
    usage_drift_tolerance: Decimal = Decimal("0.01")
    amount_tolerance: dict[str, Decimal] = Field(
        default_factory=dict,
        description="per currency, in major units: drifts at or below this are not findings, e.g. {USD: '0.50'}",
    )
    amount_tolerance_minor: int = Field(
        default=0, description="the tolerance in minor units for currencies amount_tolerance does not list"
    )
    billing_connection: str | None = Field(
        default=None, description="where unbilled-usage invoices are written (default: first billing connection)"
    )

    @field_validator("amount_tolerance")
    @classmethod
    def _exact_per_currency(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for currency, amount in value.items():
            if amount < 0:
                raise ValueError(f"{currency}: the tolerance {amount} is negative; use 0 or more")
            parse_major(amount, currency)  # an unknown currency, or too many decimals for it, says so
        return value

    def tolerance_minor(self, currency: str) -> int:
        """The amount tolerance for ``currency``, in its minor units."""
        code = currency.upper()
        for name, value in self.amount_tolerance.items():
            if name.upper() == code:
                return parse_major(value, code)
        return self.amount_tolerance_minor

    def roles_of(self, connection: str, plugin: str) -> list[Role]:
        """The roles a connection plays."""
        return self.roles.get(connection) or DEFAULT_ROLES.get(plugin, [])


def settings_path() -> Path:
    """Where settings are read from."""
    env = os.environ.get("SUBLEDGER_CONFIG")
    return Path(env).expanduser() if env else data_dir() / "subledger.yaml"


def load_settings(path: Path | None = None) -> SyncSettings:
    """Load settings, naming the file, line, key and fix of any mistake (an unknown key included).

    Read through the one settings loader (:func:`subledger.core.config_files.load_settings_file`):
    UTF-8, strict YAML or JSON (no key twice, no alias bombs), every model strict.
    """
    path = path or settings_path()
    if not path.exists():
        return SyncSettings()
    return load_settings_file(path, SyncSettings, what="settings file", docs="docs/sync.md#settings",
                              missing_fix="create it, or unset SUBLEDGER_CONFIG",
                              shape_fix="write settings as keys, e.g. roles: {...} (see docs/sync.md)")
