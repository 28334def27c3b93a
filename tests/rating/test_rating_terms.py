"""The contract-terms model and file format: round trips, the published schema, bad terms."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from subledger.core.errors import ConfigError
from subledger.core.terms import (
    ContractDocument,
    ContractTerms,
    document_to_dict,
    load_document,
    load_terms,
    parse_json,
    parse_terms_text,
    parse_yaml,
    read_terms_file,
    terms_hash,
    terms_to_document,
)
from subledger.core.terms.schema import contract_file_schema, contract_file_schema_text

DOCS = Path(__file__).resolve().parents[2] / "docs"


def doc_example() -> str:
    """The full example contract in docs/contract-terms.md."""
    text = (DOCS / "contract-terms.md").read_text()
    match = re.search(r"```yaml\n(# contracts/acme-2026.yaml\n.*?)```", text, re.S)
    assert match, "docs/contract-terms.md lost its full example"
    return match.group(1)


MINIMAL = {
    "id": "acme-1",
    "customer": "acme",
    "currency": "USD",
    "start_date": "2026-01-01",
    "components": [{"type": "usage", "id": "api", "meter": "api_calls",
                    "price": {"model": "per_unit", "unit_price": "0.05"}}],
}


def terms_only(data: dict[str, Any]) -> dict[str, Any]:
    """The terms part of a contract file (no header), as Contract.terms holds it."""
    return {k: v for k, v in data.items() if k not in ("id", "customer", "name", "status")}


def problem(data: dict[str, Any], **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_document(data, **kwargs)
    return info.value


def with_component(component: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**MINIMAL, "components": [component], **fields}


def usage(price: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "usage", "id": "api", "meter": "api_calls", "price": price, **extra}


# --------------------------------------------------------------------------- schema


def test_checked_in_schema_is_the_generated_one() -> None:
    checked_in = (DOCS / "contract-terms.schema.json").read_text()
    assert checked_in == contract_file_schema_text(), (
        "docs/contract-terms.schema.json is stale; regenerate it with "
        "python -c 'from subledger.core.terms.schema import contract_file_schema_text as t; "
        "open(\"docs/contract-terms.schema.json\", \"w\").write(t())'"
    )


def test_documented_example_loads_and_validates_against_the_schema() -> None:
    document = load_document(parse_yaml(doc_example()))
    assert document.id == "acme-2026" and len(document.components) == 6
    jsonschema.Draft202012Validator(contract_file_schema()).validate(document_to_dict(document))


def test_schema_rejects_a_float_price_and_an_unknown_field() -> None:
    validator = jsonschema.Draft202012Validator(contract_file_schema())
    bad = json.loads(json.dumps(MINIMAL))
    bad["components"][0]["price"]["unit_price"] = 0.05
    bad["colour"] = "red"
    messages = " ".join(e.message for e in validator.iter_errors(bad))
    assert "0.05" in messages and "colour" in messages


# ----------------------------------------------------------------------- round trips


def test_yaml_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(doc_example())
    first = load_document(read_terms_file(path))
    again = load_document(parse_yaml(yaml.safe_dump(document_to_dict(first))))
    assert again == first


def test_json_file_round_trips_with_unquoted_decimals(tmp_path: Path) -> None:
    text = json.dumps(document_to_dict(load_document(parse_yaml(doc_example()))), indent=2)
    text = text.replace('"unit_price": "0.05"', '"unit_price": 0.05')  # a bare JSON number
    assert '"unit_price": 0.05' in text
    path = tmp_path / "acme.json"
    path.write_text(text)
    document = load_document(read_terms_file(path))
    compute = document.component("compute")
    assert compute.matrix[0].price.unit_price == Decimal("0.05")
    assert load_document(json.loads(json.dumps(document_to_dict(document)))) == document


def test_terms_document_for_the_store_round_trips_and_drops_the_header() -> None:
    document = load_document(parse_yaml(doc_example()))
    stored = terms_to_document(document)
    assert not {"id", "customer", "name", "status"} & set(stored)
    assert json.loads(json.dumps(stored)) == stored  # JSON-safe: decimals are strings
    assert stored["components"][0]["amount"] == "500.00"
    assert load_terms(stored) == document.terms()
    assert terms_hash(load_terms(stored)) == terms_hash(document.terms())


def test_decimals_keep_their_exact_text() -> None:
    terms = load_terms(terms_only(with_component(usage({"model": "per_unit", "unit_price": "0.00040"}))))
    assert terms_to_document(terms)["components"][0]["price"]["unit_price"] == "0.00040"


decimal_text = st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False).map(str)


@st.composite
def tier_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    bounds = sorted(draw(st.sets(st.integers(1, 10**7), min_size=0, max_size=5)))
    rows = [*bounds, None]
    return [{"up_to": b, "unit_price": draw(decimal_text), "flat_fee": draw(decimal_text)} for b in rows]


prices = st.one_of(
    st.builds(lambda p: {"model": "per_unit", "unit_price": p}, decimal_text),
    st.builds(lambda t: {"model": "graduated", "tiers": t}, tier_lists()),
    st.builds(lambda t: {"model": "volume", "tiers": t}, tier_lists()),
    st.builds(
        lambda size, price, rounding: {"model": "package", "package_size": size, "package_price": price,
                                       "rounding": rounding},
        st.integers(1, 1000), decimal_text, st.sampled_from(["up", "down"]),
    ),
    st.builds(
        lambda bps, fixed: {"model": "percentage", "basis_points": bps, "fixed_fee": fixed},
        decimal_text, decimal_text,
    ),
)


@settings(max_examples=60, deadline=None)
@given(price=prices, currency=st.sampled_from(["USD", "JPY", "KWD", "EUR"]),
       rounding=st.sampled_from(["half_up", "half_even", "down"]))
def test_any_valid_terms_round_trip_through_json_and_yaml(price: dict, currency: str, rounding: str) -> None:
    data = with_component(usage(price), currency=currency, rounding=rounding)
    document = load_document(data)
    dumped = document_to_dict(document)
    assert load_document(parse_json(json.dumps(dumped))) == document
    assert load_document(parse_yaml(yaml.safe_dump(dumped))) == document
    assert load_terms(terms_to_document(document)) == document.terms()


def test_contract_document_is_terms_plus_header() -> None:
    document = load_document(MINIMAL)
    assert isinstance(document, ContractTerms) and isinstance(document, ContractDocument)
    assert type(document.terms()) is ContractTerms
    assert document.terms().currency == "USD" and document.service_end is None


def test_currency_is_normalised_and_end_date_is_inclusive() -> None:
    terms = load_terms(terms_only({**MINIMAL, "currency": "usd", "end_date": "2026-12-31"}))
    assert terms.currency == "USD"
    assert terms.service_end.isoformat() == "2027-01-01"


def test_stripe_inf_marks_the_open_tier() -> None:
    terms = load_terms(terms_only(with_component(usage({"model": "graduated", "tiers": [
        {"up_to": 10, "unit_price": "1"}, {"up_to": "inf", "unit_price": "0.5"}]}))))
    assert terms.components[0].price.tiers[-1].up_to is None


# ------------------------------------------------------------------------- bad terms


def test_overlapping_tiers_name_path_value_and_fix() -> None:
    error = problem(with_component(usage({"model": "graduated", "tiers": [
        {"up_to": 10, "unit_price": "1"}, {"up_to": 10, "unit_price": "0.5"}, {"unit_price": "0.1"}]})))
    assert "components[0].price.tiers[1].up_to = '10'" in error.message
    assert "overlap" in error.message
    assert "ascending" in error.fix


def test_unsorted_tiers_are_refused() -> None:
    error = problem(with_component(usage({"model": "volume", "tiers": [
        {"up_to": 100, "unit_price": "1"}, {"up_to": 50, "unit_price": "0.5"}, {"unit_price": "0.1"}]})))
    assert "components[0].price.tiers[1].up_to = '50'" in error.message
    assert "below tiers[0].up_to 100" in error.message


def test_a_bounded_last_tier_and_an_open_middle_tier_are_refused() -> None:
    bounded = problem(with_component(usage({"model": "graduated", "tiers": [{"up_to": 10, "unit_price": "1"}]})))
    assert "tiers[0].up_to = '10'" in bounded.message and "null" in bounded.fix
    middle = problem(with_component(usage({"model": "graduated", "tiers": [
        {"unit_price": "1"}, {"up_to": 10, "unit_price": "1"}, {"unit_price": "1"}]})))
    assert "tiers[0].up_to" in middle.message and "only the last tier may be open" in middle.fix


def test_unknown_meter_against_a_catalogue() -> None:
    error = problem(MINIMAL, meters={"storage_gb", "seats"})
    assert "components[0].meter = 'api_calls'" in error.message
    assert "seats, storage_gb" in error.fix
    assert load_document(MINIMAL, meters={"api_calls"}).components[0].meter == "api_calls"


def test_negative_price() -> None:
    error = problem(with_component(usage({"model": "per_unit", "unit_price": "-0.05"})))
    assert "components[0].price.unit_price = '-0.05'" in error.message
    assert "negative" in error.message and "discount" in error.fix


@pytest.mark.parametrize(("currency", "said"), [("XAU", "no ISO 4217 minor-unit exponent"),
                                                ("ZZZ", "no ISO 4217 minor-unit exponent"),
                                                ("DOLLARS", "not a three-letter")])
def test_currency_without_an_exponent(currency: str, said: str) -> None:
    error = problem({**MINIMAL, "currency": currency})
    assert f"currency = '{currency}'" in error.message and said in error.message
    assert "USD" in error.fix


def test_a_float_is_refused_with_the_way_out() -> None:
    error = problem(with_component(usage({"model": "per_unit", "unit_price": 0.05})))
    assert "components[0].price.unit_price = 0.05" in error.message
    assert "binary float" in error.message and "parse_terms_text" in error.fix


def test_money_with_too_many_decimals_for_the_currency() -> None:
    error = problem({**MINIMAL, "currency": "JPY", "commitments": [
        {"id": "min", "kind": "minimum", "amount": "100.5"}]})
    assert "commitments[0].amount = '100.5'" in error.message and "0 decimal places for JPY" in error.message


def test_unknown_field_is_named_with_its_path() -> None:
    error = problem(with_component(usage({"model": "per_unit", "unit_price": "1", "unit_prise": "2"})))
    assert "components[0].price.unit_prise" in error.message
    assert "spelling" in error.fix


def test_every_problem_is_reported_at_once() -> None:
    error = problem({**MINIMAL, "currency": "XAU", "start_date": "soon"})
    assert error.message.startswith("contract file: 2 problems")
    assert "start_date = 'soon'" in error.message and "YYYY-MM-DD" in error.fix


@pytest.mark.parametrize(
    ("change", "path", "said"),
    [
        ({"components": [usage({"model": "per_unit", "unit_price": "1"}),
                         usage({"model": "per_unit", "unit_price": "2"})]},
         "components[1].id = 'api'", "already used by components[0].id"),
        ({"discounts": [{"id": "d", "percent": "10", "applies_to": "nope"}]},
         "discounts[0].applies_to = 'nope'", "no component has this id"),
        ({"discounts": [{"id": "d", "percent": "110"}]}, "discounts[0]", "above 100"),
        ({"end_date": "2025-12-31"}, "end_date = '2025-12-31'", "before start_date"),
        ({"credits": [{"id": "g", "amount": "10", "units": "5"}]}, "credits[0]", "exactly one of amount"),
        ({"credits": [{"id": "g", "units": "5", "meter": "other"}]}, "credits[0].meter = 'other'",
         "no usage component"),
        ({"commitments": [{"id": "m", "kind": "minimum", "amount": "1", "per": "term"}]},
         "commitments[0].per = 'term'", "needs a term with an end_date"),
        ({"commitments": [{"id": "m", "kind": "maximum", "amount": "1", "per": "term"}]},
         "commitments[0]", "maximum per term"),
        ({"components": [usage({"model": "percentage", "percent": "1", "basis_points": "100"})]},
         "components[0].price", "exactly one of percent and basis_points"),
        ({"components": [usage({"model": "per_unit", "unit_price": "1"}, aggregation="unique_count")]},
         "components[0]", "needs unique_property"),
        ({"components": [usage({"model": "package", "package_size": 0, "package_price": "1"})]},
         "components[0].price.package_size = 0", "not above zero"),
        ({"components": [{"type": "usage", "id": "c", "meter": "m", "dimensions": ["region"],
                          "matrix": [{"values": {"zone": "eu"}, "price": {"model": "per_unit", "unit_price": "1"}}]}]},
         "components[0].matrix[0].values", "differ from dimensions"),
        ({"components": [{"type": "subscription", "id": "x"}]}, "components[0]", "does not match"),
    ],
)
def test_bad_terms_are_refused_with_path_and_reason(change: dict, path: str, said: str) -> None:
    error = problem({**MINIMAL, **change})
    assert path in error.message
    assert said in error.message
    assert error.fix


def test_terms_refuse_header_fields() -> None:
    # Contract.terms holds the terms only; a header there is a sign of a mix-up.
    with pytest.raises(ConfigError, match=r"id = 'acme-1': Extra inputs"):
        load_terms(MINIMAL)


def test_not_a_mapping_and_broken_yaml_or_json() -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_terms(["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"acme.yaml:2:\d+: not valid YAML"):
        parse_terms_text("id: a\n  bad: [1,\n", source="acme.yaml")
    with pytest.raises(ConfigError, match=r"acme.json:1:\d+: not valid JSON"):
        parse_terms_text('{"id": ', source="acme.json")
    with pytest.raises(ConfigError, match="cannot read"):
        read_terms_file("/nonexistent/contract.yaml")


def test_yaml_numbers_are_exact_decimals() -> None:
    data = parse_yaml("a: 0.1\nb: 3\nc: 1_000.50\nd: '0.2'\n")
    assert data == {"a": Decimal("0.1"), "b": 3, "c": Decimal("1000.50"), "d": "0.2"}
    assert parse_json('{"a": 0.1, "b": 3}') == {"a": Decimal("0.1"), "b": 3}


def test_contract_ids_are_free_text_but_component_ids_are_keys() -> None:
    assert load_document({**MINIMAL, "id": "ACME/2026 order form"}).id == "ACME/2026 order form"
    assert "remove the spaces" in problem({**MINIMAL, "id": " acme "}).fix
    bad_component = problem(with_component(usage({"model": "per_unit", "unit_price": "1"}) | {"id": "api calls"}))
    assert "components[0].id = 'api calls'" in bad_component.message and "letters, digits" in bad_component.fix
