"""The request and response a sandbox handles, independent of the HTTP server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from subledger.core.sandbox.forms import parse_form


class Headers(dict[str, str]):
    """Case-insensitive header map (keys stored lower-case)."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        pairs = items.items() if hasattr(items, "items") else items
        for key, value in pairs:
            self[key] = value

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class Request:
    """One HTTP request as the sandbox sees it.

    Attributes:
        method: upper-case HTTP method.
        target: the raw request target (path and query string).
        headers: case-insensitive headers.
        body: the raw body bytes.
    """

    method: str
    target: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @cached_property
    def path(self) -> str:
        return urlsplit(self.target).path

    @cached_property
    def query_string(self) -> str:
        return urlsplit(self.target).query

    @cached_property
    def query(self) -> dict[str, Any]:
        """The query string decoded with bracket notation."""
        return parse_form(self.query_string)

    @cached_property
    def content_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";")[0].strip().lower()

    @cached_property
    def form(self) -> dict[str, Any]:
        """The body decoded as a bracket-notation form (empty for other content types)."""
        if self.content_type != "application/x-www-form-urlencoded" or not self.body:
            return {}
        return parse_form(self.body.decode("utf-8"))

    @cached_property
    def json(self) -> Any:
        """The body decoded as JSON (None when empty)."""
        if not self.body:
            return None
        return json.loads(self.body)

    def params(self) -> dict[str, Any]:
        """Query parameters merged with the form or JSON body (body wins)."""
        merged = dict(self.query)
        if self.content_type == "application/json" and isinstance(self.json, dict):
            merged.update(self.json)
        else:
            merged.update(self.form)
        return merged


@dataclass
class Response:
    """What the sandbox answers. ``body`` is JSON-serialisable (or raw bytes)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/json")


class SandboxError(Exception):
    """An API error the vendor would return; the sandbox renders it in the vendor's format.

    Attributes:
        status: HTTP status.
        code: machine-readable error code (vendor's vocabulary).
        message: human-readable message.
        param: the parameter at fault, if any.
        kind: the vendor's error category (Stripe's ``type``).
        headers: extra response headers.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind
        self.headers = headers or {}
