"""How a billing invoice is found in the ERP.

An ERP invoice is the counterpart of a billing invoice when its ``attributes`` name the
billing record (``source_system`` and ``source_external_id``, which subledger writes when it
creates ERP invoices and ERP connectors read back), or, failing that, when it carries the
same invoice number.
"""

from __future__ import annotations

from sqlmodel import Session, select

from subledger.core.model.invoice import Invoice


def erp_counterparts(session: Session, erp_systems: list[str]) -> dict[tuple[str, str], Invoice]:
    """ERP invoices keyed by (billing system, billing external id) and by ("#", number)."""
    out: dict[tuple[str, str], Invoice] = {}
    for inv in session.exec(select(Invoice).where(Invoice.system.in_(erp_systems))).all():
        attrs = inv.attributes or {}
        if attrs.get("source_system") and attrs.get("source_external_id"):
            out[(str(attrs["source_system"]), str(attrs["source_external_id"]))] = inv
        if inv.number:
            out.setdefault(("#", inv.number), inv)
    return out
