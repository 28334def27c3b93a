"""``POST /v1/webhooks/{connection}``: vendor deliveries, verified by the vendor's own signature."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlmodel import Session

from subledger.api.errors import ApiError, responses
from subledger.api.state import get_state
from subledger.api.webhooks import process_event, record_delivery, signature_digest, verifier_for
from subledger.core.errors import ConfigError
from subledger.core.model.sync_state import Connection
from subledger.core.secrets import redact

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = logging.getLogger("subledger.api.webhooks")

MAX_BODY = 1_000_000  # bytes of one delivery (the app's BodyLimit refuses larger ones as they are read)


class WebhookReceipt(BaseModel):
    received: bool
    status: Literal["queued", "duplicate"]
    event: str


@router.post(
    "/{connection}",
    summary="Receive a vendor webhook delivery",
    response_model=WebhookReceipt,
    responses=responses(400, 404, 409, 413, 503),
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def receive(
    connection: str,
    request: Request,
    stripe_signature: str | None = Header(
        default=None, alias="Stripe-Signature",
        description="Stripe connections: `t=<unix time>,v1=<HMAC-SHA256>` over `<t>.<body>` with a configured "
        "secret; other connectors read their own signature headers",
    ),
) -> JSONResponse:
    """Verify (forged, stale: 400), store once per event id (a vendor retry: 200 ``duplicate``; a byte-for-byte
    replay: 409), answer at once and pull the event's streams in the background."""
    state = get_state(request)
    with Session(state.engine) as session:
        conn = session.get(Connection, connection)
    if conn is None or not conn.enabled:
        raise ApiError(404, "not_found", f"no enabled connection named {connection!r}", "connection")
    from subledger.core.plugins import get_connector_class

    try:
        cls = get_connector_class(conn.plugin)
    except ConfigError as exc:
        raise ApiError(404, "not_found", str(exc), "connection") from None
    verifier = verifier_for(cls)
    if verifier is None:
        raise ApiError(404, "not_found", f"connection {connection!r} ({conn.plugin}) does not take webhooks",
                       "connection")
    secrets = state.settings.signing_secrets(connection)
    if not secrets:
        log.warning("webhook for %s refused: no signing secret is configured", connection)
        raise ApiError(503, "webhook_not_configured", f"no webhook signing secret is configured for {connection!r}; "
                       "set webhook_secrets in service.yaml or $SUBLEDGER_WEBHOOK_SECRETS_" + connection.upper())
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "payload_too_large", "the delivery is larger than 1 MB")
    headers = dict(request.headers)
    try:
        event = verifier.verify(raw, headers, secrets)
    except ConfigError as exc:
        log.warning("webhook for %s refused (forged, stale or malformed): %s", connection, redact(exc.message))
        raise ApiError(400, "webhook_rejected", str(exc)) from None
    streams = list(verifier.streams(str(event.get("type", ""))))
    receipt = record_delivery(state.engine, connection, event, streams, signature_digest(headers))
    if receipt.status == "replayed":
        log.warning("webhook for %s refused: delivery of event %s replayed byte for byte", connection, event["id"])
        raise ApiError(409, "webhook_replayed", f"this delivery of event {event['id']} was already received")
    if receipt.status == "duplicate":
        log.info("webhook for %s: event %s delivered again (retry); already stored, not processed twice",
                 connection, event["id"])
        return JSONResponse({"received": True, "status": "duplicate", "event": event["id"]})
    from subledger.sync.pull import pull

    row_id = receipt.event.id
    state.submit(process_event, state.engine, row_id, lambda c, s: pull(state.engine, c, streams=s))
    return JSONResponse({"received": True, "status": "queued", "event": event["id"]})
