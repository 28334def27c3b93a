"""Contract files (YAML and JSON, one or many per file) to Contract records with exact terms."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from subledger.core.model import Contract, record_id
from subledger.core.terms import load_terms, terms_hash

ACME = """
    id: acme-2026
    customer: acme
    name: Acme 2026 order form
    currency: USD
    start_date: 2026-01-01
    end_date: 2026-12-31
    components:
      - type: flat_fee
        id: platform
        amount: 500.00
      - type: usage
        id: api_calls
        meter: api_calls
        price:
          model: graduated
          tiers:
            - {up_to: 1000, unit_price: 0.10}
            - {up_to: 10000, unit_price: 0.05}
            - {up_to: null, unit_price: 0.01}
"""


def test_a_yaml_contract_keeps_every_number_exact(folder, read):
    folder.write("contracts/acme-2026.yaml", ACME)
    result = read("contracts")
    assert result.rejects == []
    [contract] = result.records
    assert isinstance(contract, Contract)
    assert contract.id == record_id("ctr", "files", "acme-2026")
    assert (contract.external_id, contract.customer_external_id, contract.name, contract.status) == (
        "acme-2026", "acme", "Acme 2026 order form", "active",
    )
    assert (contract.currency, contract.start_date, contract.end_date) == ("USD", date(2026, 1, 1), date(2026, 12, 31))
    # Unquoted 0.10 in YAML is the decimal 0.10, stored as decimal text.
    tiers = contract.terms["components"][1]["price"]["tiers"]
    assert [t["unit_price"] for t in tiers] == ["0.10", "0.05", "0.01"]
    terms = load_terms(contract.terms)
    assert terms.components[0].amount == Decimal("500.00")
    assert contract.terms_hash == terms_hash(terms)
    assert "id" not in contract.terms and "customer" not in contract.terms


def test_many_contracts_per_file_as_a_list_documents_or_json(folder, read):
    folder.write("contracts/list.yaml", """
        - id: c1
          customer: a
          currency: USD
          start_date: 2026-01-01
          components: [{type: flat_fee, id: f, amount: 1}]
        - id: c2
          customer: b
          currency: EUR
          start_date: 2026-02-01
          components: [{type: flat_fee, id: f, amount: 2}]
    """)
    folder.write("contracts/docs.yml", """
        id: c3
        customer: c
        currency: JPY
        start_date: 2026-01-01
        components: [{type: flat_fee, id: f, amount: 1000}]
        ---
        id: c4
        customer: d
        currency: KWD
        start_date: 2026-01-01
        components: [{type: flat_fee, id: f, amount: 1.125}]
    """)
    folder.write("contracts.json", '[{"id": "c5", "customer": "e", "currency": "USD", "start_date": "2026-01-01", '
                 '"components": [{"type": "usage", "id": "u", "meter": "m", '
                 '"price": {"model": "per_unit", "unit_price": 0.0004}}]}]')
    result = read("contracts")
    assert result.rejects == []
    assert [(c.external_id, c.currency) for c in result.records] == [
        ("c5", "USD"), ("c3", "JPY"), ("c4", "KWD"), ("c1", "USD"), ("c2", "EUR"),
    ]
    assert result.records[0].terms["components"][0]["price"]["unit_price"] == "0.0004"


def test_an_invalid_contract_is_rejected_at_the_line_of_its_bad_field(folder, read):
    folder.write("contracts/bad.yaml", """
        - id: good
          customer: a
          currency: USD
          start_date: 2026-01-01
          components: [{type: flat_fee, id: f, amount: 1}]
        - id: bad
          customer: a
          currency: USD
          start_date: 2026-01-01
          components:
            - type: usage
              id: api
              meter: api_calls
              price:
                model: per_unit
                unit_price: -0.5
    """)
    result = read("contracts")
    assert [c.external_id for c in result.records] == ["good"]
    [reject] = result.rejects
    assert (reject.stream, reject.location) == ("contracts", "contracts/bad.yaml")
    assert reject.line == 16  # the unit_price line
    assert reject.field == "components[0].price.unit_price"
    assert "components[0].price.unit_price" in reject.reason and "-0.5 is negative" in reject.reason
    assert "model a reduction as a discount" in reject.fix
    assert reject.raw.startswith("id: bad")


def test_contract_header_errors_and_misplaced_formats(folder, read):
    folder.write("contracts/a.yaml", "id: x\ncurrency: USD\nstart_date: 2026-01-01\n"
                 "components: [{type: flat_fee, id: f, amount: 1}]\n")
    folder.write("contracts/b.yaml", "id: [unclosed\n")
    folder.write("contracts/c.json", '"just a string"')
    result = read("contracts")
    assert result.records == []
    a, b, c = sorted(result.rejects, key=lambda r: r.location)
    assert (a.line, a.field) == (1, "customer")
    assert "customer" in a.reason and a.fix == "add the field"
    assert b.location == "contracts/b.yaml" and b.reason.startswith("invalid YAML")
    assert c.reason == "the record is a str, not an object"


def test_a_contract_csv_is_refused(folder, read):
    folder.write("contracts.json", "[]")
    result = read("contracts", contracts=("contracts*.json", "contracts*.csv"))
    assert result.rejects == []
    folder.write("contracts.csv", "id,customer\nx,y\n")
    [reject] = read("contracts", contracts=("contracts*.csv",)).rejects
    assert reject.reason == "contracts cannot be written as CSV; the file was not loaded"
