"""Credit grant files: paid and promotional credit, in money or in units, with price and breakage."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from subledger.core.model import CreditGrant, record_id

GRANTS_CSV = """
    id,customer,contract,currency,amount,units,meter,price,category,priority,effective_at,expires_at,breakage,expected_breakage_rate,metadata.po
    cg_soylent,soylent,soylent-2026,USD,1200.00,,,1000.00,paid,0,2026-01-01,2027-01-01T00:00:00Z,proportional,0.15,PO-77
    cg_acme_face,acme,acme-2026,USD,500,,,,,,2026-02-01T09:30:00-05:00,,at_expiry,,
    cg_acme_calls,acme,acme-2026,USD,,100000,api_calls,150.00,paid,2,2026-01-01,2026-12-31,,,
    cg_promo,globex,,,,5000,api_calls,,promotional,-1,2026-03-01,2026-04-01,,,
"""

GRANTS_JSON = """
    [
      {"id": "cg_soylent", "customer": "soylent", "contract": "soylent-2026", "currency": "USD",
       "amount": "1200.00", "price": 1000.00, "category": "paid", "priority": 0,
       "effective_at": "2026-01-01", "expires_at": "2027-01-01T00:00:00Z",
       "breakage": "proportional", "expected_breakage_rate": 0.15, "metadata": {"po": "PO-77"}},
      {"id": "cg_acme_face", "customer": "acme", "contract": "acme-2026", "currency": "usd", "amount": 500,
       "effective_at": "2026-02-01T09:30:00-05:00", "breakage": "at_expiry"},
      {"id": "cg_acme_calls", "customer": "acme", "contract": "acme-2026", "currency": "USD",
       "units": 100000, "meter": "api_calls", "price": "150.00", "priority": "2",
       "effective_at": "2026-01-01", "expires_at": "2026-12-31"},
      {"id": "cg_promo", "customer": "globex", "units": "5000", "meter": "api_calls", "category": "promotional",
       "priority": -1, "effective_at": "2026-03-01", "expires_at": "2026-04-01"}
    ]
"""


def _fields(grant: CreditGrant) -> tuple:
    return (grant.customer_external_id, grant.contract_external_id, grant.category, grant.currency,
            grant.amount_minor, grant.units, grant.meter, grant.price_minor, grant.cost_basis, grant.priority,
            grant.effective_at, grant.expires_at, grant.breakage, grant.expected_breakage_rate)


EXPECTED = {
    # $1,200 of credit bought for $1,000, 15% expected to go unused: 1000/1200 is not an
    # exact decimal, so the cost basis is left to price_minor.
    "cg_soylent": ("soylent", "soylent-2026", "paid", "USD", 120000, None, None, 100000, None, 0,
                   datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "proportional",
                   Decimal("0.15")),
    # Paid at face value (price defaults to the amount): one dollar paid per dollar of credit.
    "cg_acme_face": ("acme", "acme-2026", "paid", "USD", 50000, None, None, 50000, Decimal(1), 0,
                     datetime(2026, 2, 1, 14, 30, tzinfo=UTC), None, "at_expiry", None),
    # 100,000 calls bought for $150.00: 0.0015 dollars a call.
    "cg_acme_calls": ("acme", "acme-2026", "paid", "USD", None, Decimal(100000), "api_calls", 15000,
                      Decimal("0.0015"), 2, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC),
                      None, None),
    # Promotional credit has no price and no currency of its own (units), and costs nothing.
    "cg_promo": ("globex", None, "promotional", None, None, Decimal(5000), "api_calls", None, Decimal(0), -1,
                 datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC), None, None),
}


@pytest.mark.parametrize(("name", "text"), [("credit_grants.csv", GRANTS_CSV),
                                            ("credit_grants/2026.json", GRANTS_JSON)])
def test_credit_grants_map_exactly_from_csv_and_json(folder, read, name, text):
    folder.write(name, text)
    result = read("credit_grants")
    assert result.rejects == []
    grants = {g.external_id: g for g in result.records}
    assert list(grants) == list(EXPECTED)
    for external_id, expected in EXPECTED.items():
        grant = grants[external_id]
        assert isinstance(grant, CreditGrant)
        assert (grant.id, grant.system) == (record_id("cg", "files", external_id), "files")
        assert grant.payload_hash
        assert _fields(grant) == expected, external_id
    assert isinstance(grants["cg_soylent"].expected_breakage_rate, Decimal)
    assert result.state["files"]


def test_a_yaml_grant_and_a_second_read_that_loads_nothing(folder, read):
    folder.write("credit_grants.yaml", """
        - id: cg_1
          customer: acme
          currency: EUR
          amount: 99.90
          effective_at: 2026-01-01
    """)
    first = read("credit_grants")
    [grant] = first.records
    assert (grant.amount_minor, grant.price_minor, grant.currency, grant.category) == (9990, 9990, "EUR", "paid")
    assert read("credit_grants", first.state).records == []


BAD_GRANTS = """
    id,customer,currency,amount,units,meter,price,category,priority,effective_at,expires_at,breakage,expected_breakage_rate
    ok,acme,USD,100.00,,,,,,2026-01-01,,,
    ,acme,USD,100.00,,,,,,2026-01-01,,,
    a,,USD,100.00,,,,,,2026-01-01,,,
    b,acme,USD,100.00,,,,,,,,,
    c,acme,USD,100.00,500,api_calls,,,,2026-01-01,,,
    d,acme,USD,,,,,,,2026-01-01,,,
    e,acme,USD,100.001,,,,,,2026-01-01,,,
    f,acme,JPY,100.5,,,,,,2026-01-01,,,
    g,acme,,100.00,,,,,,2026-01-01,,,
    h,acme,USD,100.00,,,,,,2026-01-01,,at_expiry,0.1
    i,acme,USD,100.00,,,,,,2026-01-01,,,0.1
    j,acme,USD,100.00,,,,,,2026-01-01,,proportional,
    k,acme,USD,100.00,,,,,,2026-01-01,,proportional,1.5
    l,acme,USD,100.00,,,10.00,promotional,,2026-01-01,,,
    m,acme,USD,100.00,,,,promotional,,2026-01-01,,at_expiry,
    n,acme,USD,,500,api_calls,,paid,,2026-01-01,,,
    o,acme,,,500,api_calls,10.00,paid,,2026-01-01,,,
    p,acme,USD,,500,,10.00,paid,,2026-01-01,,,
    q,acme,USD,100.00,,api_calls,,,,2026-01-01,,,
    r,acme,USD,100.00,,,,,1.5,2026-01-01,,,
    s,acme,USD,100.00,,,,,,2026-03-01,2026-02-01,,
    t,acme,USD,-100.00,,,,,,2026-01-01,,,
    u,acme,USD,100.00,,,0,paid,,2026-01-01,,,
    v,acme,USD,100.00,,,,gift,,2026-01-01,,,
    w,acme,USD,100.00,,,,,,2026-01-01T00:00:00,,,
    x,acme,USD,100.00,,,,,,2026-01-01,,sometimes,
