"""Customers and meters from CSV, JSON, JSONL and YAML; bad rows rejected with their fix."""

from __future__ import annotations

import pytest

from subledger.core.model import Customer, Meter, payload_hash, record_id

CUSTOMERS_CSV = """
    id,name,email,tax_id,currency,country,canonical_id,metadata.plan,metadata.segment
    acme,Acme Corp,Billing@Acme.COM,US-12-3456789,usd,us,cust-0001,enterprise,
    beta,"Beta, Inc.",,,EUR,de,,,smb
"""


def test_customers_csv(folder, read):
    folder.write("customers.csv", CUSTOMERS_CSV)
    result = read("customers")
    assert result.rejects == []
    acme, beta = result.records
    assert isinstance(acme, Customer)
    assert acme.id == record_id("cus", "files", "acme")
    assert (acme.system, acme.external_id, acme.name) == ("files", "acme", "Acme Corp")
    assert (acme.email, acme.email_domain) == ("Billing@Acme.COM", "acme.com")
    assert (acme.tax_id, acme.currency, acme.country, acme.canonical_hint) == (
        "US-12-3456789", "USD", "US", "cust-0001",
    )
    assert acme.attributes == {"plan": "enterprise"}
    assert acme.payload_hash == payload_hash({
        "id": "acme", "name": "Acme Corp", "email": "Billing@Acme.COM", "tax_id": "US-12-3456789",
        "currency": "usd", "country": "us", "canonical_id": "cust-0001", "metadata.plan": "enterprise",
        "metadata.segment": "",
    })
    assert acme.fetched_at.tzinfo is not None
    assert (beta.name, beta.email, beta.currency, beta.country, beta.attributes) == (
        "Beta, Inc.", None, "EUR", "DE", {"segment": "smb"},
    )


@pytest.mark.parametrize(("name", "text"), [
    ("customers.json", '[{"id": "acme", "name": "Acme Corp", "currency": "USD", "metadata": {"seats": 12.5}}]'),
    ("customers.jsonl", '{"id": "acme", "name": "Acme Corp", "currency": "USD", "metadata": {"seats": 12.5}}\n'),
    ("customers.yaml", "- id: acme\n  name: Acme Corp\n  currency: USD\n  metadata: {seats: 12.5}\n"),
    ("customers/eu/acme.json", '{"id": "acme", "name": "Acme Corp", "currency": "USD", "metadata": {"seats": 12.5}}'),
])
def test_customers_in_every_record_format(folder, read, name, text):
    folder.write(name, text)
    [acme] = read("customers").records
    assert (acme.external_id, acme.name, acme.currency) == ("acme", "Acme Corp", "USD")
    # A number in metadata stays exact, as decimal text.
    assert acme.attributes == {"seats": "12.5"}


def test_bad_customer_rows_are_rejected_and_the_rest_load(folder, read):
    folder.write("customers.csv", """
        id,name,email,currency,country
        ok1,One,,USD,US
        ,Nameless Id,,USD,US
        c3,,,USD,US
        c4,Four,not-an-email,USD,US
        c5,Five,,dollars,US
        c6,Six,,XAU,US
        c7,Seven,,USD,USA
        c8,Eight,,USD
        ok2,Two,,,
    """)
    result = read("customers")
    assert [c.external_id for c in result.records] == ["ok1", "ok2"]
    expected = {
        3: ("id", "id is missing", "fill in id on every row"),
        4: ("name", "name is missing", "fill in name on every row"),
        5: ("email", "email 'not-an-email' is not an email address", "billing@example.com"),
        6: ("currency", "currency 'dollars'", "use a code such as USD"),
        7: ("currency", "has no ISO 4217 minor-unit exponent", "three-letter ISO 4217 code"),
        8: ("country", "country 'USA' is not a two-letter country code", "ISO 3166-1 alpha-2"),
        9: (None, "the row has 4 fields but the header has 5", "one value per header column"),
    }
    assert len(result.rejects) == len(expected)
    for line, (field, reason, fix) in expected.items():
        reject = result.reject_at(line)
        assert (reject.stream, reject.location, reject.field) == ("customers", "customers.csv", field)
        assert reason in reject.reason
        assert fix in reject.fix
    assert result.reject_at(5).raw == "c4,Four,not-an-email,USD,US"


