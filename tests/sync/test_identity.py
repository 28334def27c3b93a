"""The identity map: explicit links first, then exact matches with a confidence; never a guess."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.errors import ConfigError
from subledger.core.model import Customer, ExternalRef, record_id
from subledger.sync.identity import (
    canonical_customer,
    link_manually,
    normalize_name,
    resolve_identities,
    unlink,
)


def add(s: Session, system: str, ext: str, name: str, **kw: str) -> None:
    s.add(Customer(id=record_id("cus", system, ext), system=system, external_id=ext, name=name, **kw))


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("ACME, Inc.", "acme"),
        ("Acme Corp", "acme"),
        ("Société Générale S.A.", "societe generale"),
        ("  Globex   LLC ", "globex"),
    ],
)
def test_names_fold_case_accents_punctuation_and_legal_suffixes(raw: str, norm: str) -> None:
    assert normalize_name(raw) == norm


def resolve(engine: Engine):  # type: ignore[no-untyped-def]
    with Session(engine) as s, s.begin():
        return resolve_identities(s, master="crm", match_on=["tax_id", "email_domain", "name"], actor="test")


def ref(engine: Engine, system: str, ext: str) -> ExternalRef | None:
    with Session(engine) as s:
        return s.exec(select(ExternalRef).where(ExternalRef.system == system, ExternalRef.external_id == ext)).first()


def test_matching_order_and_confidence(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        add(s, "crm", "A", "Acme Corp", tax_id="DE 123.456.789", email_domain="acme.com")
        add(s, "crm", "G", "Globex", email_domain="globex.io")
        add(s, "crm", "I", "Initech Ltd")
        add(s, "stripe", "cus_1", "Totally Different Name", tax_id="DE123456789")  # tax id
        add(s, "stripe", "cus_2", "Globex Billing", email_domain="GLOBEX.io")  # domain
        add(s, "stripe", "cus_3", "INITECH", email_domain="gmail.com")  # free mail never matches; name does
        add(s, "stripe", "cus_4", "Hooli", canonical_hint="G")  # explicit link wins
    report = resolve(engine)
    assert report.issues == []
    got = {
        e: (ref(engine, "stripe", e).canonical_id, ref(engine, "stripe", e).method, ref(engine, "stripe", e).confidence)
        for e in ("cus_1", "cus_2", "cus_3", "cus_4")
    }
    assert got == {
        "cus_1": ("A", "tax_id", Decimal(1)),
        "cus_2": ("G", "email_domain", Decimal("0.9")),
        "cus_3": ("I", "name", Decimal("0.8")),
        "cus_4": ("G", "explicit", Decimal(1)),
    }
    assert ref(engine, "crm", "A").method == "source"


def test_ambiguous_and_unmatched_records_are_reported_never_guessed(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        add(s, "crm", "A1", "Acme")
        add(s, "crm", "A2", "ACME Inc")
        add(s, "stripe", "cus_1", "Acme Corp")
        add(s, "stripe", "cus_2", "Nobody Knows")
    report = resolve(engine)
    assert sorted((i.kind, i.external_id, tuple(i.candidates)) for i in report.issues) == [
        ("ambiguous", "cus_1", ("A1", "A2")),
        ("unmatched", "cus_2", ()),
    ]
    assert ref(engine, "stripe", "cus_1") is None


def test_manual_links_and_unlinks_survive_resyncs(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        add(s, "crm", "A", "Acme")
        add(s, "crm", "B", "Acme Holdings")
        add(s, "stripe", "cus_1", "Acme")
        add(s, "stripe", "cus_2", "Acme Holdings")
    resolve(engine)
    with Session(engine) as s, s.begin():
        link_manually(s, system="stripe", external_id="cus_1", canonical_id="B", actor="user:ann", reason="merger")
        unlink(s, system="stripe", external_id="cus_2", actor="user:ann", reason="not the same company")
    report = resolve(engine)
    with Session(engine) as s:
        assert canonical_customer(s, "stripe", "cus_1") == "B"
        assert canonical_customer(s, "stripe", "cus_2") is None
    assert [(i.kind, i.external_id) for i in report.issues] == [("unmatched", "cus_2")]
    with Session(engine) as s, s.begin(), pytest.raises(ConfigError, match="no customer 'nope'"):
        link_manually(s, system="stripe", external_id="nope", canonical_id="A", actor="u", reason="r")


def test_a_configured_link_field_is_an_explicit_link(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        add(s, "crm", "0015g00000AcmeA1", "Acme")
        s.add(
            Customer(
                id=record_id("cus", "billing", "c9"),
                system="billing",
                external_id="c9",
                name="Zeta",
                attributes={"metadata": {"crm_account": "0015g00000AcmeA1"}},
            )
        )
    with Session(engine) as s, s.begin():
        report = resolve_identities(
            s, master="crm", match_on=["name"], actor="t", link_fields={"billing": "metadata.crm_account"}
        )
    assert report.issues == []
    assert (ref(engine, "billing", "c9").canonical_id, ref(engine, "billing", "c9").method) == (
        "0015g00000AcmeA1",
        "explicit",
    )


def test_a_master_record_that_carries_a_canonical_id_keeps_it(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        add(s, "crm", "0015g00000AcmeA1", "Acme", canonical_hint="acme")
        add(s, "stripe", "cus_1", "Someone", canonical_hint="acme")
        add(s, "stripe", "cus_2", "ACME Inc")
    report = resolve(engine)
    assert report.issues == []
    assert {
        e: ref(engine, s_, e).canonical_id
        for s_, e in (("crm", "0015g00000AcmeA1"), ("stripe", "cus_1"), ("stripe", "cus_2"))
    } == {"0015g00000AcmeA1": "acme", "cus_1": "acme", "cus_2": "acme"}


def test_two_crms_each_own_part_of_the_customers(engine: Engine) -> None:
    """Enterprise accounts live in Salesforce, the mid-market in HubSpot: both are masters."""
    with Session(engine) as s, s.begin():
        add(s, "salesforce", "001A", "Acme", canonical_hint="acme")
        add(s, "hubspot", "9001", "Globex", canonical_hint="globex")
        add(s, "stripe", "cus_1", "Acme billing", canonical_hint="acme")
        add(s, "stripe", "cus_2", "Globex billing", canonical_hint="globex")
        add(s, "stripe", "cus_3", "Initech")  # in neither CRM
    with Session(engine) as s, s.begin():
        report = resolve_identities(s, master=["salesforce", "hubspot"], match_on=["name"], actor="t")
    assert [(i.kind, i.system, i.external_id) for i in report.issues] == [("unmatched", "stripe", "cus_3")]
    assert {(r.system, r.external_id): r.canonical_id for r in [
        ref(engine, "hubspot", "9001"), ref(engine, "stripe", "cus_1"), ref(engine, "stripe", "cus_2")]} == {
        ("hubspot", "9001"): "globex", ("stripe", "cus_1"): "acme", ("stripe", "cus_2"): "globex"}
