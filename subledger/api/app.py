"""The FastAPI app behind ``subledger serve``: usage ingest, standing, findings, actions, sync, webhooks."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic.json_schema import models_json_schema
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from subledger.api.errors import BodyTooLarge, error_json, install_error_handlers
from subledger.api.routes import actions, findings, standing, sync, usage, webhooks
from subledger.api.settings import ServiceSettings, load_service_settings
from subledger.api.state import ServiceState
from subledger.sync.settings import SyncSettings, load_settings

API_VERSION = "1"
WEBHOOK_MAX_BODY = webhooks.MAX_BODY


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before they are buffered.

    A declared ``Content-Length`` over the limit is answered at once; a body sent without
    one (chunked) is counted as it is read and refused the moment it passes the limit.
    Webhook deliveries have their own, smaller limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = WEBHOOK_MAX_BODY if scope["path"].startswith("/v1/webhooks/") else self.limit
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            if not declared.strip().isdigit():
                await error_json(400, "bad_request", "Content-Length is not a number")(scope, receive, send)
                return
            if int(declared) > limit:
                response = error_json(413, "body_too_large", f"the request body is larger than {limit:,} bytes; send "
                                      "less (max_body_bytes in the service settings)")
                await response(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _document(doc: dict[str, Any]) -> dict[str, Any]:
    """Complete the generated OpenAPI document: every ``$ref`` resolves and every error the app gives is listed.

    * models read by hand (the usage batch) are added to ``components.schemas``;
    * 422 answers are the shared error document (the app's handler), not FastAPI's ``HTTPValidationError``;
    * every operation with a body documents 400 (unparseable) and 413 (over the size limit);
      every operation behind a key documents 401 and 403.
    """
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    _, extra = models_json_schema([(m, "validation") for m in usage.EXTRA_SCHEMAS],
                                  ref_template="#/components/schemas/{model}")
    schemas.update(extra.get("$defs", {}))
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    descriptions = {"400": "Bad Request", "401": "Unauthorized", "403": "Forbidden", "413": "Content Too Large",
                    "422": "Unprocessable Entity"}
    for item in doc.get("paths", {}).values():
        for op in item.values():
            answers = op.setdefault("responses", {})
            wanted = ["422"] if "422" in answers else []
            if "requestBody" in op:
                wanted += ["400", "413"]
            if op.get("security"):
                wanted += ["401", "403"]
            for status in wanted:
                answers[status] = {"description": answers.get(status, {}).get("description")
                                   or descriptions[status], **error}
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    doc["paths"] = dict(sorted(doc.get("paths", {}).items()))
    return doc


def create_app(
    engine: Engine | None = None,
    settings: ServiceSettings | None = None,
    *,
    sync_settings: SyncSettings | None = None,
) -> FastAPI:
    """Build the service over ``engine`` (default: the configured store)."""
    if engine is None:
        from subledger.core.store.engine import get_engine

        engine = get_engine()
    state = ServiceState(
        engine=engine,
        settings=settings or load_service_settings(),
        sync_settings=sync_settings or load_settings(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        state.drain(timeout=10)
        state.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="subledger",
        version=API_VERSION,
        description="Usage ingest, real-time standing, findings, actions, sync control and vendor webhooks. "
        "Authenticate with `Authorization: Bearer slk_...` (see docs/service.md). Errors are "
        '`{"error": {"code", "message", "field"}}`. A method a path does not take answers 405 with `Allow`.',
        lifespan=lifespan,
    )
    app.state.subledger = state
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=state.settings.max_body_bytes)

    @app.get("/v1/health", tags=["meta"], summary="Liveness")
    def health() -> dict[str, bool]:
        return {"ok": True}

    for module in (usage, standing, findings, actions, sync, webhooks):
        app.include_router(module.router)

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
