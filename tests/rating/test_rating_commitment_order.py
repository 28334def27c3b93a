"""Caps first, then minimums measured on the spend after the caps (issue 14, item 4).

The rule (docs/pricing/commitments.md): every cap is measured on the spend before any
commitment line; a minimum is then measured on that spend less the caps' reductions on
its components. A minimum on every component counts every cap in full; a minimum on some
components counts a cap whose components are all among them in full, none of a cap on
other components, and of a cap that only partly overlaps them, the overlap's share of
the reduction split over the cap's components (sorted by id) in proportion to their
spend, rounding the running share half up. ``measured_on: uncapped_spend`` keeps a
minimum on the spend before the caps.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rating_support import make_terms, rate_one, usage_for

from subledger.core.errors import ConfigError
from subledger.core.rating import PeriodRating, compile_terms, rate_periods
from subledger.core.rating.lines import MAXIMUM_CAP, MINIMUM_TRUE_UP, USAGE
from subledger.core.terms import document_to_dict, load_document

DOLLAR = {"model": "per_unit", "unit_price": "1.00"}


def usage(ident: str, price: dict[str, str] = DOLLAR) -> dict[str, Any]:
    return {"type": "usage", "id": ident, "meter": ident, "price": price}


def lines(rated: PeriodRating) -> list[tuple[str, str, int]]:
    return [(line.kind, line.component, line.amount) for line in rated.lines]


def rate_term(terms: Any, monthly: dict[str, str]) -> list[PeriodRating]:
    """Rate every period of ``terms`` with the same usage by component id each month."""
    plan = compile_terms(terms, contract_id="c-1", system="test")
    usage_set: dict[Any, Any] = {}
    for period in plan.periods():
        _plan, _period, one = usage_for(terms, period.start.isoformat(), monthly)
        usage_set.update(one)
    return rate_periods(plan, usage_set)


CAP_API_500 = {"id": "cap", "kind": "maximum", "amount": "500.00", "applies_to": ["api"]}
MIN_1000 = {"id": "min", "kind": "minimum", "amount": "1000.00"}


# ------------------------------------------------------------------- worked examples


def test_a_minimum_is_measured_on_the_spend_after_the_cap() -> None:
    # api 700 x 1.00 = 700.00; the cap on api takes off 700 - 500 = 200.00; the minimum
    # on everything sees 700 - 200 = 500.00 and trues up 1000 - 500 = 500.00.
    terms = make_terms([usage("api")], commitments=[CAP_API_500, MIN_1000])
    rated = rate_one(terms, {"api": 700})
    assert lines(rated) == [
        (USAGE, "api", 700_00),
        (MAXIMUM_CAP, "cap", -200_00),
        (MINIMUM_TRUE_UP, "min", 500_00),
    ]
    assert rated.total == 1000_00  # the committed minimum, not 800.00
    true_up = rated.lines[-1]
    assert dict(true_up.detail)["spend"] == "500.00"


def test_caps_come_before_true_ups_whatever_order_the_terms_list_them_in() -> None:
    terms = make_terms([usage("api")], commitments=[MIN_1000, CAP_API_500])
    assert lines(rate_one(terms, {"api": 700})) == [
        (USAGE, "api", 700_00),
        (MAXIMUM_CAP, "cap", -200_00),
        (MINIMUM_TRUE_UP, "min", 500_00),
    ]


def test_a_per_term_minimum_accumulates_the_spend_after_caps() -> None:
    # Jan-Mar, api 700 a month, cap 500.00 a month on api, minimum 3000.00 per term.
    # Each month: 700.00 - 200.00 cap = 500.00 of spend, so the term's spend is 1500.00
    # and March trues up 3000 - 1500 = 1500.00. The term bills 500 + 500 + 2000 = 3000.00.
    # (Measured before the caps it would be 2100.00 of spend, a 900.00 true-up, 2400.00.)
    terms = make_terms([usage("api")], end_date="2026-03-31", commitments=[
        CAP_API_500, {"id": "term-min", "kind": "minimum", "amount": "3000.00", "per": "term"}])
    year = rate_term(terms, {"api": "700"})
    assert [lines(r) for r in year[:2]] == [[(USAGE, "api", 700_00), (MAXIMUM_CAP, "cap", -200_00)]] * 2
    assert lines(year[2]) == [
        (USAGE, "api", 700_00), (MAXIMUM_CAP, "cap", -200_00), (MINIMUM_TRUE_UP, "term-min", 1500_00)]
    assert [r.state.term_spend["term-min"] for r in year] == [500_00, 1000_00, 1500_00]
    assert sum(r.total for r in year) == 3000_00


def test_a_cap_that_partly_overlaps_a_minimum_counts_its_share_of_the_reduction() -> None:
    # api 700 x 1.00 = 700.00 and storage 200 x 1.00 = 200.00: 900.00 of spend.
    # The cap on [api, storage] at 500.00 takes off 400.00.
    # The minimum is on [api] only, so it counts api's share of that 400.00, split by
    # spend 700:200 in id order (api, then storage), rounding the running share half up:
    #   api:     400.00 x 700/900 = 311.111... -> 311.11
    #   storage: 400.00 x 900/900 = 400.00     -> 400.00 - 311.11 = 88.89
    # api's spend after the cap is 700.00 - 311.11 = 388.89, so the minimum of 500.00
    # trues up 500.00 - 388.89 = 111.11. Total: 900.00 - 400.00 + 111.11 = 611.11.
    terms = make_terms([usage("api"), usage("storage")], commitments=[
        {"id": "cap", "kind": "maximum", "amount": "500.00", "applies_to": ["api", "storage"]},
        {"id": "api-min", "kind": "minimum", "amount": "500.00", "applies_to": ["api"]},
    ])
    rated = rate_one(terms, {"api": 700, "storage": 200})
    assert lines(rated) == [
        (USAGE, "api", 700_00),
        (USAGE, "storage", 200_00),
        (MAXIMUM_CAP, "cap", -400_00),
        (MINIMUM_TRUE_UP, "api-min", 111_11),
    ]
    assert dict(rated.lines[-1].detail)["spend"] == "388.89"
    assert rated.total == 611_11


def test_a_cap_on_everything_is_split_for_a_minimum_on_some_components() -> None:
    # api 300.00 + storage 100.00 = 400.00; a cap on everything at 200.00 takes off 200.00.
    # Split by spend 300:100: api 150.00, storage 50.00. The minimum on [storage] sees
    # 100.00 - 50.00 = 50.00 and trues up 80.00 - 50.00 = 30.00. Total 400 - 200 + 30 = 230.00.
    terms = make_terms([usage("api"), usage("storage")], commitments=[
        {"id": "cap", "kind": "maximum", "amount": "200.00"},
        {"id": "storage-min", "kind": "minimum", "amount": "80.00", "applies_to": ["storage"]},
    ])
    rated = rate_one(terms, {"api": 300, "storage": 100})
    assert lines(rated)[2:] == [(MAXIMUM_CAP, "cap", -200_00), (MINIMUM_TRUE_UP, "storage-min", 30_00)]
    assert rated.total == 230_00


def test_a_cap_inside_a_minimums_components_counts_in_full_and_one_outside_not_at_all() -> None:
    # api 700.00, storage 300.00. Cap on api at 500.00: -200.00. Cap on storage at 100.00: -200.00.
    # The minimum on [api, search] holds the api cap's components (counted in full) and none
    # of the storage cap's (not counted). search has no usage: 0.00.
    # Spend measured: 700.00 + 0.00 - 200.00 = 500.00; the minimum of 600.00 trues up 100.00.
    # Total: 1000.00 - 400.00 + 100.00 = 700.00.
    terms = make_terms([usage("api"), usage("search"), usage("storage")], commitments=[
        {"id": "api-cap", "kind": "maximum", "amount": "500.00", "applies_to": ["api"]},
        {"id": "storage-cap", "kind": "maximum", "amount": "100.00", "applies_to": ["storage"]},
        {"id": "min", "kind": "minimum", "amount": "600.00", "applies_to": ["api", "search"]},
    ])
    rated = rate_one(terms, {"api": 700, "storage": 300})
    assert lines(rated)[3:] == [
        (MAXIMUM_CAP, "api-cap", -200_00), (MAXIMUM_CAP, "storage-cap", -200_00), (MINIMUM_TRUE_UP, "min", 100_00)]
    assert rated.total == 700_00


# ------------------------------------------------------------------------ measured_on


def test_measured_on_uncapped_spend_keeps_the_minimum_on_the_spend_before_caps() -> None:
    # The minimum sees the full 700.00, so it trues up only 300.00: 700 - 200 + 300 = 800.00.
    terms = make_terms([usage("api")], commitments=[CAP_API_500, {**MIN_1000, "measured_on": "uncapped_spend"}])
    rated = rate_one(terms, {"api": 700})
    assert lines(rated) == [
        (USAGE, "api", 700_00),
        (MAXIMUM_CAP, "cap", -200_00),
        (MINIMUM_TRUE_UP, "min", 300_00),
    ]
    assert rated.total == 800_00


def test_measured_on_capped_spend_is_the_default() -> None:
    explicit = make_terms([usage("api")], commitments=[CAP_API_500, {**MIN_1000, "measured_on": "capped_spend"}])
    assert rate_one(explicit, {"api": 700}).total == 1000_00


def test_measured_on_a_maximum_is_refused_with_a_fix() -> None:
    with pytest.raises(ConfigError) as info:
        make_terms([usage("api")], commitments=[{**CAP_API_500, "measured_on": "capped_spend"}])
    assert "commitments[0].measured_on = 'capped_spend'" in info.value.message
    assert "remove measured_on from the maximum" in info.value.fix


def test_unset_measured_on_is_left_out_of_the_document() -> None:
    # Terms written before the field existed keep the same document (and so the same hash).
    document = load_document({"id": "c-1", "customer": "acme", "currency": "USD", "start_date": "2026-01-01",
                              "components": [usage("api")], "commitments": [MIN_1000]})
    assert "measured_on" not in document_to_dict(document)["commitments"][0]


# -------------------------------------------------------- properties against a reference


IDS = ("api", "search", "storage")
Example = tuple[dict[str, Any], dict[str, Decimal]]  # (contract fields, usage quantity by component)


def reference_split(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, rounding the running share half up."""
    whole = sum(weights)
    parts, running, done = [], 0, 0
    for weight in weights:
        running += weight
        share = Fraction(total * running, whole)
        target = int(share + Fraction(1, 2)) if share >= 0 else -int(-share + Fraction(1, 2))
        parts.append(target - done)
        done = target
    return parts


