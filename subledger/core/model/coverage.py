"""CoverageWindow: the stretches of time for which a metering system's usage has been read."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from subledger.core.db_types import BigIntPK, UTCDateTime, utcnow


class CoverageWindow(SQLModel, table=True):
    """Usage of ``system`` is complete for ``[start, end)``, for ``meter`` ("" means every meter).

    Metering streams report windows as they read them (:class:`~subledger.core.connector.UsageCoverage`);
    the store keeps them merged, so a system has few rows however often it is pulled.
    Reconciliation judges a billing period only when its usage is covered.
    """

    __tablename__ = "coverage_window"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    system: str = Field(index=True, max_length=64)
    meter: str = Field(default="", max_length=128, description='the meter key; "" for every meter')
    start: datetime = Field(sa_type=UTCDateTime)
    end: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
