"""Meter: a named usage measure that contract components price."""

from __future__ import annotations

from sqlalchemy import UniqueConstraint
from sqlmodel import Field

from subledger.core.model.base import Provenance


class Meter(Provenance, table=True):
    """A usage meter, e.g. ``api_calls`` counted in ``call``."""

    __tablename__ = "meter"
    __table_args__ = (UniqueConstraint("system", "external_id", name="uq_meter_source"),)

    id: str = Field(primary_key=True, max_length=64)
    key: str = Field(index=True, max_length=128, description="the name usage events use")
    name: str = Field(default="", max_length=255)
    unit: str = Field(default="unit", max_length=64)
    aggregation: str = Field(
        default="sum", max_length=16, description="sum, count, max, unique_count or latest"
    )
    unique_property: str | None = Field(
        default=None, max_length=128, description="the event property unique_count counts"
    )