def test_reference_split_is_exact_and_matches_the_worked_example() -> None:
    assert reference_split(400_00, [700_00, 200_00]) == [311_11, 88_89]
    assert sum(reference_split(1, [1, 1, 1])) == 1


def reference_lines(contract: dict[str, Any], quantities: dict[str, Decimal]) -> list[tuple[str, str, int]]:
    """The documented rule, written out for per-unit usage in a full period, no discounts."""
    ids = [c["id"] for c in contract["components"]]
    spend = {}
    out = []
    for c in contract["components"]:
        exact = quantities.get(c["id"], Decimal(0)) * Decimal(c["price"]["unit_price"])
        spend[c["id"]] = int(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)
        out.append((USAGE, c["id"], spend[c["id"]]))
    total = sum(spend.values())

    def measured(applies_to: list[str]) -> int:
        return sum(spend[x] for x in applies_to) if applies_to else total

    caps = []
    for m in contract["commitments"]:
        if m["kind"] == "maximum":
            over = measured(m["applies_to"]) - int(Decimal(m["amount"]) * 100)
            if over > 0:
                caps.append((set(m["applies_to"] or ids), over))
                out.append((MAXIMUM_CAP, m["id"], -over))
    for m in contract["commitments"]:
        if m["kind"] != "minimum":
            continue
        spent = measured(m["applies_to"])
        if m.get("measured_on") != "uncapped_spend":
            mine = set(m["applies_to"] or ids)
            for capped, over in caps:
                if capped <= mine:
                    spent -= over
                elif capped & mine:
                    order = sorted(capped)
                    parts = reference_split(over, [spend[x] for x in order])
                    spent -= sum(p for x, p in zip(order, parts, strict=True) if x in mine)
        short = int(Decimal(m["amount"]) * 100) - spent
        if short > 0:
            out.append((MINIMUM_TRUE_UP, m["id"], short))
    # Caps before true-ups: stable within each kind, so listed order is kept.
    return [line for line in out if line[0] == USAGE] + [line for line in out if line[0] == MAXIMUM_CAP] + [
        line for line in out if line[0] == MINIMUM_TRUE_UP]


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@st.composite
def capped_contracts(draw: st.DrawFn, minimum_on_everything: bool = False) -> Example:
    ids = sorted(draw(st.sets(st.sampled_from(IDS), min_size=1)))
    components = [
        usage(i, {"model": "per_unit", "unit_price": format(Decimal(draw(st.integers(0, 30_000))).scaleb(-4), "f")})
        for i in ids
    ]
    subsets = st.lists(st.sampled_from(ids), unique=True)
    amounts = st.integers(0, 3_000_000).map(money)
    commitments = []
    for n in range(draw(st.integers(0, 3))):
        commitments.append({"id": f"cap{n}", "kind": "maximum", "amount": draw(amounts),
                            "applies_to": draw(subsets)})
    for n in range(draw(st.integers(1 if minimum_on_everything else 0, 3))):
        minimum = {"id": f"min{n}", "kind": "minimum", "amount": draw(amounts), "applies_to": draw(subsets)}
        if minimum_on_everything and n == 0:
            minimum["applies_to"] = []
        elif draw(st.booleans()):
            minimum["measured_on"] = draw(st.sampled_from(["capped_spend", "uncapped_spend"]))
        commitments.append(minimum)
    # Interleave caps and minimums: the terms' order must not decide which comes first.
    commitments = draw(st.permutations(commitments))
    quantities = {i: Decimal(draw(st.integers(0, 10**7))).scaleb(-3) for i in ids}
    return {"components": components, "commitments": commitments}, quantities


@settings(max_examples=300, deadline=None)
@given(capped_contracts())
def test_engine_agrees_with_a_reference_of_the_documented_rule(example: Example) -> None:
    contract, quantities = example
    terms = make_terms(contract["components"], commitments=contract["commitments"])
    assert lines(rate_one(terms, quantities)) == reference_lines(contract, quantities)


@settings(max_examples=300, deadline=None)
@given(capped_contracts(minimum_on_everything=True))
def test_a_minimum_on_everything_is_met_after_any_caps(example: Example) -> None:
    # No credits or discounts: the period total is at least a minimum on every component
    # whenever no cap on every component is below it. It holds even when one is: the
    # true-up comes after the caps, so conflicting terms bill the minimum.
    contract, quantities = example
    terms = make_terms(contract["components"], commitments=contract["commitments"])
    minimum = next(m for m in contract["commitments"] if m["id"] == "min0")
    assert rate_one(terms, quantities).total >= int(Decimal(minimum["amount"]) * 100)
