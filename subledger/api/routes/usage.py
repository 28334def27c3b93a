"""``POST /v1/usage/events``: batches of usage events, one result per event; the quarantine and its release."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from subledger.api.auth import Caller, require
from subledger.api.errors import ApiError, responses
from subledger.api.ingest import (
    EARLIEST,
    LATEST,
    MAX_DIGITS,
    MAX_ID,
    MAX_METER,
    MAX_NUMBER_TEXT,
    SPAN,
    Limits,
    ingest_batch,
    parse_body,
)
from subledger.api.known import standing_counts
from subledger.api.quarantine import quarantine_rows, release
from subledger.api.settings import ServiceSettings
from subledger.api.state import get_state

router = APIRouter(prefix="/v1/usage", tags=["usage"])

REJECT_CODES = Literal[
    "invalid", "too_long", "out_of_range", "too_large", "negative_quantity", "too_old", "too_new", "conflict",
    "unknown_customer", "unknown_meter",
]
_NO_CONTROL = r"^[^\u0000-\u001f\u007f]*\S[^\u0000-\u001f\u007f]*$"


class UsageEventDoc(BaseModel):
    """One usage event (the request body's documentation: events are validated one by one, see docs/service.md)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_ID, pattern=_NO_CONTROL,
                    description="unique per source: the same id and content again is a duplicate")
    customer: str | None = Field(default=None, min_length=1, max_length=MAX_ID, pattern=_NO_CONTROL,
                                 description="the customer's canonical id (required unless customer_external_id)")
    customer_external_id: str | None = Field(default=None, min_length=1, max_length=MAX_ID, pattern=_NO_CONTROL,
                                             description="alias of customer")
    meter: str = Field(min_length=1, max_length=MAX_METER, pattern=_NO_CONTROL,
                       description="a meter the store knows (a metering system's, or one a contract prices)")
    quantity: float | str = Field(
        description="a JSON number or a decimal string, kept exact: at most 30 significant digits, below 10^30, "
        "none finer than 10^-30; negative only on correction_meters",
        json_schema_extra={"anyOf": [
            {"type": "number", "exclusiveMinimum": -(10**MAX_DIGITS), "exclusiveMaximum": 10**MAX_DIGITS},
            {"type": "string", "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$",
             "maxLength": MAX_NUMBER_TEXT},
        ]},
    )
    timestamp: datetime | float = Field(
        description=f"ISO 8601 with a timezone, or Unix seconds; from {SPAN}, and in the open window",
        json_schema_extra={"anyOf": [
            {"type": "string", "format": "date-time", "maxLength": 64},
            {"type": "number", "minimum": int(EARLIEST.timestamp()), "exclusiveMaximum": int(LATEST.timestamp())},
        ]},
    )
    properties: dict[str, Any] = Field(
        default_factory=dict, description="JSON values, at most max_properties_bytes (4096) as compact JSON"
    )


class UsageBatchDoc(BaseModel):
    """The body of ``POST /v1/usage/events``."""

    model_config = ConfigDict(extra="forbid")

    events: list[UsageEventDoc] = Field(description="at most max_batch (1,000) events; the body at most "
                                        "max_body_bytes (5 MiB)")


class EventResultDoc(BaseModel):
    index: int
    id: str | None = Field(description="the event's id, when it is a valid one")
    status: Literal["accepted", "duplicate", "rejected"]
    code: REJECT_CODES | None = Field(default=None, description="why it was rejected (docs/service.md)")
    field: str | None = None
    reason: str | None = None
    fix: str | None = None
    quarantined: bool | None = Field(
        default=None, description="true: kept as a reject until its customer and meter are known, then released"
    )


