"""The identity map: which records of which systems are the same customer.

Order of evidence, strongest first:

1. an explicit link the source carries (``Customer.canonical_hint``, read by the connector
   from the metadata or external-id field configured for it), or a manual link made with
   ``subledger link``;
2. an exact match on tax id (confidence 1.0), normalised email domain (0.9, never for
   free-mail domains) or normalised name (0.8) against the master system's customers.

A record that matches several master customers, or none, is reported as an
:class:`IdentityIssue` (and becomes a finding), never guessed. Manual links and unlinks
are never overwritten by matching, so they survive re-syncs.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlmodel import Session, select

from subledger.core.errors import ConfigError
from subledger.core.model.customer import Customer
from subledger.core.model.identity import ExternalRef
from subledger.sync.audit import audit

CONFIDENCE = {"explicit": Decimal(1), "tax_id": Decimal(1), "email_domain": Decimal("0.9"), "name": Decimal("0.8")}
FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "web.de",
        "yandex.ru",
        "qq.com",
    }
)
_SUFFIXES = re.compile(r"\b(inc|incorporated|llc|ltd|limited|gmbh|ag|sa|sas|bv|plc|corp|corporation|co|company)\b")


def normalize_name(name: str) -> str:
    """``"ACME, Inc."`` -> ``"acme"``: case, accents, punctuation and legal suffixes folded."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = text.replace(".", "")  # "S.A." and "Inc." lose their dots before suffixes are dropped
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    text = _SUFFIXES.sub(" ", text)
    return " ".join(text.split())


def normalize_domain(domain: str | None) -> str | None:
    """Lower-cased domain without ``www.``; None for free-mail domains."""
    if not domain:
        return None
    d = domain.strip().lower().removeprefix("www.")
    return None if d in FREE_MAIL else d


def normalize_tax_id(tax_id: str | None) -> str | None:
    """Tax id with spaces, dots and dashes removed, upper-cased."""
    if not tax_id:
        return None
    return re.sub(r"[\s.\-/]", "", tax_id).upper() or None


@dataclass
class IdentityIssue:
    """A customer record that could not be tied to exactly one canonical customer."""

    kind: str  # "ambiguous" or "unmatched"
    system: str
    external_id: str
    name: str
    candidates: list[str] = field(default_factory=list)
    matched_on: str | None = None


@dataclass
class IdentityReport:
    """What one resolution pass did."""

    linked: int = 0
    issues: list[IdentityIssue] = field(default_factory=list)


def canonical_customer(session: Session, system: str, external_id: str) -> str | None:
    """The canonical id of a system's customer, or None when it is not linked."""
    ref = session.exec(
        select(ExternalRef).where(
            ExternalRef.system == system,
            ExternalRef.object_type == "customer",
            ExternalRef.external_id == external_id,
        )
    ).first()
    if ref is None or ref.method == "unlinked":
        return None
    return ref.canonical_id


def customer_map(session: Session) -> dict[tuple[str, str], str]:
    """Every linked customer record: (system, external id) -> canonical id."""
    rows = session.exec(
        select(ExternalRef).where(ExternalRef.object_type == "customer", ExternalRef.method != "unlinked")
    ).all()
    return {(r.system, r.external_id): r.canonical_id for r in rows}


def system_ids(session: Session) -> dict[str, dict[str, list[str]]]:
    """canonical customer -> system -> that system's customer ids (every linked record)."""
    out: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for (system, external_id), canonical in sorted(customer_map(session).items()):
        out[canonical][system].append(external_id)
    return out


def link_hint(customer: Customer, link_field: str | None) -> str | None:
    """The explicit canonical id a record carries: its connector's hint, else ``link_field``.

    ``link_field`` is a dotted path into the record's attributes, e.g. ``metadata.subledger_id``
    or ``crm_account`` (set per connection in the settings' ``identity.link_field``).
    """
    if customer.canonical_hint:
        return customer.canonical_hint
    if not link_field:
        return None
    value: object = customer.attributes or {}
    for part in link_field.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return str(value) if value not in (None, "") else None


