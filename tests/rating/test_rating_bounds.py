"""Rating's bounds: contract dates, the back-billing horizon, periods, amounts and usage.

Issue 15 failure C: ``end_date: 9999-12-31`` crashed rating with an OverflowError, a
contract starting ``0001-01-01`` planned 24,303 invoices, ``subledger rate --period
9999-12`` (or ``0000-01``) was an internal error, a quantity of ``1e999999`` stopped every
later rating with InvalidOperation and ``1e30`` overflowed the 64-bit money columns. Each
is now a clear error naming the fix (docs/rating.md#bounds).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from subledger.cli import app
from subledger.core.connector import UsageEventIn
from subledger.core.errors import ConfigError, FailureKind, classify
from subledger.core.rating import RatingBoundsError, aggregate_events, compile_terms, rate_through
from subledger.core.rating.periods import MAX_PERIODS, schedule, select_period
from subledger.core.terms import load_document, load_terms, parse_terms_text, read_terms_file

CONTRACT = """\
id: c1
customer: acme
currency: USD
start_date: {start}
{end}components:
  - {{type: flat_fee, id: platform, amount: "100.00"}}
  - type: usage
    id: api
    meter: api_calls
    price: {price}
"""


def contract(start: str = "2026-01-01", end: str | None = "2026-12-31", price: str = "{model: per_unit, "
             "unit_price: \"0.002\"}") -> str:
    return CONTRACT.format(start=start, end=f"end_date: {end}\n" if end else "", price=price)


def terms_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load_document(parse_terms_text(text, source="c.yaml"))
    return err.value


@pytest.mark.parametrize(("start", "end", "field"), [
    ("2026-01-01", "9999-12-31", "end_date"), ("0001-01-01", None, "start_date"),
    ("1999-12-31", "2026-12-31", "start_date"), ("2026-01-01", "2101-01-01", "end_date"),
])
def test_contract_dates_outside_2000_to_2100_are_refused_with_the_fix(start: str, end: str | None,
                                                                        field: str) -> None:
    error = terms_error(contract(start, end))
    assert f"{field} = " in error.message and "2000-01-01 to 2100-12-31" in error.message
    assert error.fix and "2000-01-01 to 2100-12-31" in error.fix


def test_dates_inside_the_terms_are_bounded_too() -> None:
    text = contract() + "credits: [{id: cr, amount: '10.00', expires: 9999-01-01}]\n"
    assert "credits[0].expires" in terms_error(text).message
    text = contract() + "discounts: [{id: d, percent: '10', starts: 1970-01-01}]\n"
    assert "discounts[0].starts" in terms_error(text).message


def test_the_edges_of_the_range_are_accepted_and_rated() -> None:
    document = load_document(parse_terms_text(contract("2000-01-01", "2100-12-31"), source="c.yaml"))
    plan = compile_terms(document, contract_id="c1", system="files")
    periods = plan.periods()
    assert len(periods) == MAX_PERIODS == 1212
    assert periods[0].start == date(2000, 1, 1) and periods[-1].end == date(2101, 1, 1)


def test_an_open_contract_from_2000_rates_at_most_the_horizon_quickly() -> None:
    document = load_document(parse_terms_text(contract("2000-01-01", None), source="c.yaml"))
    plan = compile_terms(document, contract_id="c1", system="files")
    assert len(plan.periods(until=date(9999, 12, 31))) == MAX_PERIODS  # never past 2100-12
    started = time.monotonic()
    period = select_period(plan.schedule, "2100-12")
    rated = rate_through(plan, period, {})
    assert rated.total == 10_000 and time.monotonic() - started < 10


def test_schedule_refuses_dates_the_terms_would_refuse() -> None:
    # Terms built without validation (or stored before the bounds) still cannot overflow.
    with pytest.raises(ConfigError, match="end_date 9999-12-31"):
        schedule(date(2026, 1, 1), date(9999, 12, 31), 1, None)
    with pytest.raises(ConfigError, match="start_date 0001-01-01"):
        schedule(date(1, 1, 1), None, 1, None)


@pytest.mark.parametrize("selector", ["9999-12", "0000-01", "1999-12", "2101-01", "9999-12-31", "0001-01-01"])
def test_period_selectors_outside_the_range_are_a_clear_error(selector: str) -> None:
    grid = schedule(date(2026, 1, 1), None, 1, None)
    with pytest.raises(ConfigError, match="outside the dates subledger rates") as err:
        select_period(grid, selector)
    assert err.value.fix


def rate_cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["rate", *args])


@pytest.mark.parametrize("period", ["9999-12", "0000-01", "2026-13", "2026-02-30", "march"])
def test_subledger_rate_with_a_bad_period_is_a_config_error_not_an_internal_error(tmp_path: Path,
                                                                                  period: str) -> None:
    (tmp_path / "c.yaml").write_text(contract())
    (tmp_path / "u.jsonl").write_text("")
    result = rate_cli("--contract", str(tmp_path / "c.yaml"), "--usage", str(tmp_path / "u.jsonl"),
                      "--period", period)
    assert isinstance(result.exception, ConfigError), result.exception
    assert classify(result.exception) is FailureKind.CONFIG


def test_subledger_rate_refuses_a_contract_with_a_key_twice_or_bad_bytes(tmp_path: Path) -> None:
    (tmp_path / "dup.yaml").write_text(contract().replace("currency: USD\n", "currency: USD\ncurrency: EUR\n"))
    with pytest.raises(ConfigError, match=r"dup.yaml:4:1: .*'currency' appears twice") as err:
        read_terms_file(tmp_path / "dup.yaml")
    assert "keep one 'currency'" in (err.value.fix or "")
    (tmp_path / "bytes.yaml").write_bytes(contract().encode().replace(b"acme", b"\xffcme"))
    with pytest.raises(ConfigError, match=r"bytes.yaml:2: byte \d+ is not UTF-8"):
        read_terms_file(tmp_path / "bytes.yaml")
    (tmp_path / "dup.json").write_text('{"id": "c1", "id": "c2"}')
    with pytest.raises(ConfigError, match="'id' appears twice"):
        read_terms_file(tmp_path / "dup.json")


@pytest.mark.parametrize(("field", "value"), [
    ("unit_price", '"1e30"'), ("unit_price", "1000000000000000000000000000000"),
    ("unit_price", '"0.0000000000000000000000000000001"'), ("unit_price", '"' + "1" * 100 + '"'),
])
def test_prices_are_bounded_numbers(field: str, value: str) -> None:
    error = terms_error(contract(price=f"{{model: per_unit, {field}: {value}}}"))
    assert "components[1].price.unit_price" in error.message


def test_money_in_the_terms_stays_below_10_to_the_15_minor_units() -> None:
    assert "components[0].amount" in terms_error(contract().replace('"100.00"', '"10000000000000.00"')).message
    ok = load_terms({"currency": "USD", "start_date": "2026-01-01", "components": [
        {"type": "flat_fee", "id": "p", "amount": "9999999999999.99"}]})
    assert ok.components[0].amount == Decimal("9999999999999.99")
    text = contract() + "commitments: [{id: m, kind: minimum, amount: '10000000000000'}]\n"
    assert "commitments[0].amount" in terms_error(text).message


def usage(quantity: str) -> list[UsageEventIn]:
    return [UsageEventIn("e1", "acme", "api_calls", Decimal(quantity), datetime(2026, 3, 5, tzinfo=UTC), {}, "h")]


PRICES = [
    '{model: per_unit, unit_price: "0.002"}',
    '{model: graduated, tiers: [{up_to: 1000, unit_price: "0.01"}, {up_to: null, unit_price: "0.001"}]}',
    '{model: volume, tiers: [{up_to: 1000, unit_price: "0.01"}, {up_to: null, unit_price: "0.001"}]}',
    '{model: package, package_size: 100, package_price: "2.00"}',
    '{model: percentage, percent: "2.9", fixed_fee: "0.30"}',
]


@pytest.mark.parametrize("price", PRICES)
@pytest.mark.parametrize("quantity", ["1e999999", "-1e999999", "1e30", "123456789012345678901234567890"])
def test_usage_no_bounded_amount_can_hold_is_a_rating_bounds_error(price: str, quantity: str) -> None:
    # Events stored before the bounds were enforced (or by a connector without them).
    document = load_document(parse_terms_text(contract(price=price), source="c.yaml"))
    plan = compile_terms(document, contract_id="c1", system="files")
    period = select_period(plan.schedule, "2026-03")
    queries = [q for p in plan.periods(until=period.start) for q in plan.usage_queries(p)]
    try:
        rated = rate_through(plan, period, aggregate_events(usage(quantity), queries))
    except RatingBoundsError as exc:
        assert "c1" in exc.message and exc.fix
        assert classify(exc) is FailureKind.CONFIG
    else:  # a negative aggregate rates as zero
        assert quantity.startswith("-") and abs(rated.total) < 10**15


def test_a_line_just_below_the_money_bound_rates_and_one_above_is_refused() -> None:
    price = '{model: per_unit, unit_price: "1"}'
    document = load_document(parse_terms_text(contract(price=price), source="c.yaml"))
    plan = compile_terms(document, contract_id="c1", system="files")
    period = select_period(plan.schedule, "2026-03")
    queries = [q for p in plan.periods(until=period.start) for q in plan.usage_queries(p)]
    rated = rate_through(plan, period, aggregate_events(usage("9999999999999.99"), queries))
    assert max(line.amount for line in rated.lines) == 999_999_999_999_999
    with pytest.raises(RatingBoundsError, match="10\\^15 minor units"):
        rate_through(plan, period, aggregate_events(usage("10000000000000"), queries))
