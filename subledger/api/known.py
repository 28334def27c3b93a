"""Which customers and meters API ingest knows, and whether standing counts API usage.

An event names its customer and meter by name; ingest stores it only when the store
knows both, so usage is never counted against a name nothing else will ever read. The
rule (also in ``docs/service.md``):

* a **customer** is known when it is a canonical customer id of the identity map (any
  linked customer record points at it), when the identity map links it as a customer
  record of the usage source itself, or when a contract names it as its customer (a
  store whose customers were never linked rates a contract with its own customer id);
* a **meter** is known when the store has a meter with that key (read from a metering
  system) or a contract's terms price it (a usage component, or a units credit grant).

Lookups are per batch, not per event: one query per kind over the batch's distinct
names (indexed columns), and contract meters only for names the meter table lacks,
read from each distinct terms document once per process (keyed by its content hash).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from subledger.core.model.contract import Contract
from subledger.core.model.identity import ExternalRef
from subledger.core.model.meter import Meter

_CHUNK = 500  # names per IN (...) list
_TERMS_METERS: dict[str, frozenset[str]] = {}  # terms_hash -> the meters those terms name
_TERMS_CACHE_MAX = 20_000


def _chunks(names: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(names))
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def terms_meters(doc: Any) -> set[str]:
    """Every meter a terms document names (``meter`` keys at any depth)."""
    found: set[str] = set()
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "meter" and isinstance(value, str):
                    found.add(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return found


class Catalog:
    """The known customers and meters among the names of one batch (see the module docstring)."""

    def __init__(self, session: Session, usage_source: str) -> None:
        self.session = session
        self.usage_source = usage_source

    def known_customers(self, names: Iterable[str]) -> set[str]:
        s, found = self.session, set()
        linked = ExternalRef.object_type == "customer", ExternalRef.method != "unlinked"
        for chunk in _chunks(names):
            found.update(s.execute(select(ExternalRef.canonical_id).where(
                ExternalRef.canonical_id.in_(chunk), *linked)).scalars())
            rest = [n for n in chunk if n not in found]
            if rest:
                found.update(s.execute(select(ExternalRef.external_id).where(
                    ExternalRef.system == self.usage_source, ExternalRef.external_id.in_(rest), *linked)).scalars())
            rest = [n for n in rest if n not in found]
            if rest:
                found.update(s.execute(select(Contract.customer_external_id).where(
                    Contract.customer_external_id.in_(rest))).scalars())
        return found

    def known_meters(self, names: Iterable[str]) -> set[str]:
        s, wanted = self.session, set(names)
        found: set[str] = set()
        for chunk in _chunks(wanted):
            found.update(s.execute(select(Meter.key).where(Meter.key.in_(chunk))).scalars())
        if found >= wanted:
            return found
        hashes = set(s.execute(select(Contract.terms_hash).distinct()).scalars())
        missing = [h for h in hashes if h and h not in _TERMS_METERS]
        if missing:
            if len(_TERMS_METERS) + len(missing) > _TERMS_CACHE_MAX:
                _TERMS_METERS.clear()
            for chunk in _chunks(missing):
                for h, terms in s.execute(select(Contract.terms_hash, Contract.terms).where(
                        Contract.terms_hash.in_(chunk))).all():
                    _TERMS_METERS[h] = frozenset(terms_meters(terms))
        priced: set[str] = set()
        for h in hashes:
            if h == "":  # no hash: read the terms themselves (never cached under one key)
                for (terms,) in s.execute(select(Contract.terms).where(Contract.terms_hash == "")).all():
                    priced |= terms_meters(terms)
            else:
                priced |= _TERMS_METERS.get(h, frozenset())
        return found | (wanted & priced)


def standing_counts(session: Session, sync_settings: Any, usage_source: str) -> tuple[bool, str | None]:
    """Whether standing reads the usage stored under ``usage_source``, and if not, why and the fix.

    Standing (and reconciliation) read usage from the first enabled connection playing the
    usage-owning role (``metering`` by default), and from ``usage_source`` only when no
    connection plays it (:func:`subledger.sync.contracts.store_roles`).
    """
    from subledger.sync.contracts import store_roles

    roles = store_roles(session, sync_settings, usage_source=usage_source)
    if roles.usage_system == usage_source:
        return True, None
    owner = roles.usage_system
    role = sync_settings.ownership.usage
    return False, (
        f"stored, but standing and reconciliation read usage from the connection {owner!r} (role {role}), not from "
        f"usage pushed to {usage_source!r}; to count pushed usage, give {owner!r} roles without {role} in the sync "
        f"settings (roles: {{{owner}: [billing]}}), see docs/service.md"
    )
