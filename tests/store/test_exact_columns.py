"""Decimals and timestamps survive the store exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.model import CreditGrant, record_id


def grant(units: Decimal, at: datetime) -> CreditGrant:
    return CreditGrant(
        id=record_id("cg", "files", "g1"),
        system="files",
        external_id="g1",
        customer_external_id="acme",
        units=units,
        cost_basis=Decimal("0.0125"),
        effective_at=at,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    units=st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**20), max_value=10**20, places=12)
)
def test_decimals_are_stored_exactly(engine: Engine, units: Decimal) -> None:
    with Session(engine) as s, s.begin():
        s.merge(grant(units, datetime(2026, 1, 1, tzinfo=UTC)))
    with Session(engine) as s:
        got = s.get(CreditGrant, record_id("cg", "files", "g1"))
        assert got.units == units
        assert got.cost_basis == Decimal("0.0125")


def test_timestamps_come_back_aware_utc(engine: Engine) -> None:
    tokyo = timezone(timedelta(hours=9))
    with Session(engine) as s, s.begin():
        s.add(grant(Decimal(1), datetime(2026, 1, 1, 9, 30, tzinfo=tokyo)))
    with Session(engine) as s:
        got = s.get(CreditGrant, record_id("cg", "files", "g1")).effective_at
    assert got == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    assert got.utcoffset() == timedelta(0)


def test_naive_timestamps_and_floats_are_refused(engine: Engine) -> None:
    with Session(engine) as s, pytest.raises(Exception, match="naive datetime"):
        s.add(grant(Decimal(1), datetime(2026, 1, 1)))
        s.flush()
    with Session(engine) as s, pytest.raises(Exception, match="float"):
        g = grant(Decimal(1), datetime(2026, 1, 1, tzinfo=UTC))
        g.units = 0.1  # type: ignore[assignment]
        s.add(g)
        s.flush()
