"""One error shape for every failure: ``{"error": {"code", "message", "field"}}`` with its status."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from subledger.core.errors import ConfigError, FailureKind, SubledgerError
from subledger.core.secrets import redact

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """What went wrong: a stable code, a message that names the fix, and the field at fault."""

    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """Every error response."""

    error: ErrorBody


class ApiError(Exception):
    """An error the API answers with ``status`` and the shared error document."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class BodyTooLarge(StarletteHTTPException):
    """A request body over its route's limit (raised while the body is read, so it is never buffered whole)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")
        self.limit = limit


def error_json(
    status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": redact(message), "field": field}}
    out = dict(headers or {})
    if status == 401:
        out["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=out or None)


# Documented error responses, for the OpenAPI document.
def responses(*statuses: int) -> dict[int | str, dict]:
    return {s: {"model": ErrorResponse} for s in statuses}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through :func:`error_json`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_json(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        return error_json(422, "invalid", str(first.get("msg", "invalid request")), ".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, BodyTooLarge):
            return error_json(413, "body_too_large", f"{exc.detail}; send less (max_body_bytes in the service "
                              "settings)")
        code = _HTTP_CODES.get(exc.status_code, "error")
        # Starlette's own headers are kept: 405 names the allowed methods in Allow.
        return error_json(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(SubledgerError)
    async def _subledger(request: Request, exc: SubledgerError) -> JSONResponse:
        if exc.kind is FailureKind.CONFIG:
            return error_json(400, "bad_request", str(exc))
        if exc.kind is FailureKind.TRANSIENT:
            return error_json(503, "unavailable", str(exc))
        log.error("internal error on %s %s: %s", request.method, request.url.path, redact(str(exc)))
        return error_json(500, "internal", "internal error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_json(500, "internal", "internal error")


__all__ = [
    "ApiError", "BodyTooLarge", "ConfigError", "ErrorResponse", "error_json", "install_error_handlers", "responses",
]
