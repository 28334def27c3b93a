"""Bearer API keys with scopes. Webhook routes use the vendor's signature instead."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from subledger.api.errors import ApiError
from subledger.api.state import get_state

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer slk_...`")


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key id (the actor in the audit log is ``api:<key id>``)."""

    key_id: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"api:{self.key_id}"


def require(scope: str) -> Callable[..., Caller]:
    """A dependency that admits keys granting ``scope`` (401 without a valid key, 403 without the scope)."""

    def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Caller:
        if credentials is None or not credentials.credentials:
            raise ApiError(401, "unauthorized", "an API key is required: send `Authorization: Bearer slk_...`")
        state = get_state(request)
        found = state.keys.verify(state.engine, credentials.credentials, time.monotonic())
        if found is None:
            raise ApiError(401, "unauthorized", "the API key is not valid or was revoked; create one with "
                           "`subledger apikey create`")
        key_id, scopes = found
        if scope not in scopes:
            raise ApiError(403, "forbidden", f"the API key {key_id} lacks the {scope!r} scope; create a key with "
                           f"--scope {scope}")
        caller = Caller(key_id, scopes)
        request.state.caller = caller
        return caller

    dependency.__name__ = f"require_{scope}"
    return dependency
