"""What a reconciliation rule is: a class that turns the store into drifts.

A rule looks at the store through a :class:`RuleContext` and yields :class:`Drift`s. Each
drift has a ``key`` that identifies it within the rule (customer, contract, component,
period...), the amount at stake, evidence and, optionally, the :class:`ActionDraft`s that
would fix it. The engine turns drifts into findings (opening, updating and resolving them)
and action drafts into planned actions.

Register rules from a plugin with the ``register_rules(register)`` hook.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

from sqlmodel import Session

from subledger.sync.contracts import ContractReadModel, Roles
from subledger.sync.settings import SyncSettings


@dataclass(frozen=True)
class ActionDraft:
    """A write that would fix a drift. The engine derives its idempotency key from it."""

    kind: str
    connection: str
    payload: dict[str, Any]
    summary: str
    amount_minor: int = 0
    currency: str | None = None
    target_external_id: str | None = None
    base_version: dict[str, Any] | None = None


@dataclass
class Drift:
    """One difference a rule found."""

    key: str
    summary: str
    amount_minor: int = 0
    currency: str | None = None
    customer: str | None = None
    contract_id: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    actions: list[ActionDraft] = field(default_factory=list)
    factual: bool = False  # a fact whatever its amount (terms differ): never dropped by the amount tolerance
    keeps: list[str] = field(default_factory=list)  # ids of approved actions the drift still counts on


@dataclass
class ConnectionInfo:
    """A configured connection, the roles it plays, and whether it was ever read completely."""

    name: str
    plugin: str
    roles: list[str]
    read_completely: bool = True


@dataclass
class RuleContext:
    """What a rule may look at."""

    session: Session
    settings: SyncSettings
    connections: list[ConnectionInfo]
    now: datetime
    identity_issues: list[Any] = field(default_factory=list)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def customer_map(self) -> dict[tuple[str, str], str]:
        """(system, external id) -> canonical customer id. Read once per reconciliation:
        identities are resolved before the rules run and no rule changes them."""
        if "customer_map" not in self._memo:
            from subledger.sync.identity import customer_map

            self._memo["customer_map"] = customer_map(self.session)
        return self._memo["customer_map"]

    def system_ids(self) -> dict[str, dict[str, list[str]]]:
        """canonical customer -> system -> that system's customer ids (read once, as above)."""
        return self.read_model().ids

    def read_model(self) -> ContractReadModel:
        """The contract read model as of ``now``, shared by every rule of the reconciliation:
        each contract is rated and its invoice lines placed once (pulls are over before
        the rules run, and no rule changes contracts, usage or invoices)."""
        if "read_model" not in self._memo:
            roles = Roles.of(self.connections, self.settings.ownership)
            self._memo["read_model"] = ContractReadModel(self.session, roles, as_of=self.now)
        return self._memo["read_model"]

    def with_role(self, role: str) -> list[ConnectionInfo]:
        """Connections playing ``role``, by name."""
        return [c for c in self.connections if role in c.roles]

    def systems(self, role: str) -> list[str]:
        """Names of the connections playing ``role``."""
        return [c.name for c in self.with_role(role)]

    def can_write(self, connection: str, kind: str) -> bool:
        """True when the connection's connector declares the write ``kind``."""
        from subledger.core.errors import ConfigError
        from subledger.core.plugins import get_connector_class

        info = next((c for c in self.connections if c.name == connection), None)
        if info is None:
            return False
        try:
            return kind in get_connector_class(info.plugin).capabilities.write
        except ConfigError:
            return False


ROLES = ("crm", "billing", "metering", "erp")


class Rule(ABC):
    """A reconciliation rule. Subclasses set ``name`` and implement :meth:`evaluate`.

    ``reads`` names the roles whose connections the rule judges from. A rule is *not
    covered* — it is not evaluated, its findings stay as they are and nothing is planned
    from it — when one of those connections failed to pull in this sync or has never been
    read completely. The default is every role.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    reads: ClassVar[tuple[str, ...]] = ROLES

    @abstractmethod
    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        """Yield every drift found in the store now (not only new ones)."""
