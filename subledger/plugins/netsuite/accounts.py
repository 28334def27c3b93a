"""The account-mapping file: subledger's chart of accounts -> NetSuite accounts and periods.

A YAML or JSON file (``docs/connectors/netsuite.md`` documents it)::

    subsidiary: "1"                 # internal id of the subsidiary journal entries post to
    currencies: {USD: "1", EUR: "4"}  # optional: ISO code -> NetSuite currency internal id
    accounts:                       # our account code (or role) -> NetSuite account internal id
      "1200": "12"
      "2400": "21"
      revenue: "41"                 # a role maps every account of that role not listed by code
    periods: {"2026-01": "201"}     # optional: YYYY-MM -> accounting period internal id

Every journal line's account must map (by account code first, then by role); an entry
that does not balance, or names an account the file does not map, is refused with an
error naming the account and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from subledger.core.config_files import read_mapping_file
from subledger.core.errors import ConfigError


@dataclass(frozen=True)
class AccountMapping:
    """The parsed mapping file."""

    subsidiary: str
    accounts: dict[str, str]
    currencies: dict[str, str] = field(default_factory=dict)
    periods: dict[str, str] = field(default_factory=dict)
    source: str = "the account mapping"

    def account_for(self, account: str, role: str) -> str:
        """The NetSuite account internal id for one journal line."""
        if account in self.accounts:
            return self.accounts[account]
        if role and role in self.accounts:
            return self.accounts[role]
        raise ConfigError(
            f"journal account {account!r} (role {role or 'none'!r}) has no NetSuite account in {self.source}",
            fix=f"add it under accounts: in {self.source}, e.g. \"{account}\": \"<NetSuite account internal id>\" "
            "(Lists > Accounting > Accounts shows the internal id)",
        )


def _str_map(value: Any, where: str, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str | int) and not isinstance(v, bool)
                                               for v in value.values()):
        raise ConfigError(f"{source}: {where} must map names to NetSuite internal ids",
                          fix=f"write {where} as a mapping, e.g. {where}: {{\"4000\": \"41\"}}")
    return {str(k): str(v) for k, v in value.items()}


def parse_mapping(doc: Any, source: str = "the account mapping") -> AccountMapping:
    """Validate a mapping document."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source} must be a mapping with subsidiary and accounts",
                          fix="see docs/connectors/netsuite.md#the-account-mapping-file")
    unknown = set(doc) - {"subsidiary", "accounts", "currencies", "periods"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}",
                          fix="use only subsidiary, accounts, currencies and periods")
    if not doc.get("subsidiary"):
        raise ConfigError(f"{source}: subsidiary is missing",
                          fix="add subsidiary: \"<internal id>\" (Setup > Company > Subsidiaries)")
    accounts = _str_map(doc.get("accounts"), "accounts", source)
    if not accounts:
        raise ConfigError(f"{source}: accounts is empty", fix="map each account code or role to a NetSuite account")
    periods = _str_map(doc.get("periods"), "periods", source)
    for key in periods:
        if len(key) != 7 or key[4] != "-":
            raise ConfigError(f"{source}: period {key!r} is not YYYY-MM", fix="write periods as \"2026-01\": \"201\"")
    return AccountMapping(str(doc["subsidiary"]), accounts, _str_map(doc.get("currencies"), "currencies", source),
                          periods, source)


def load_mapping(path: Path) -> AccountMapping:
    """Read and validate the mapping file at ``path``."""
    doc = read_mapping_file(
        path, what="account mapping file",
        missing_fix="create it (see docs/connectors/netsuite.md) or fix account_mapping in the config",
        shape_fix="write the mapping as keys: subsidiary, accounts, currencies, periods (docs/connectors/netsuite.md)",
    )
    return parse_mapping(doc, str(path))
