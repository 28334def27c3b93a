"""Sync control: connections, runs, trigger a sync (202 with the run id), a run's status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from subledger.api.auth import Caller, require
from subledger.api.errors import ApiError, responses
from subledger.api.runs import start_sync
from subledger.api.state import get_state
from subledger.core.errors import ConfigError
from subledger.core.model.run import SyncRun
from subledger.core.model.sync_state import Connection, StreamState
from subledger.sync.audit import audit
from subledger.sync.locks import LockHeld

router = APIRouter(prefix="/v1", tags=["sync"])


class ConnectionOut(BaseModel):
    name: str
    plugin: str
    enabled: bool
    roles: list[str]
    streams: dict[str, datetime]


class RunOut(BaseModel):
    id: str
    trigger: str
    connections: list[str]
    status: str
    started_at: datetime
    finished_at: datetime | None
    records_read: int
    records_written: int
    findings_opened: int
    findings_resolved: int
    actions_planned: int
    actions_applied: int
    errors: list[dict[str, Any]]


class SyncBody(BaseModel):
    connections: list[str] | None = Field(default=None, max_length=100, description="default: every enabled one")


class SyncAccepted(BaseModel):
    run: str
    status: str
    connections: list[str]


@router.get("/connections", summary="List connections", response_model=list[ConnectionOut],
            responses=responses(401, 403))
def list_connections(request: Request, caller: Caller = Depends(require("read"))) -> list[ConnectionOut]:
    state = get_state(request)
    with Session(state.engine) as session:
        states: dict[str, dict[str, datetime]] = {}
        for s in session.exec(select(StreamState)).all():
            states.setdefault(s.connection, {})[s.stream] = s.updated_at
        return [
            ConnectionOut(name=c.name, plugin=c.plugin, enabled=c.enabled,
                          roles=list(state.sync_settings.roles_of(c.name, c.plugin)), streams=states.get(c.name, {}))
            for c in session.exec(select(Connection).order_by(Connection.name)).all()
        ]


@router.get("/runs", summary="List sync runs, newest first", response_model=list[RunOut],
            responses=responses(401, 403, 422))
def list_runs(request: Request, limit: int = Query(default=20, ge=1, le=500),
              caller: Caller = Depends(require("read"))) -> list[RunOut]:
    with Session(get_state(request).engine) as session:
        rows = session.exec(select(SyncRun).order_by(SyncRun.started_at.desc()).limit(limit)).all()
        return [RunOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/runs/{run_id}", summary="A sync run's status", response_model=RunOut, responses=responses(401, 403, 404))
def get_run(run_id: str, request: Request, caller: Caller = Depends(require("read"))) -> RunOut:
    with Session(get_state(request).engine) as session:
        run = session.get(SyncRun, run_id)
        if run is None:
            raise ApiError(404, "not_found", f"no run {run_id!r}", "run_id")
        return RunOut.model_validate(run, from_attributes=True)


@router.post("/sync", summary="Start a sync (in the background)", status_code=202, response_model=SyncAccepted,
             responses=responses(401, 403, 404, 409, 422))
def trigger_sync(
    request: Request, body: SyncBody | None = None, caller: Caller = Depends(require("write"))
) -> JSONResponse:
    """Answer 202 with the run id at once; poll ``GET /v1/runs/{id}``. 409 when a connection is already syncing."""
    from subledger.sync.notify import dispatch_safely

    state = get_state(request)
    try:
        run = start_sync(
            state.engine,
            body.connections if body else None,
            trigger=caller.actor,
            settings=state.sync_settings,
            submit=state.submit,
            after=lambda _run: dispatch_safely(state.engine, state.settings),
        )
    except LockHeld as exc:
        raise ApiError(409, "sync_in_progress", str(exc)) from None
    except ConfigError as exc:
        raise ApiError(404, "not_found", str(exc), "connections") from None
    with Session(state.engine) as session, session.begin():
        audit(session, actor=caller.actor, verb="sync.start", object_type="sync_run", object_id=run.id,
              connections=run.connections)
    return JSONResponse(
        {"run": run.id, "status": run.status, "connections": run.connections},
        status_code=202,
        headers={"Location": f"/v1/runs/{run.id}"},
    )
