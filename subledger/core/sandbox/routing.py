"""Method + path-template routing: ``GET /v1/customers/{id}``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from subledger.core.sandbox.wire import SandboxError

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Route:
    """One route. ``template`` segments in braces capture path parameters."""

    method: str
    template: str
    handler: Handler

    @property
    def segments(self) -> list[str]:
        return [s for s in self.template.split("/") if s]

    @property
    def literal_count(self) -> int:
        return sum(1 for s in self.segments if not s.startswith("{"))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        parts = [s for s in path.split("/") if s]
        segments = self.segments
        if len(parts) != len(segments):
            return None
        captured: dict[str, str] = {}
        for seg, part in zip(segments, parts, strict=True):
            if seg.startswith("{") and seg.endswith("}"):
                captured[seg[1:-1]] = part
            elif seg != part:
                return None
        return captured


class Router:
    """Routes requests to handlers; the most literal template wins (``/search`` over ``/{id}``)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        self.routes.append(Route(method.upper(), template, handler))
        self.routes.sort(key=lambda r: -r.literal_count)

    def route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""

        def decorate(fn: Handler) -> Handler:
            self.add(method, template, fn)
            return fn

        return decorate

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for a request and its path parameters.

        Raises:
            SandboxError: 404 when no template matches the path, 405 when only the method differs.
        """
        path_matches = False
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
            if route.match(route.method, path) is not None:
                path_matches = True
        if path_matches:
            raise SandboxError(405, f"{method} is not allowed on {path}", code="method_not_allowed")
        raise SandboxError(404, f"Unrecognized request URL ({method}: {path})", code="resource_missing")
