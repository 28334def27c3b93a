"""Check a sandbox's traffic against the vendor's own contract.

:class:`OpenAPIContract` validates every request an SDK sent (path, query, form or JSON
body) and every response the sandbox returned against a published OpenAPI 3.0/3.1
document. Bracket-encoded forms and deep-object queries are decoded the way the vendor
does and their string leaves coerced to the schema's types before validation.

For objects the available spec predates, :func:`shape_mismatches` compares a response
with the vendor's example object: the same keys, recursively, with compatible types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

from subledger.core.sandbox.app import Exchange
from subledger.core.sandbox.wire import Request, Response

_INT = re.compile(r"^-?\d+$")
_NUM = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
SPEC_URI = "urn:subledger:openapi"


@dataclass(frozen=True)
class Operation:
    """One operation of the spec, found for a request."""

    template: str
    method: str
    pointer: str
    spec: dict[str, Any]
    parameters: list[dict[str, Any]]


def _nullable_to_anyof(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema ``anyOf [..., null]`` (recursively)."""
    if isinstance(node, list):
        return [_nullable_to_anyof(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_anyof(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


class OpenAPIContract:
    """A vendor's OpenAPI document, ready to validate sandbox exchanges.

    Args:
        document: the parsed OpenAPI document.
        prefix: a path prefix the spec's templates lack (none for Stripe).
    """

    def __init__(self, document: dict[str, Any], *, prefix: str = "") -> None:
        self.version = str(document.get("openapi", "3.0"))
        self.is_30 = self.version.startswith("3.0")
        self.doc = _nullable_to_anyof(document) if self.is_30 else document
        self.prefix = prefix
        spec = DRAFT4 if self.is_30 else DRAFT202012
        self.registry: Registry = Registry().with_resource(SPEC_URI, Resource(contents=self.doc, specification=spec))
        self._validator_cls = jsonschema.Draft4Validator if self.is_30 else jsonschema.Draft202012Validator
        # Refs such as "#/components/schemas/customer" resolve against the whole document.
        self._resolver = self.registry.resolver(base_uri=SPEC_URI)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> OpenAPIContract:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), **kwargs)

    # -- lookup -------------------------------------------------------------------------

    @cached_property
    def _templates(self) -> list[tuple[str, list[str]]]:
        items = [(t, [s for s in t.split("/") if s]) for t in self.doc.get("paths", {})]
        # Literal segments beat parameters: /v1/customers/search before /v1/customers/{customer}.
        return sorted(items, key=lambda item: -sum(1 for s in item[1] if not s.startswith("{")))

    def operation(self, method: str, path: str) -> Operation | None:
        """The spec operation for ``method path``, or None when the spec lacks it."""
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :]
        parts = [s for s in path.split("/") if s]
        for template, segments in self._templates:
            if len(segments) != len(parts):
                continue
            if all(s.startswith("{") or s == p for s, p in zip(segments, parts, strict=True)):
                item = self.doc["paths"][template]
                op = item.get(method.lower())
                if op is None:
                    continue
                params = {(p["in"], p["name"]): p for p in item.get("parameters", [])}
                params.update({(p["in"], p["name"]): p for p in op.get("parameters", [])})
                pointer = f"/paths/{_escape(template)}/{method.lower()}"
                return Operation(template, method.upper(), pointer, op, [self.resolve(p) for p in params.values()])
        return None

    def resolve(self, node: Any) -> Any:
        """Follow local ``$ref`` chains."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 50:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                break
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            seen += 1
        return node

    # -- validation ---------------------------------------------------------------------

    def schema_errors(self, instance: Any, schema: dict[str, Any]) -> list[str]:
        """Validation messages for ``instance`` against a schema taken from the document."""
        validator = self._validator_cls(schema, _resolver=self._resolver)  # type: ignore[call-arg]
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        return [_describe(e) for e in errors[:20]]

    def coerce(self, value: Any, schema: Any, depth: int = 0) -> Any:
        """Turn form strings into the types the schema asks for (guided, never guessed)."""
        schema = self.resolve(schema)
        if not isinstance(schema, dict) or depth > 40:
            return value
        for key in ("anyOf", "oneOf"):
            if key in schema:
                for branch in schema[key]:
                    candidate = self.coerce(value, branch, depth + 1)
                    if not self.schema_errors(candidate, self.resolve(branch)):
                        return candidate
                return value
        if "allOf" in schema:
            for branch in schema["allOf"]:
                value = self.coerce(value, branch, depth + 1)
            return value
        kind = schema.get("type")
        if isinstance(value, dict) and kind in (None, "object"):
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            return {
                k: self.coerce(v, props[k] if k in props else extra if isinstance(extra, dict) else {}, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list) and kind in (None, "array"):
            return [self.coerce(v, schema.get("items", {}), depth + 1) for v in value]
        if isinstance(value, str):
            if kind == "integer" and _INT.match(value):
                return int(value)
            if kind == "number" and _NUM.match(value):
                return int(value) if _INT.match(value) else float(value)
            if kind == "boolean" and value in ("true", "false"):
                return value == "true"
        return value

    def request_errors(self, request: Request) -> list[str]:
        """Everything wrong with a request, judged by the spec (empty when valid)."""
        op = self.operation(request.method, request.path)
        where = f"{request.method} {request.path}"
        if op is None:
            return [f"{where}: the spec has no such operation"]
        errors: list[str] = []
        query = request.query
        known = {p["name"] for p in op.parameters if p["in"] == "query"}
        errors += [f"{where}: unknown query parameter {name!r}" for name in query if name not in known]
        for param in op.parameters:
            if param["in"] == "query":
                name = param["name"]
                if name not in query:
                    if param.get("required"):
                        errors.append(f"{where}: missing required query parameter {name!r}")
                    continue
                value = self.coerce(query[name], param.get("schema", {}))
                errors += [f"{where}: query {name}: {m}" for m in self.schema_errors(value, param.get("schema", {}))]
            elif param["in"] == "path":
                value = self._path_value(op.template, request.path, param["name"])
                if value is not None:
                    schema = param.get("schema", {})
                    errors += [f"{where}: path {param['name']}: {m}" for m in self.schema_errors(value, schema)]
        body_spec = self.resolve(op.spec.get("requestBody", {}))
        content = body_spec.get("content", {}) if isinstance(body_spec, dict) else {}
        if request.body:
            media = content.get(request.content_type)
            if media is None:
                errors.append(f"{where}: body content type {request.content_type!r} not in {sorted(content)}")
            else:
                body = request.json if request.content_type == "application/json" else request.form
                schema = media.get("schema", {})
                body = self.coerce(body, schema)
                errors += [f"{where}: body: {m}" for m in self.schema_errors(body, schema)]
        elif body_spec.get("required"):
            errors.append(f"{where}: the request body is required")
        return errors

    def response_errors(self, request: Request, response: Response) -> list[str]:
        """Everything wrong with a response to ``request``, judged by the spec."""
        op = self.operation(request.method, request.path)
        where = f"{request.method} {request.path} -> {response.status}"
        if op is None:
            return [f"{where}: the spec has no such operation"]
        responses = op.spec.get("responses", {})
        spec = responses.get(str(response.status)) or responses.get(f"{str(response.status)[0]}XX") or responses.get(
            "default"
        )
        if spec is None:
            return [f"{where}: status not declared by the spec"]
        spec = self.resolve(spec)
        media = spec.get("content", {}).get("application/json")
        if media is None:
            return []
        return [f"{where}: {m}" for m in self.schema_errors(response.body, media.get("schema", {}))]

    def exchange_errors(self, exchange: Exchange) -> list[str]:
        """Request and response problems of one logged exchange."""
        errors = self.request_errors(exchange.request)
        if exchange.response is not None and exchange.fault is None:
            errors += self.response_errors(exchange.request, exchange.response)
        return errors

    def _path_value(self, template: str, path: str, name: str) -> str | None:
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :]
        for seg, part in zip(template.split("/"), path.split("/"), strict=False):
            if seg == "{" + name + "}":
                return part
        return None


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    message = error.message
    if error.context:
        # For anyOf failures, the deepest branch error says more than "is not valid under any".
        best = jsonschema.exceptions.best_match(error.context)
        message = f"{message[:200]} ({best.message[:200]})"
    return f"{where}: {message[:500]}"


def shape_mismatches(
    actual: Any, example: Any, *, path: str = "", free_form: Iterable[str] = ("metadata",)
) -> list[str]:
    """Differences between a response object and the vendor's example object.

    Same keys at every level (except free-form maps such as ``metadata``); where both
    values are non-null, compatible JSON types. An expandable field may be an id string
    where the example shows the expanded object, and the other way round.
    """
    free = set(free_form)
    here = path or "(root)"
    if example is None or actual is None:
        return []
    if isinstance(example, dict):
        if isinstance(actual, str) and "id" in example:
            return []  # an unexpanded reference
        if not isinstance(actual, dict):
            return [f"{here}: expected an object, got {type(actual).__name__}"]
        if path.rsplit(".", 1)[-1] in free:
            return []
        problems = [f"{here}: missing key {k!r}" for k in example if k not in actual]
        problems += [f"{here}: unexpected key {k!r}" for k in actual if k not in example]
        for key in example:
            if key in actual:
                child = f"{path}.{key}".lstrip(".")
                problems += shape_mismatches(actual[key], example[key], path=child, free_form=free)
        return problems
    if isinstance(example, list):
        if not isinstance(actual, list):
            return [f"{here}: expected a list, got {type(actual).__name__}"]
        if example:
            return [p for item in actual for p in shape_mismatches(item, example[0], path=f"{path}[]", free_form=free)]
        return []
    if isinstance(actual, dict) and isinstance(example, str):
        return []  # an expanded reference where the example shows an id
    if isinstance(example, bool) or isinstance(actual, bool):
        return [] if isinstance(example, bool) and isinstance(actual, bool) else [
            f"{here}: expected {type(example).__name__}, got {type(actual).__name__}"
        ]
    if isinstance(example, (int, float)) and isinstance(actual, (int, float)):
        return []
    if isinstance(example, str) and isinstance(actual, str):
        return []
    return [f"{here}: expected {type(example).__name__}, got {type(actual).__name__}"]
