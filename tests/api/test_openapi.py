"""The OpenAPI document: checked into docs/, current, whole (every ``$ref`` resolves), every error documented,
and schemathesis finds no failure on any operation."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from subledger.api import create_app
from subledger.api.keys import create_key
from subledger.api.settings import ServiceSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def current_document() -> str:
    from subledger.core.store.engine import make_engine

    doc = create_app(make_engine("sqlite://"), ServiceSettings()).openapi()
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def test_the_checked_in_openapi_document_is_current() -> None:
    assert DOC.read_text() == current_document(), (
        "docs/openapi.json is stale: regenerate it with `.venv/bin/python tests/api/test_openapi.py`"
    )


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method, path, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def unresolved(doc: dict[str, Any]) -> list[str]:
    """Every ``$ref`` of the document that a JSON Schema resolver (``referencing``) cannot resolve."""
    from referencing import Registry, Resource
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    base = "urn:subledger:openapi"
    registry = Registry().with_resource(base, Resource.from_contents(doc, default_specification=DRAFT202012))
    resolver = registry.resolver(base_uri=base)
    bad = []
    for ref in sorted(set(refs(doc))):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            bad.append(ref)
    return bad


def test_every_ref_resolves_and_the_document_is_valid_openapi() -> None:
    doc = json.loads(DOC.read_text())
    assert unresolved(doc) == []
    # The resolver catches what issue 15 found: a body referring to a schema that is not there.
    broken = copy.deepcopy(doc)
    broken["components"]["schemas"].pop("UsageEventDoc")
    assert unresolved(broken) == ["#/components/schemas/UsageEventDoc"]
    # Every schema is a valid JSON Schema 2020-12 (OpenAPI 3.1's dialect) ...
    from jsonschema import Draft202012Validator

    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    # ... and the document is valid OpenAPI 3.1.
    from openapi_spec_validator import validate

    validate(doc)


def test_every_error_shares_one_shape_and_every_error_the_app_gives_is_documented() -> None:
    doc = json.loads(DOC.read_text())
    for method, path, op in operations(doc):
        answers = op["responses"]
        for status, resp in answers.items():
            if status.startswith(("4", "5")):
                ref = resp["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (method, path, status)
        if "requestBody" in op:
            assert {"400", "413"} <= answers.keys(), (method, path)
        if op.get("security"):
            assert {"401", "403"} <= answers.keys(), (method, path)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    ingest = doc["paths"]["/v1/usage/events"]["post"]
    assert {"400", "401", "403", "413", "415"} <= ingest["responses"].keys()
    assert ingest["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UsageBatchDoc"}
    webhook = doc["paths"]["/v1/webhooks/{connection}"]["post"]
    assert ("header", "Stripe-Signature") in {(p["in"], p["name"]) for p in webhook["parameters"]}


def test_a_method_a_path_does_not_take_is_405_with_allow(engine: Engine) -> None:
    from fastapi.testclient import TestClient

    app = create_app(engine, ServiceSettings())
    doc = app.openapi()
    with TestClient(app) as client:
        for path, item in doc["paths"].items():
            concrete = path.replace("{connection}", "stripe").replace("{customer_id}", "acme") \
                .replace("{finding_id}", "f1").replace("{run_id}", "r1")
            allowed = {m.upper() for m in item if m in METHODS}
            for method in ("TRACE", "PUT", "DELETE", "PATCH"):
                if method in allowed:
                    continue
                r = client.request(method, concrete)
                assert r.status_code == 405, (method, path)
                assert allowed <= {m.strip() for m in r.headers["allow"].split(",")}, (method, path)
                assert r.json()["error"]["code"] == "method_not_allowed"


# Checks that cannot hold for a reason outside the check, by (mode, method, path): each names why.
EXCUSED: dict[tuple[str, str, str], tuple[str, str]] = {
    # The batch is never all-or-nothing: a schema-violating event is rejected in the 200 answer, by design.
    ("negative", "POST", "/v1/usage/events"): ("negative_data_rejection", "per-event rejection"),
}


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_failure_on_any_operation(engine: Engine, mode: str) -> None:
    """Every operation, bounded (a few examples each): every check in positive mode; in negative mode every check
    but negative_data_rejection (unknown query parameters are ignored, as HTTP APIs do)."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import negative_data_rejection, positive_data_acceptance
    from schemathesis.generation.modes import GenerationMode

    named = {"negative_data_rejection": negative_data_rejection, "positive_data_acceptance": positive_data_acceptance}
    token = create_key(engine, name="fuzz", scopes=["admin"], actor="test").token
    app = create_app(engine, ServiceSettings(webhook_secrets={"stripe": ["whsec_fuzz"]}))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    statuses: list[int] = []
    seen: set[str] = set()
    for operation in schema.get_all_operations():
        op = operation.ok()
        seen.add(f"{op.method.upper()} {op.path}")
        excluded = []
        if mode == "negative":
            excluded.append(negative_data_rejection)
        excuse = EXCUSED.get((mode, op.method.upper(), op.path))
        if excuse:
            excluded.append(named[excuse[0]])

        run = _fuzz(op, GenerationMode(mode), token, excluded, failures, statuses, app.state.subledger.drain)
        try:
            run()
        except Unsatisfiable:
            assert mode == "negative"  # nothing to make invalid (no parameters, no body)
    app.state.subledger.drain()
    assert failures == []
    documented = {f"{m.upper()} {p}" for m, p, _ in operations(json.loads(DOC.read_text()))}
    assert seen == documented  # every operation, the usage ingest included
    assert len(statuses) > 40 and any(s < 300 for s in statuses) and any(s >= 400 for s in statuses)


def _fuzz(op: Any, mode: Any, token: str, excluded: list[Any], failures: list[str], statuses: list[int],
          drain: Any) -> Any:
    """A bounded hypothesis test of one operation that records failures instead of stopping at the first."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=6, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        try:
            response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, excluded_checks=excluded)
            statuses.append(response.status_code)
        except BaseException as exc:  # a FailureGroup: keep going, report them all
            failures.append(f"{mode} {case.method} {case.formatted_path}: {str(exc)[:600]}")
        # A sync or an apply runs in the background: let it finish before the next example (CPython 3.11's
        # AST module is not thread-safe, and hypothesis parses source while it generates).
        drain()

    return run


if __name__ == "__main__":
    DOC.write_text(current_document())