def test_an_unknown_csv_column_rejects_the_file_at_its_header(folder, read):
    folder.write("customers.csv", "id,name,emial\nacme,Acme,a@b.co\n")
    result = read("customers")
    assert result.records == []
    [reject] = result.rejects
    assert (reject.line, reject.field) == (1, "emial")
    assert reject.reason == "unknown column 'emial'; the file was not loaded"
    assert "or prefix it with metadata." in reject.fix


def test_an_unknown_json_field_is_rejected(folder, read):
    folder.write("customers.json", '[\n  {"id": "a", "name": "A"},\n  {"id": "b", "name": "B", "vat": "x"}\n]')
    result = read("customers")
    assert [c.external_id for c in result.records] == ["a"]
    reject = result.reject_at(3)
    assert (reject.field, reject.reason) == ("vat", "unknown field 'vat'")


def test_a_json_syntax_error_keeps_the_records_before_it(folder, read):
    folder.write("customers.json", '[\n  {"id": "a", "name": "A"},\n  {"id": "b", "name": "B",}\n]')
    result = read("customers")
    assert [c.external_id for c in result.records] == ["a"]
    [reject] = result.rejects
    assert reject.line == 3
    assert reject.reason.startswith("invalid JSON: Expecting property name")
    assert reject.reason.endswith("the file was not loaded from this line on")


def test_the_same_id_twice_loads_once_and_a_conflicting_one_is_rejected(folder, read):
    folder.write("customers/a.csv", "id,name\nacme,Acme\nbeta,Beta\n")
    folder.write("customers/b.csv", "id,name\nacme,Acme\nbeta,Beta GmbH\n")
    result = read("customers")
    assert [c.name for c in result.records] == ["Acme", "Beta"]
    [reject] = result.rejects
    assert (reject.location, reject.line, reject.field) == ("customers/b.csv", 3, "id")
    assert reject.reason == ("customer 'beta' was already read from customers/a.csv line 3 with different values; "
                             "this one was not loaded")


def test_a_row_that_is_not_utf8_is_rejected_and_the_rest_load(folder, read):
    folder.write("customers.csv", "id,name\nacme,Acme\ncafe,Caf\xe9\n".encode("latin-1"))
    result = read("customers")
    assert [c.external_id for c in result.records] == ["acme"]
    [reject] = result.rejects
    assert (reject.line, reject.reason, reject.fix) == (3, "the row is not valid UTF-8 (character 9)",
                                                        "save the file as UTF-8")
    assert reject.raw == "cafe,Caf\ufffd"


def test_meters(folder, read):
    folder.write("meters.yaml", """
        - key: api_calls
          name: API calls
          unit: call
        - key: active_users
          aggregation: unique_count
          unique_property: user_id
        - key: bad key
        - key: seats
          aggregation: unique_count
        - key: storage
          aggregation: average
    """)
    result = read("meters")
    api, users = result.records
    assert isinstance(api, Meter)
    assert (api.id, api.key, api.name, api.unit, api.aggregation) == (
        record_id("mtr", "files", "api_calls"), "api_calls", "API calls", "call", "sum",
    )
    assert (users.aggregation, users.unique_property, users.name) == ("unique_count", "user_id", "active_users")
    assert [(r.line, r.field) for r in result.rejects] == [(7, "key"), (8, "unique_property"), (10, "aggregation")]
    assert "sum, count, max, unique_count, latest" in result.rejects[2].fix


def test_a_yaml_boolean_where_text_belongs_says_to_quote_it(folder, read):
    folder.write("customers.yaml", "- id: fjord\n  name: Fjord AS\n  country: NO\n")
    [reject] = read("customers").rejects
    assert (reject.line, reject.field, reject.reason) == (1, "country", "country False is a boolean, not text")
    assert 'quote it ("NO"' in reject.fix
