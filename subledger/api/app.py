"""The FastAPI app behind ``subledger serve``: usage ingest, standing, findings, actions, sync, webhooks."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from subledger.api.errors import install_error_handlers
from subledger.api.routes import actions, findings, standing, sync, usage, webhooks
from subledger.api.settings import ServiceSettings, load_service_settings
from subledger.api.state import ServiceState
from subledger.sync.settings import SyncSettings, load_settings

API_VERSION = "1"


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
        '`{"error": {"code", "message", "field"}}`.',
        lifespan=lifespan,
    )
    app.state.subledger = state
    install_error_handlers(app)

    @app.get("/v1/health", tags=["meta"], summary="Liveness")
    def health() -> dict[str, bool]:
        return {"ok": True}

    for module in (usage, standing, findings, actions, sync, webhooks):
        app.include_router(module.router)
    return app