class BatchResultDoc(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    quarantined: int = Field(description="rejected events kept in quarantine (unknown_customer, unknown_meter)")
    counted_by_standing: bool = Field(
        description="false: standing reads usage from a metering connection, not from these events; "
        "standing_note says why and how to change it"
    )
    standing_note: str | None = None
    results: list[EventResultDoc]


# Models the OpenAPI document lists though no route declares them (the ingest body is read by hand).
EXTRA_SCHEMAS: tuple[type[BaseModel], ...] = (UsageBatchDoc,)


def limits_of(settings: ServiceSettings) -> Limits:
    return Limits(max_properties_bytes=settings.max_properties_bytes,
                  correction_meters=frozenset(settings.correction_meters))


@router.post(
    "/events",
    summary="Ingest a batch of usage events",
    response_model=BatchResultDoc,
    responses=responses(400, 401, 403, 413, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UsageBatchDoc"}}},
        }
    },
)
async def ingest_events(request: Request, caller: Caller = Depends(require("ingest"))) -> Response:
    """Store each event exactly once; each gets ``accepted``, ``duplicate`` or ``rejected`` (code, field, reason, fix).

    The batch is never all-or-nothing. Rejections: ``invalid``, ``too_long``, ``out_of_range``,
    ``too_large``, ``negative_quantity``, ``too_old``, ``too_new``, ``conflict`` (same id,
    other payload), and ``unknown_customer``/``unknown_meter``, which are quarantined until
    released. ``counted_by_standing`` says whether standing reads these events.
    """
    state = get_state(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the batch as application/json")
    raw = await request.body()
    try:
        body = parse_body(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON (NaN and Infinity are not JSON)") from None
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise ApiError(400, "bad_request", 'the body must be {"events": [...]}', "events")
    events = body["events"]
    extra = sorted(set(body) - {"events"})
    if extra:
        name = extra[0][:64].encode("utf-8", "backslashreplace").decode()
        raise ApiError(400, "bad_request", f"unknown field {name!r}; the body is {{\"events\": [...]}}", name)
    settings = state.settings
    limit = settings.max_batch
    if len(events) > limit:
        raise ApiError(413, "batch_too_large", f"{len(events)} events in one batch; send at most {limit}", "events")
    source = settings.usage_source

    result = await anyio.to_thread.run_sync(
        lambda: ingest_batch(
            state.engine,
            source,
            events,
            grace_days=settings.grace_days,
            max_future_seconds=settings.max_future_seconds,
            limits=limits_of(settings),
            standing=lambda session: standing_counts(session, state.sync_settings, source),
        )
    )
    return Response(orjson.dumps(result.to_json()), media_type="application/json")


class QuarantinedOut(BaseModel):
    reject: int
    event: str | None
    field: str | None
    reason: str
    fix: str
    first_seen: datetime
    last_seen: datetime
    raw: dict[str, Any] | None = Field(description="the event as it will be stored")


class QuarantinePage(BaseModel):
    total: int
    limit: int
    offset: int
    events: list[QuarantinedOut]


@router.get("/quarantine", summary="Events held until their customer or meter is known", response_model=QuarantinePage,
            responses=responses(401, 403, 422))
def list_quarantine(
    request: Request,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=10**9),
    caller: Caller = Depends(require("read")),
) -> QuarantinePage:
    state = get_state(request)
    with Session(state.engine) as session:
        total, rows = quarantine_rows(session, state.settings.usage_source, limit, offset)
    out = []
    for r in rows:
        assert r.id is not None
        try:
            raw = orjson.loads(r.raw)
        except orjson.JSONDecodeError:
            raw = None
        out.append(QuarantinedOut(reject=r.id, event=r.location.removeprefix("event ") or None, field=r.field,
                                  reason=r.reason, fix=r.fix, first_seen=r.first_seen, last_seen=r.last_seen,
                                  raw=raw if isinstance(raw, dict) else None))
    return QuarantinePage(total=total, limit=limit, offset=offset, events=out)


class ReleaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[int] | None = Field(default=None, max_length=1000,
                                  description="the quarantined events (reject ids) to release; default: every one")


class ReleasedDoc(BaseModel):
    reject: int
    event: str | None
    status: Literal["released", "duplicate", "unknown", "refused"]
    code: str | None
    reason: str | None


class ReleaseDoc(BaseModel):
    released: int
    duplicates: int = Field(description="already stored with the same content: released too, counted once")
    still_unknown: int
    refused: int = Field(description="can no longer be stored (conflict, closed period): kept, with the reason")
    results: list[ReleasedDoc]


@router.post("/quarantine/release", summary="Store quarantined events whose customer and meter are now known",
             response_model=ReleaseDoc, responses=responses(400, 401, 403, 413, 422))
def release_quarantine(request: Request, body: ReleaseBody | None = None,
                       caller: Caller = Depends(require("write"))) -> Response:
    """Each released event is stored exactly once (as if it had been accepted when it arrived); the others stay
    quarantined. The same as ``subledger rejects release``."""
    state = get_state(request)
    s = state.settings
    report = release(state.engine, s.usage_source, ids=body.ids if body else None, grace_days=s.grace_days,
                     max_future_seconds=s.max_future_seconds, limits=limits_of(s), actor=caller.actor)
    return Response(orjson.dumps(report.to_json()), media_type="application/json")
