"""Planned actions: list, approve, and trigger apply (which runs in the background)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, func, select

from subledger.api.auth import Caller, require
from subledger.api.errors import ApiError, responses
from subledger.api.state import get_state
from subledger.core.db_types import utcnow
from subledger.core.model.action import Action, ActionStatus
from subledger.sync.apply import APPLICABLE, apply_actions
from subledger.sync.audit import audit
from subledger.sync.outbox import TransitionRefused
from subledger.sync.plan import approve

router = APIRouter(prefix="/v1/actions", tags=["actions"])


class ActionOut(BaseModel):
    id: str
    kind: str
    connection: str
    finding_id: str | None
    rule: str | None
    customer: str | None
    summary: str
    payload: dict[str, Any]
    target_external_id: str | None
    amount_minor: int
    currency: str | None
    status: str
    approved_by: str | None
    attempts: int
    external_id: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


class ActionPage(BaseModel):
    total: int
    limit: int
    offset: int
    actions: list[ActionOut]


class ApproveBody(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=500)
    reason: str = Field(default="approved through the API", max_length=1024)


class ApplyBody(BaseModel):
    ids: list[str] | None = Field(default=None, max_length=500, description="default: every approved action")


class ApplyAccepted(BaseModel):
    queued: list[str]


@router.get("", summary="List actions", response_model=ActionPage, responses=responses(401, 403, 422))
def list_actions(
    request: Request,
    status: ActionStatus | None = Query(default=None, description="only actions in this status"),
    connection: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=10**9),
    caller: Caller = Depends(require("read")),
) -> ActionPage:
    conds = []
    if status:
        conds.append(Action.status == status.value)
    if connection:
        conds.append(Action.connection == connection)
    with Session(get_state(request).engine) as session:
        total = session.exec(select(func.count()).select_from(Action).where(*conds)).one()
        rows = session.exec(
            select(Action).where(*conds).order_by(Action.created_at, Action.id).offset(offset).limit(limit)
        ).all()
        return ActionPage(total=total, limit=limit, offset=offset,
                          actions=[ActionOut.model_validate(a, from_attributes=True) for a in rows])


@router.post("/approve", summary="Approve planned actions", response_model=list[ActionOut],
             responses=responses(401, 403, 404, 409, 422))
def approve_actions(body: ApproveBody, request: Request, caller: Caller = Depends(require("write"))) -> list[ActionOut]:
    with Session(get_state(request).engine, expire_on_commit=False) as session, session.begin():
        for aid in body.ids:
            if session.get(Action, aid) is None:
                raise ApiError(404, "not_found", f"no action {aid!r}", "ids")
        try:
            # A compare-and-set per action (outbox.transition): all are approved, or none.
            done = approve(session, body.ids, actor=caller.actor, reason=body.reason, now=utcnow())
        except TransitionRefused as exc:
            raise ApiError(409, "conflict", exc.message, "ids") from exc
        return [ActionOut.model_validate(a, from_attributes=True) for a in done]


@router.post("/apply", summary="Apply approved actions (in the background)", status_code=202,
             response_model=ApplyAccepted, responses=responses(401, 403, 404, 422))
def apply(request: Request, body: ApplyBody | None = None, caller: Caller = Depends(require("write"))) -> JSONResponse:
    """Queue approved actions for apply; answer 202 at once. Poll ``GET /v1/actions`` for their status.

    The background apply is the CLI's: each action is claimed (a compare-and-set) before it
    is sent, so two requests, a worker and a ``subledger apply`` never send one twice.
    """
    state = get_state(request)
    ids = body.ids if body else None
    with Session(state.engine) as session, session.begin():
        stmt = select(Action.id).where(Action.status.in_(APPLICABLE))
        queued = [i for i in session.exec(stmt).all() if ids is None or i in ids]
        missing = sorted(set(ids or []) - set(queued))
        if missing:
            raise ApiError(404, "not_found", f"action {missing[0]!r} does not exist or is not approved", "ids")
        for aid in queued:
            audit(session, actor=caller.actor, verb="action.apply_requested", object_type="action", object_id=aid)
    if queued:
        state.submit(lambda: apply_actions(state.engine, actor=caller.actor, action_ids=queued))
    return JSONResponse({"queued": queued}, status_code=202)
