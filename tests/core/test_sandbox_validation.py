"""Checking sandbox traffic against an OpenAPI document, on a small spec written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from subledger.core.sandbox import Headers, Request, Response
from subledger.core.sandbox.specs import ENV, spec_file, vendor_specs_dir
from subledger.core.sandbox.validation import OpenAPIContract, shape_mismatches

SPEC = {
    "openapi": "3.0.0",
    "paths": {
        "/v1/widgets": {
            "get": {
                "parameters": [
                    {"in": "query", "name": "limit", "schema": {"type": "integer"}},
                    {"in": "query", "name": "created", "style": "deepObject", "explode": True, "schema": {
                        "anyOf": [{"type": "object", "properties": {"gte": {"type": "integer"}}},
                                  {"type": "integer"}]}},
                    {"in": "query", "name": "expand", "schema": {"type": "array", "items": {"type": "string"}}},
                ],
                "responses": {"200": {"content": {"application/json": {"schema": {
                    "type": "object", "required": ["data"],
                    "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/widget"}}}}}}}},
            },
            "post": {
                "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "additionalProperties": False, "required": ["name"],
                    "properties": {"name": {"type": "string", "maxLength": 5}, "active": {"type": "boolean"},
                                   "tiers": {"type": "array", "items": {"type": "object", "properties": {
                                       "up_to": {"anyOf": [{"type": "string", "enum": ["inf"]},
                                                           {"type": "integer"}]}}}}}}}}},
                "responses": {"default": {"content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/error"}}}}},
            },
        },
        "/v1/widgets/{id}": {"get": {"parameters": [{"in": "path", "name": "id", "required": True,
                                                    "schema": {"type": "string", "maxLength": 8}}],
                                     "responses": {"200": {"content": {"application/json": {"schema": {
                                         "$ref": "#/components/schemas/widget"}}}}}}},
        "/v1/widgets/search": {"get": {"responses": {"200": {"description": "no body"}}}},
    },
    "components": {"schemas": {
        "widget": {"type": "object", "required": ["id", "size"], "properties": {
            "id": {"type": "string"}, "size": {"type": "integer", "nullable": True}}},
        "error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object"}}},
    }},
}
FORM = Headers({"Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture(scope="module")
def contract() -> OpenAPIContract:
    return OpenAPIContract(SPEC)


def test_a_valid_query_passes_with_bracket_objects_and_arrays(contract: OpenAPIContract) -> None:
    assert contract.request_errors(Request("GET", "/v1/widgets?limit=3&created[gte]=10&expand[0]=data.x")) == []
    assert contract.request_errors(Request("GET", "/v1/widgets?created=10")) == []


def test_unknown_and_mistyped_query_parameters_are_reported(contract: OpenAPIContract) -> None:
    errors = contract.request_errors(Request("GET", "/v1/widgets?limit=ten&colour=red"))
    assert any("unknown query parameter 'colour'" in e for e in errors)
    assert any("query limit" in e and "'ten' is not of type 'integer'" in e for e in errors)


def test_form_bodies_are_coerced_then_checked(contract: OpenAPIContract) -> None:
    good = b"name=abc&active=true&tiers[0][up_to]=10&tiers[1][up_to]=inf"
    assert contract.request_errors(Request("POST", "/v1/widgets", FORM, good)) == []
    bad = b"name=toolong&active=maybe&extra=1"
    errors = contract.request_errors(Request("POST", "/v1/widgets", FORM, bad))
    assert any("'toolong' is too long" in e for e in errors)
    assert any("'maybe' is not of type 'boolean'" in e for e in errors)
    assert any("'extra' was unexpected" in e for e in errors)


def test_paths_literal_templates_and_missing_operations(contract: OpenAPIContract) -> None:
    assert contract.operation("GET", "/v1/widgets/search").template == "/v1/widgets/search"  # type: ignore[union-attr]
    assert any("too long" in e for e in contract.request_errors(Request("GET", "/v1/widgets/wid_123456789")))
    assert contract.request_errors(Request("DELETE", "/v1/widgets")) == [
        "DELETE /v1/widgets: the spec has no such operation"]


def test_responses_follow_refs_nullable_and_default(contract: OpenAPIContract) -> None:
    get = Request("GET", "/v1/widgets/w1")
    assert contract.response_errors(get, Response(200, {"id": "w1", "size": None})) == []
    assert any("'size' is a required property" in e for e in contract.response_errors(get, Response(200, {"id": "w"})))
    post = Request("POST", "/v1/widgets", FORM, b"name=a")
    assert contract.response_errors(post, Response(400, {"error": {"message": "no"}})) == []
    assert contract.response_errors(post, Response(400, {"oops": 1})) != []
    assert "status not declared" in contract.response_errors(get, Response(500, {}))[0]


def test_shape_comparison_with_an_example_object() -> None:
    example = {"id": "x", "customer": {"id": "cus", "object": "customer"}, "amount": 5, "metadata": {"a": "b"},
               "lines": [{"id": "l", "qty": 1}], "note": None}
    good = {"id": "y", "customer": "cus_1", "amount": 7.5, "metadata": {"any": "key"}, "lines": [{"id": "m", "qty": 2}],
            "note": "text"}
    assert shape_mismatches(good, example) == []
    bad = {"id": 1, "customer": "cus_1", "amount": "5", "metadata": {}, "lines": [{"id": "m"}], "extra": True}
    assert sorted(shape_mismatches(bad, example)) == [
        "(root): missing key 'note'", "(root): unexpected key 'extra'", "amount: expected int, got str",
        "id: expected str, got int", "lines[]: missing key 'qty'"]


def test_specs_are_found_where_configured_or_the_reason_is_given(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    missing = spec_file("acme", "openapi.json")
    assert not missing.found and str(tmp_path) in missing.reason and f"${ENV}" in missing.reason
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "openapi.json").write_text("{}")
    assert spec_file("acme", "openapi.json").path == tmp_path / "acme" / "openapi.json"
    monkeypatch.delenv(ENV)
    assert vendor_specs_dir().name == "vendor-specs" and vendor_specs_dir().parent.name == "shared"
