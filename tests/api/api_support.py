"""Helpers shared by the API tests."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.model import ExternalRef, Meter


def auth(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def make_known(engine: Engine, customers: tuple[str, ...] = ("acme", "globex"),
               meters: tuple[str, ...] = ("api_calls", "storage")) -> None:
    """Make ``customers`` canonical customers (a CRM record linked to each) and ``meters`` a metering system's."""
    with Session(engine) as s, s.begin():
        for c in customers:
            s.add(ExternalRef(entity_type="customer", canonical_id=c, system="crm", object_type="customer",
                              external_id=f"crm-{c}", method="source"))
        for m in meters:
            s.add(Meter(id=f"mtr_{m}", system="metering", external_id=m, key=m))
