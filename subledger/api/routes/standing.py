"""Real-time standing of one customer, and of every customer sorted by amount at risk."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlmodel import Session

from subledger.api.auth import Caller, require
from subledger.api.errors import ApiError, responses
from subledger.api.standing import StandingCalculator
from subledger.api.state import get_state
from subledger.core.db_types import utcnow

router = APIRouter(tags=["standing"])


_USAGE_SYSTEM = Field(
    default=None,
    description="where this standing reads usage: the first metering connection, else the service's usage_source "
    "(usage pushed to POST /v1/usage/events is counted only when it is the usage_source)",
)


class StandingOut(BaseModel):
    customer: str
    amount_at_risk_minor: int
    currencies: list[str]
    contracts: list[dict[str, Any]]
    usage_system: str | None = _USAGE_SYSTEM


class StandingPage(BaseModel):
    total: int
    limit: int
    offset: int
    sort: str
    usage_system: str | None = _USAGE_SYSTEM
    customers: list[StandingOut]


@router.get("/v1/customers/{customer_id}/standing", summary="A customer's standing in the current period",
            response_model=StandingOut, responses=responses(401, 403, 404))
def customer_standing(customer_id: str, request: Request, caller: Caller = Depends(require("read"))) -> StandingOut:
    state = get_state(request)
    with Session(state.engine) as session:
        calc = StandingCalculator(session, state.sync_settings, state.settings.usage_source, utcnow())
        contracts = calc.contracts(customer_id).get(customer_id)
        if not contracts:
            raise ApiError(404, "not_found", f"customer {customer_id!r} has no active contract", "customer_id")
        usage_system = calc.model.roles.usage_system
        return StandingOut(**calc.standing(customer_id, contracts).to_json(), usage_system=usage_system)


@router.get("/v1/standing", summary="Every customer's standing, sorted and paged", response_model=StandingPage,
            responses=responses(401, 403, 422))
def all_standing(
    request: Request,
    sort: Literal["-amount_at_risk", "amount_at_risk", "customer"] = "-amount_at_risk",
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=10**9),
    caller: Caller = Depends(require("read")),
) -> StandingPage:
    state = get_state(request)
    with Session(state.engine) as session:
        calc = StandingCalculator(session, state.sync_settings, state.settings.usage_source, utcnow())
        rows = [calc.standing(c, cs) for c, cs in calc.contracts().items()]
        usage_system = calc.model.roles.usage_system
    rows = [r for r in rows if r.contracts]
    if sort == "customer":
        rows.sort(key=lambda r: r.customer)
    else:
        sign = -1 if sort.startswith("-") else 1
        rows.sort(key=lambda r: (sign * r.at_risk_minor, r.customer))
    page = rows[offset : offset + limit]
    return StandingPage(total=len(rows), limit=limit, offset=offset, sort=sort, usage_system=usage_system,
                        customers=[StandingOut(**r.to_json(), usage_system=usage_system) for r in page])
