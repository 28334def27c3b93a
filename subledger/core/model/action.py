"""Action: a planned write-back, and the outbox row that makes it exactly-once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from subledger.core.db_types import JSONDoc, UTCDateTime, utcnow


class ActionStatus(StrEnum):
    """Where an action is in the outbox. The stored strings are the values; the allowed
    moves between them are :data:`subledger.sync.outbox.TRANSITIONS`."""

    PLANNED = "planned"  # proposed, waiting for a person (or a policy)
    APPROVED = "approved"  # may be applied
    IN_FLIGHT = "in_flight"  # claimed by an applier; its write may have landed
    DONE = "done"  # written and read back
    FAILED = "failed"  # refused by the target (a conflict, a bad request): not retried
    REJECTED = "rejected"  # a person said no
    SUPERSEDED = "superseded"  # the drift it fixed changed or disappeared before it was sent


ACTION_STATUSES = tuple(s.value for s in ActionStatus)


class Action(SQLModel, table=True):
    """A write the engine plans, and its progress through the outbox.

    ``idempotency_key`` is derived from the action's content, so planning the same fix
    twice yields the same row. Apply *claims* the row (``in_flight``, ``claimed_by``,
    ``claimed_until``, in one compare-and-set) and commits *before* it calls the target,
    so two appliers never both send it, and after a crash the engine knows to look the
    write up (find-before-create) rather than repeat it.
    """

    __tablename__ = "action"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_action_key"),)

    id: str = Field(primary_key=True, max_length=64)
    idempotency_key: str = Field(max_length=128)
    kind: str = Field(max_length=64, description="the connector write kind, e.g. create_invoice")
    connection: str = Field(index=True, max_length=64, description="where it writes")
    finding_id: str | None = Field(default=None, index=True, max_length=64)
    rule: str | None = Field(default=None, max_length=64)
    customer: str | None = Field(default=None, max_length=255)
    summary: str = Field(default="", max_length=2048)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    target_external_id: str | None = Field(default=None, max_length=255)
    base_version: dict[str, Any] | None = Field(default=None, sa_type=JSONDoc)
    amount_minor: int = Field(default=0, sa_type=BigInteger)
    currency: str | None = Field(default=None, max_length=3)
    status: str = Field(default="planned", index=True, max_length=16)
    approved_by: str | None = Field(default=None, max_length=128)
    attempts: int = Field(default=0, description="how many times it was claimed for a write")
    claimed_by: str | None = Field(
        default=None, max_length=128, description="the applier holding it in flight: host:pid:random"
    )
    claimed_until: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="when the claim lapses unless renewed"
    )
    external_id: str | None = Field(default=None, max_length=255, description="what the write created")
    result: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDoc)
    error: str | None = Field(default=None, max_length=4096)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
