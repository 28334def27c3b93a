"""Findings: list and filter; acknowledge, ignore, resolve or reopen with a reason."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import Session, func, select

from subledger.api.auth import Caller, require
from subledger.api.errors import ApiError, responses
from subledger.api.state import get_state
from subledger.core.db_types import utcnow
from subledger.core.model.finding import FINDING_STATUSES, Finding, FindingEvent
from subledger.sync.findings import set_status

router = APIRouter(prefix="/v1/findings", tags=["findings"])


class FindingOut(BaseModel):
    id: str
    rule: str
    key: str
    status: str
    status_reason: str
    customer: str | None
    contract_id: str | None
    period_start: date | None
    period_end: date | None
    amount_minor: int
    currency: str | None
    summary: str
    evidence: list[dict[str, Any]]
    details: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None


class FindingPage(BaseModel):
    total: int
    limit: int
    offset: int
    findings: list[FindingOut]


class FindingEventOut(BaseModel):
    at: datetime
    event: str
    from_status: str | None
    to_status: str | None
    amount_minor: int | None
    actor: str
    reason: str


class FindingDetail(FindingOut):
    history: list[FindingEventOut]


class StatusChange(BaseModel):
    reason: str = Field(min_length=1, max_length=1024, description="why (kept in the audit log)")


def _out(f: Finding) -> FindingOut:
    return FindingOut.model_validate(f, from_attributes=True)


@router.get("", summary="List findings", response_model=FindingPage, responses=responses(401, 403, 422))
def list_findings(
    request: Request,
    rule: str | None = Query(default=None, max_length=64),
    customer: str | None = Query(default=None, max_length=255),
    status: Literal["open", "acknowledged", "resolved", "ignored"] | None = None,
    min_amount_minor: int | None = Query(default=None, ge=0, le=2**62, description="|amount| at least this"),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=10**9),
    caller: Caller = Depends(require("read")),
) -> FindingPage:
    state = get_state(request)
    conds = []
    if rule:
        conds.append(Finding.rule == rule)
    if customer:
        conds.append(Finding.customer == customer)
    if status:
        conds.append(Finding.status == status)
    if min_amount_minor is not None:
        conds.append(func.abs(Finding.amount_minor) >= min_amount_minor)
    with Session(state.engine) as session:
        total = session.exec(select(func.count()).select_from(Finding).where(*conds)).one()
        rows = session.exec(
            select(Finding).where(*conds).order_by(Finding.last_seen.desc(), Finding.id).offset(offset).limit(limit)
        ).all()
        return FindingPage(total=total, limit=limit, offset=offset, findings=[_out(f) for f in rows])


@router.get("/{finding_id}", summary="A finding and its history", response_model=FindingDetail,
            responses=responses(401, 403, 404))
def get_finding(finding_id: str, request: Request, caller: Caller = Depends(require("read"))) -> FindingDetail:
    state = get_state(request)
    with Session(state.engine) as session:
        f = session.get(Finding, finding_id)
        if f is None:
            raise ApiError(404, "not_found", f"no finding {finding_id!r}", "finding_id")
        events = session.exec(
            select(FindingEvent).where(FindingEvent.finding_id == f.id).order_by(FindingEvent.id)
        ).all()
        return FindingDetail(
            **_out(f).model_dump(),
            history=[FindingEventOut.model_validate(e, from_attributes=True) for e in events],
        )


VERBS = {"acknowledge": "acknowledged", "ignore": "ignored", "resolve": "resolved", "reopen": "open"}
assert set(VERBS.values()) <= set(FINDING_STATUSES)


def _change(verb: str):  # type: ignore[no-untyped-def]
    def change(
        finding_id: str, body: StatusChange, request: Request, caller: Caller = Depends(require("write"))
    ) -> FindingOut:
        if not body.reason.strip():
            raise ApiError(422, "invalid", "a status change needs a reason", "reason")
        state = get_state(request)
        with Session(state.engine, expire_on_commit=False) as session, session.begin():
            if session.get(Finding, finding_id) is None:
                raise ApiError(404, "not_found", f"no finding {finding_id!r}", "finding_id")
            f = set_status(session, finding_id, VERBS[verb], reason=body.reason, actor=caller.actor, now=utcnow())
            return _out(f)

    change.__name__ = f"{verb}_finding"
    return change


for _verb in VERBS:
    router.add_api_route(
        f"/{{finding_id}}/{_verb}",
        _change(_verb),
        methods=["POST"],
        summary=f"{_verb.capitalize()} a finding, with a reason",
        response_model=FindingOut,
        responses=responses(401, 403, 404, 422),
    )
