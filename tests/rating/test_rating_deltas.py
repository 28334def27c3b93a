"""Late usage for an invoiced period: a delta for the difference, never a second full charge."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rating_support import make_terms, rate_one, unit_usage

from subledger.core.rating import delta_lines, delta_movements
from subledger.core.rating.lines import MINIMUM_TRUE_UP, USAGE

TERMS = make_terms(
    [{"type": "flat_fee", "id": "fee", "amount": "50"}, unit_usage({"model": "per_unit", "unit_price": "1"})],
    commitments=[{"id": "min", "kind": "minimum", "amount": "100"}],
)


def test_late_usage_adds_only_the_extra_amount() -> None:
    invoiced = rate_one(TERMS, {"u": 30})  # 50 + 30 + true-up 20 = 100
    rerated = rate_one(TERMS, {"u": 80})  # 50 + 80 = 130
    deltas = delta_lines(rerated.lines, invoiced.lines)
    assert [(d.kind, d.quantity, d.amount) for d in deltas] == [
        (USAGE, Decimal(50), 50_00),
        (MINIMUM_TRUE_UP, -1, -20_00),  # the true-up is no longer owed
    ]
    assert invoiced.total + sum(d.amount for d in deltas) == rerated.total == 130_00
    assert deltas[0].key == "usage:u:2026-03-01:delta:3000:8000"
    assert dict(deltas[0].detail)["invoiced_quantity"] == "30"


def test_rerunning_gives_the_same_delta_and_no_late_usage_gives_none() -> None:
    invoiced = rate_one(TERMS, {"u": 120})
    rerated = rate_one(TERMS, {"u": 121})
    assert delta_lines(rerated.lines, invoiced.lines) == delta_lines(rerated.lines, invoiced.lines)
    assert delta_lines(invoiced.lines, invoiced.lines) == []


def test_invoiced_amounts_by_key_are_enough() -> None:
    invoiced = rate_one(TERMS, {"u": 120})
    rerated = rate_one(TERMS, {"u": 125})
    amounts = {line.key: line.amount for line in invoiced.lines}
    [delta] = delta_lines(rerated.lines, amounts)
    assert (delta.kind, delta.amount) == (USAGE, 5_00)
    with pytest.raises(ValueError, match="pass the invoiced RatedLine"):
        delta_lines(rerated.lines, {**amounts, "usage:gone:2026-03-01": 100})


def test_a_line_first_seen_late_comes_through_whole() -> None:
    invoiced = rate_one(TERMS, {"u": 30})
    without_fee = [line for line in invoiced.lines if line.component != "fee"]
    deltas = delta_lines(rate_one(TERMS, {"u": 30}).lines, without_fee)
    assert [(d.component, d.amount, d.key) for d in deltas] == [("fee", 50_00, "flat_fee:fee:2026-03-01")]


def test_credit_movements_delta() -> None:
    terms = make_terms([unit_usage({"model": "per_unit", "unit_price": "1"})], credits=[{"id": "g", "amount": "100"}])
    invoiced = rate_one(terms, {"u": 30})
    rerated = rate_one(terms, {"u": 45})
    moves = delta_movements(rerated.movements, invoiced.movements)
    assert [(m.kind, m.amount_minor) for m in moves] == [("draw_down", -15_00)]
    assert moves[0].entry_key.endswith(":delta:-3000:-4500")
    assert delta_movements(invoiced.movements, invoiced.movements) == []
