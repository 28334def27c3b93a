"""The chart-of-accounts mapping: which GL account each role of the journal posts to.

The journal speaks in roles (accounts receivable, contract liability, revenue of a
product, ...); a mapping file names the accounts of your general ledger. YAML or JSON::

    accounts:
      accounts_receivable: "1200 Accounts Receivable"
      contract_liability: "2400 Deferred Revenue"
    revenue:
      default: "4000 Revenue"
      by_product:
        platform_fee: "4010 Platform Fees"
        api_calls: "4020 Usage Revenue"

Roles left out keep their defaults (:data:`DEFAULT_ACCOUNTS`); see
``docs/revrec/chart-of-accounts.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from subledger.core.config_files import check_keys, decode_text, parse_json_text, parse_yaml_text
from subledger.core.errors import ConfigError
from subledger.core.revrec.obligation import LineKind


class AccountRole(StrEnum):
    """What an account is for in the revenue subledger."""

    ACCOUNTS_RECEIVABLE = "accounts_receivable"
    UNBILLED_RECEIVABLE = "unbilled_receivable"  # contract asset
    CONTRACT_LIABILITY = "contract_liability"  # deferred revenue
    REVENUE = "revenue"
    BREAKAGE_REVENUE = "breakage_revenue"
    REFUNDS_CONTRA = "refunds_contra"
    DISCOUNTS_CONTRA = "discounts_contra"
    PROMOTIONAL_CONTRA = "promotional_contra"
    TAX_LIABILITY = "tax_liability"
    CASH = "cash"
    CUSTOMER_BALANCE = "customer_balance"


DEFAULT_ACCOUNTS: dict[AccountRole, str] = {
    AccountRole.CASH: "1000 Cash",
    AccountRole.ACCOUNTS_RECEIVABLE: "1200 Accounts Receivable",
    AccountRole.UNBILLED_RECEIVABLE: "1250 Unbilled Receivable",
    AccountRole.TAX_LIABILITY: "2200 Sales Tax Payable",
    AccountRole.CUSTOMER_BALANCE: "2300 Customer Credit Balance",
    AccountRole.CONTRACT_LIABILITY: "2400 Deferred Revenue",
    AccountRole.REVENUE: "4000 Revenue",
    AccountRole.BREAKAGE_REVENUE: "4800 Breakage Revenue",
    AccountRole.REFUNDS_CONTRA: "4900 Refunds",
    AccountRole.DISCOUNTS_CONTRA: "4910 Discounts",
    AccountRole.PROMOTIONAL_CONTRA: "4920 Promotional Credits",
}

_DOCS = "docs/revrec/chart-of-accounts.md"

KIND_ROLES: dict[LineKind, AccountRole] = {
    LineKind.REVENUE: AccountRole.REVENUE,
    LineKind.BREAKAGE: AccountRole.BREAKAGE_REVENUE,
    LineKind.REFUND: AccountRole.REFUNDS_CONTRA,
    LineKind.DISCOUNT: AccountRole.DISCOUNTS_CONTRA,
    LineKind.PROMOTIONAL: AccountRole.PROMOTIONAL_CONTRA,
}


@dataclass(frozen=True)
class ChartOfAccounts:
    """Roles to GL accounts, with revenue accounts per product or component."""

    accounts: Mapping[AccountRole, str] = field(default_factory=lambda: dict(DEFAULT_ACCOUNTS))
    revenue_by_product: Mapping[str, str] = field(default_factory=dict)

    def account(self, role: AccountRole, product: str | None = None) -> str:
        """The account for ``role``; revenue uses the product's account when mapped."""
        if role is AccountRole.REVENUE and product and product in self.revenue_by_product:
            return self.revenue_by_product[product]
        return self.accounts.get(role) or DEFAULT_ACCOUNTS[role]

    def for_kind(self, kind: LineKind, product: str | None = None) -> tuple[AccountRole, str]:
        role = KIND_ROLES[kind]
        return role, self.account(role, product)

    @classmethod
    def from_mapping(cls, doc: Any, *, source: str = "chart of accounts") -> ChartOfAccounts:
        """Build from a parsed mapping document, naming ``source`` in every error."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise ConfigError(
                f"{source}: the top level must be a mapping with 'accounts' and 'revenue'",
                fix="start the file with 'accounts:' (see docs/revrec/chart-of-accounts.md)",
            )
        check_keys(doc, ("accounts", "revenue"), where="", source=source, docs=_DOCS)
        accounts = dict(DEFAULT_ACCOUNTS)
        listed = doc.get("accounts") or {}
        if not isinstance(listed, dict):
            raise ConfigError(f"{source}: 'accounts' must map account roles to accounts",
                              fix="write accounts: {accounts_receivable: '1200 Accounts Receivable', ...}")
        for key, value in listed.items():
            try:
                role = AccountRole(str(key))
            except ValueError:
                names = ", ".join(r.value for r in AccountRole)
                raise ConfigError(
                    f"{source}: accounts.{key} is not an account role", fix=f"use one of: {names}"
                ) from None
            accounts[role] = _account_name(value, f"{source}: accounts.{key}")
        revenue = doc.get("revenue") or {}
        if not isinstance(revenue, dict):
            raise ConfigError(
                f"{source}: 'revenue' must be a mapping with 'default' and 'by_product'",
                fix="write revenue: {default: '4000 Revenue', by_product: {api_calls: '4020 Usage'}}",
            )
        check_keys(revenue, ("default", "by_product"), where="revenue", source=source, docs=_DOCS)
        if "default" in revenue:
            accounts[AccountRole.REVENUE] = _account_name(revenue["default"], f"{source}: revenue.default")
        by_product = revenue.get("by_product") or {}
        if not isinstance(by_product, dict):
            raise ConfigError(
                f"{source}: revenue.by_product must map product names to accounts",
                fix="write each product on its own line: 'api_calls: \"4020 Usage Revenue\"'",
            )
        products = {
            str(k): _account_name(v, f"{source}: revenue.by_product.{k}") for k, v in by_product.items()
        }
        return cls(accounts=accounts, revenue_by_product=products)

    @classmethod
    def load(cls, path: str | Path) -> ChartOfAccounts:
        """Read a YAML or JSON mapping file.

        Raises:
            ConfigError: the file is missing, unparsable, or maps an unknown role.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read chart of accounts {path}: {exc.strerror}", fix="check the path and permissions"
            ) from None
        # The one settings loader's strict readers: UTF-8, no key twice, no alias bombs.
        text = decode_text(data, source=str(path))
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        try:
            if kind == "JSON":
                doc = parse_json_text(text, source=str(path)) if text.strip() else None
            else:
                doc = parse_yaml_text(text, source=str(path))
        except ConfigError as exc:
            # "<path>:LINE:COL: not valid JSON (why)" -> "<path> line LINE: not valid JSON (why)"
            found = re.match(r":(\d+):\d+: not valid \w+ (.*)", exc.message.removeprefix(str(path)))
            where, why = (f" line {found[1]}", found[2]) if found else (
                "", f"({exc.message.removeprefix(f'{path}: ')})")
            raise ConfigError(f"{path}{where}: not valid {kind} {why}",
                              fix=f"{exc.fix} (compare with {_DOCS})") from None
        return cls.from_mapping(doc, source=str(path))

    def to_mapping(self) -> dict[str, Any]:
        """The mapping document this chart would be loaded from."""
        accounts = {role.value: name for role, name in self.accounts.items() if role is not AccountRole.REVENUE}
        return {
            "accounts": dict(sorted(accounts.items())),
            "revenue": {"default": self.account(AccountRole.REVENUE), "by_product": dict(self.revenue_by_product)},
        }


def _account_name(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ConfigError(
            f"{where}: {value!r} is not an account name", fix="write the account as text, e.g. '4000 Revenue'"
        )
    return str(value).strip()