"""


def test_each_bad_grant_is_rejected_on_its_own_with_file_line_field_and_fix(folder, read):
    folder.write("credit_grants.csv", BAD_GRANTS)
    result = read("credit_grants")
    assert [g.external_id for g in result.records] == ["ok"]  # the rest of the file still loads
    expected = {
        3: ("id", "id is missing", "fill in id"),
        4: ("customer", "customer is missing", "fill in customer"),
        5: ("effective_at", "effective_at is missing", "write effective_at like"),
        6: ("units", "amount and units are both given", "keep one of them"),
        7: ("amount", "neither amount nor units is given", "write amount"),
        8: ("amount", "amount '100.001' has more than 2 decimal places for USD", "round amount to 2"),
        9: ("amount", "amount '100.5' has more than 0 decimal places for JPY", "round amount to 0"),
        10: ("currency", "currency is missing for a money grant", "write the currency"),
        11: ("expected_breakage_rate", "expected_breakage_rate is given but breakage is not proportional",
             "set breakage to proportional, or remove expected_breakage_rate"),
        12: ("expected_breakage_rate", "expected_breakage_rate is given but breakage is not proportional",
             "set breakage to proportional"),
        13: ("expected_breakage_rate", "expected_breakage_rate is missing for proportional breakage",
             "from 0 to 1"),
        14: ("expected_breakage_rate", "expected_breakage_rate 1.5 is not between 0 and 1", "from 0 to 1"),
        15: ("price", "a promotional grant has no price", "remove price"),
        16: ("breakage", "breakage is given for a promotional grant", "only paid credit has breakage"),
        17: ("price", "price is missing for a paid grant of 500 units", "write price"),
        18: ("currency", "currency is missing for the price", "write the currency"),
        19: ("meter", "meter is missing for a unit grant", "write the meter key"),
        20: ("meter", "meter is given for a money grant", "remove meter"),
        21: ("priority", "priority '1.5' is not a whole number", "whole number"),
        22: ("expires_at", "expires_at 2026-02-01T00:00:00+00:00 is not after effective_at", "correct expires_at"),
        23: ("amount", "amount -100.00 is not positive", "positive amount"),
        24: ("price", "price 0.00 is not positive for a paid grant", "category promotional"),
        25: ("category", "category 'gift' is not one of paid, promotional", "write one of"),
        26: ("effective_at", "has no UTC offset", "add the offset"),
        27: ("breakage", "breakage 'sometimes' is not one of at_expiry, proportional", "write one of"),
    }
    assert sorted(r.line for r in result.rejects) == sorted(expected)
    for line, (field, reason, fix) in expected.items():
        reject = result.reject_at(line)
        assert (reject.stream, reject.location, reject.field) == ("credit_grants", "credit_grants.csv", field), line
        assert reason in reject.reason, (line, reject.reason)
        assert fix in reject.fix, (line, reject.fix)
        assert reject.raw.startswith(BAD_GRANTS.split("\n")[line].strip()[:2])


def test_bad_json_grants_name_the_field_and_the_rest_load(folder, read):
    folder.write("credit_grants.jsonl",
                 '{"id": "ok", "customer": "acme", "currency": "USD", "amount": 5, "effective_at": "2026-01-01"}\n'
                 '{"id": "a", "customer": "acme", "currency": "USD", "amount": 5, "effective_at": "2026-01-01", '
                 '"expiry": "2026-02-01"}\n'
                 '{"id": "b", "customer": "acme", "currency": "USD", "amount": 5, "units": 1, '
                 '"effective_at": "2026-01-01"}\n'
                 '{"id": "c", "customer": "acme", "currency": "USD", "amount": 5, "effective_at": "2026-01-01", '
                 '"metadata": "PO-1"}\n')
    result = read("credit_grants")
    assert [g.external_id for g in result.records] == ["ok"]
    assert [(r.line, r.field) for r in result.rejects] == [(2, "expiry"), (3, "units"), (4, "metadata")]
    assert "put anything else in metadata" in result.rejects[0].fix


def test_a_csv_header_with_an_unknown_column_rejects_the_file_with_the_fix(folder, read):
    folder.write("credit_grants.csv", "id,customer,amount,valid_from\ncg,acme,1.00,2026-01-01\n")
    [reject] = read("credit_grants").rejects
    assert (reject.line, reject.field) == (1, "valid_from")
    assert "unknown column 'valid_from'" in reject.reason and "effective_at" in reject.fix
