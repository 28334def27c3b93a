"""``POST /v1/usage/events``: batches of usage events, one result per event."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from subledger.api.auth import Caller, require
from subledger.api.errors import ApiError, responses
from subledger.api.ingest import ingest_batch, parse_body
from subledger.api.state import get_state

router = APIRouter(prefix="/v1/usage", tags=["usage"])


class UsageEventDoc(BaseModel):
    """One usage event (documentation of the request body; events are validated one by one)."""

    id: str = Field(min_length=1, max_length=255, description="unique per source: a repeat is a duplicate")
    customer: str | None = Field(default=None, max_length=255, description="the customer's id")
    customer_external_id: str | None = Field(default=None, max_length=255, description="alias of customer")
    meter: str = Field(min_length=1, max_length=128)
    quantity: Decimal | str = Field(description="a JSON number or a decimal string; kept exact")
    timestamp: datetime | int = Field(description="ISO 8601 with a timezone, or Unix seconds")
    properties: dict[str, Any] = Field(default_factory=dict)


class UsageBatchDoc(BaseModel):
    events: list[UsageEventDoc] = Field(description="at most 1,000 events")


class EventResultDoc(BaseModel):
    index: int
    id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None = Field(default=None, description="invalid, conflict, too_old or too_new")
    field: str | None = None
    reason: str | None = None


class BatchResultDoc(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResultDoc]


@router.post(
    "/events",
    summary="Ingest a batch of usage events",
    response_model=BatchResultDoc,
    responses=responses(400, 401, 403, 413, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": UsageBatchDoc.model_json_schema(ref_template="#/components/schemas/{model}")
                }
            },
        }
    },
)
async def ingest_events(request: Request, caller: Caller = Depends(require("ingest"))) -> Response:
    """Store each event exactly once; each gets ``accepted``, ``duplicate`` or ``rejected`` (field, reason).

    The batch is never all-or-nothing. The same id with another payload is rejected as a
    ``conflict``; events before the oldest open period (its grace window passed) are
    ``too_old``; events more than 5 minutes ahead are ``too_new``.
    """
    state = get_state(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the batch as application/json")
    raw = await request.body()
    try:
        body = parse_body(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise ApiError(400, "bad_request", 'the body must be {"events": [...]}', "events")
    events = body["events"]
    extra = sorted(set(body) - {"events"})
    if extra:
        raise ApiError(400, "bad_request", f"unknown field {extra[0]!r}; the body is {{\"events\": [...]}}", extra[0])
    limit = state.settings.max_batch
    if len(events) > limit:
        raise ApiError(413, "batch_too_large", f"{len(events)} events in one batch; send at most {limit}", "events")
    import anyio

    result = await anyio.to_thread.run_sync(
        lambda: ingest_batch(
            state.engine,
            state.settings.usage_source,
            events,
            grace_days=state.settings.grace_days,
            max_future_seconds=state.settings.max_future_seconds,
        )
    )
    return Response(orjson.dumps(result.to_json()), media_type="application/json")