def resolve_identities(
    session: Session,
    *,
    master: str | Sequence[str],
    match_on: list[str],
    actor: str = "system",
    link_fields: dict[str, str] | None = None,
) -> IdentityReport:
    """Link every unlinked customer record to a canonical customer, or report why not.

    ``master``: the system whose customer records are canonical, or several systems that
    each own part of the customers (two CRMs, say); others are matched against them all.
    """
    report = IdentityReport()
    master_systems = {master} if isinstance(master, str) else set(master)
    refs = {
        (r.system, r.external_id): r
        for r in session.exec(select(ExternalRef).where(ExternalRef.object_type == "customer")).all()
    }
    customers = session.exec(select(Customer).order_by(Customer.system, Customer.external_id)).all()
    masters = [c for c in customers if c.system in master_systems]
    index: dict[str, dict[str, list[str]]] = {
        "tax_id": defaultdict(list),
        "email_domain": defaultdict(list),
        "name": defaultdict(list),
    }
    for c in masters:
        canonical = link_hint(c, (link_fields or {}).get(c.system)) or c.external_id
        if (key := normalize_tax_id(c.tax_id)) is not None:
            index["tax_id"][key].append(canonical)
        if (key := normalize_domain(c.email_domain)) is not None:
            index["email_domain"][key].append(canonical)
        if key := normalize_name(c.name):
            index["name"][key].append(canonical)
    master_canonical = {(c.system, c.external_id): link_hint(c, (link_fields or {}).get(c.system)) or c.external_id
                        for c in masters}
    master_ids = set(master_canonical.values())

    def link(c: Customer, canonical: str, method: str) -> None:
        ref = ExternalRef(
            entity_type="customer",
            canonical_id=canonical,
            system=c.system,
            object_type="customer",
            external_id=c.external_id,
            method=method,
            confidence=CONFIDENCE.get(method, Decimal(1)),
            created_by=actor,
        )
        session.add(ref)
        refs[(c.system, c.external_id)] = ref
        audit(
            session,
            actor=actor,
            verb="link.create",
            object_type="customer",
            object_id=f"{c.system}:{c.external_id}",
            reason=f"matched on {method}",
            canonical_id=canonical,
        )
        report.linked += 1

    for c in customers:
        existing = refs.get((c.system, c.external_id))
        if existing is not None:
            if existing.method == "unlinked":
                report.issues.append(IdentityIssue("unmatched", c.system, c.external_id, c.name))
            continue
        if c.system in master_systems:
            # A master record that carries a canonical id (Salesforce's Subledger_Id__c, say)
            # keeps it, so other systems' links to that id meet it; else its own id is canonical.
            link(c, master_canonical[(c.system, c.external_id)], "source")
            continue
        hint = link_hint(c, (link_fields or {}).get(c.system))
        if hint:
            link(c, hint, "explicit")
            if hint not in master_ids:
                report.issues.append(IdentityIssue("unmatched", c.system, c.external_id, c.name, [hint], "explicit"))
            continue
        values = {
            "tax_id": normalize_tax_id(c.tax_id),
            "email_domain": normalize_domain(c.email_domain),
            "name": normalize_name(c.name) or None,
        }
        for how in match_on:
            value = values.get(how)
            if value is None:
                continue
            candidates = sorted(set(index[how].get(value, [])))
            if len(candidates) == 1:
                link(c, candidates[0], how)
                break
            if len(candidates) > 1:
                report.issues.append(IdentityIssue("ambiguous", c.system, c.external_id, c.name, candidates, how))
                break
        else:
            report.issues.append(IdentityIssue("unmatched", c.system, c.external_id, c.name))
    return report


def link_manually(
    session: Session, *, system: str, external_id: str, canonical_id: str, actor: str, reason: str
) -> None:
    """Link a customer record by hand; matching never changes a manual link."""
    known = session.exec(
        select(Customer.id).where(Customer.system == system, Customer.external_id == external_id)
    ).first()
    if known is None:
        raise ConfigError(
            f"no customer {external_id!r} in {system!r}", fix="check the system and id with `subledger status`"
        )
    _replace_ref(session, system, external_id, canonical_id, "manual", actor)
    audit(
        session,
        actor=actor,
        verb="link.manual",
        object_type="customer",
        object_id=f"{system}:{external_id}",
        reason=reason,
        canonical_id=canonical_id,
    )


def unlink(session: Session, *, system: str, external_id: str, actor: str, reason: str) -> None:
    """Remove a customer record's link and stop matching from linking it again."""
    _replace_ref(session, system, external_id, "", "unlinked", actor)
    audit(
        session,
        actor=actor,
        verb="link.remove",
        object_type="customer",
        object_id=f"{system}:{external_id}",
        reason=reason,
    )


def _replace_ref(session: Session, system: str, external_id: str, canonical_id: str, method: str, actor: str) -> None:
    ref = session.exec(
        select(ExternalRef).where(
            ExternalRef.system == system, ExternalRef.object_type == "customer", ExternalRef.external_id == external_id
        )
    ).first()
    if ref is None:
        ref = ExternalRef(
            entity_type="customer",
            system=system,
            object_type="customer",
            external_id=external_id,
            canonical_id=canonical_id,
        )
    ref.canonical_id = canonical_id
    ref.method = method
    ref.confidence = Decimal(1)
    ref.created_by = actor
    session.add(ref)
