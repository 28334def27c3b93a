"""Random contracts in a store with identities split across systems (hypothesis strategies,
seeding and readers shared by the property tests in this folder).

A uniquely named module (not conftest) so the test files can import it without clashing
with other suites' conftest modules.

Every case puts one customer's data in three connections, each under its own id:

* ``crm`` (role crm): the customer ``acct-<i>`` (the canonical id: the CRM is the master)
  and its contract ``ctr-<i>``;
* ``meter`` (role metering): the customer ``m-<i>``, linked by tax id, and its usage;
* ``billing`` (role billing): the customer ``b-<i>``, linked by ``canonical_hint``, and
  its invoices.

Identity resolution is left to :func:`subledger.sync.engine.reconcile`, which links the
three records before any rule runs (docs/sync.md, "Identity").
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

from subledger.core import model as M
from subledger.core.connector import UsageCoverage, UsageEventIn
from subledger.core.rating import (
    PeriodRating,
    RatingPlan,
    aggregate_events,
    compile_terms,
    opening_state,
    rate_period,
    rate_periods,
)
from subledger.core.rating.periods import BillingPeriod
from subledger.core.store.coverage import record_coverage
from subledger.core.store.engine import get_engine
from subledger.core.store.migrate import alembic_config
from subledger.core.store.usage import ingest_usage
from subledger.core.terms import load_terms, terms_to_document
from subledger.sync.settings import SyncSettings

CRM, METER, BILLING = "crm", "meter", "billing"
ROLES: dict[str, list[str]] = {CRM: ["crm"], METER: ["metering"], BILLING: ["billing"]}
SETTINGS = SyncSettings.model_validate({"roles": ROLES})
YEAR = 2026
# Every term ends by 2026-04-30 and its last invoice is issued by 2026-05-01: at this
# instant every period has ended, is invoiced and its usage is covered.
AS_OF = datetime(YEAR, 6, 1, tzinfo=UTC)
# Far enough after every term and every credit expiry for everything to be recognized.
FAR = date(YEAR + 1, 3, 31)
CENT = Decimal("0.01")


# The data below is put in the store by hand: its connections count as read completely.
READ = datetime(2000, 1, 1, tzinfo=UTC)

def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def half_up_cents(amount: Decimal) -> int:
    """Major units -> minor units, rounded half up (the contract's default rounding)."""
    return int(amount.quantize(CENT, rounding=ROUND_HALF_UP) * 100)


# ------------------------------------------------------------------------------ cases


@dataclass
class Case:
    """One customer's contract, usage and invoices, before they are stored."""

    index: int
    terms: dict[str, Any]
    events: list[tuple[str, datetime, Decimal]]  # (meter, when, quantity)
    tweaks: list[tuple[int, int, int]]  # per period: (mode, which line, amount)
    names_contract: bool
    names_components: bool
    probes: list[int] = field(default_factory=list)  # per period: an instant inside it, per million
    simple: bool = False
    # Filled by ``rate``: the pure engine's ratings of every period (what a correct
    # invoice bills), and the invoices made from them.
    plan: RatingPlan | None = field(default=None, repr=False)
    ratings: list[PeriodRating] = field(default_factory=list, repr=False)
    invoices: list[Invoice] = field(default_factory=list, repr=False)

    @property
    def crm_customer(self) -> str:
        return f"acct-{self.index}"

    @property
    def meter_customer(self) -> str:
        return f"m-{self.index}"

    @property
    def billing_customer(self) -> str:
        return f"b-{self.index}"

    @property
    def contract_ext(self) -> str:
        return f"ctr-{self.index}"

    @property
    def contract_id(self) -> str:
        return M.record_id("con", CRM, self.contract_ext)

    @property
    def start(self) -> date:
        return date.fromisoformat(self.terms["start_date"])

    @property
    def end(self) -> date:
        """The term's last day (inclusive)."""
        return date.fromisoformat(self.terms["end_date"])

    @property
    def periods(self) -> list[BillingPeriod]:
        assert self.plan is not None
        return self.plan.periods()

    def usage_meters(self) -> dict[str, str]:
        """component id -> meter."""
        return {c["id"]: c["meter"] for c in self.terms["components"] if c["type"] == "usage"}

    def grant(self) -> dict[str, Any] | None:
        credits = self.terms.get("credits") or []
        return credits[0] if credits else None


@dataclass
class InvoicedLine:
    charge: str  # usage:<meter>, flat_fee, minimum_true_up, adjustments, credit_purchase
    period_start: date | None
    line: dict[str, Any]


@dataclass
class Invoice:
    external_id: str
    issued_at: datetime
    period: BillingPeriod | None
    lines: list[InvoicedLine]


# ------------------------------------------------------------------------- strategies

prices4 = st.integers(0, 20000).map(lambda n: str(Decimal(n).scaleb(-4)))  # 0 .. 2.0000, 4 places
dollars = st.integers(0, 50000).map(lambda n: str(Decimal(n).scaleb(-2)))  # 0 .. 500.00


@st.composite
def tiers(draw: st.DrawFn) -> list[dict[str, Any]]:
    bounds = sorted(draw(st.sets(st.integers(1, 3000), min_size=1, max_size=2)))
    rows = []
    for up_to in [*bounds, None]:
        row: dict[str, Any] = {"up_to": up_to, "unit_price": draw(prices4)}
        if draw(st.booleans()):
            row["flat_fee"] = draw(st.integers(0, 2000).map(lambda n: str(Decimal(n).scaleb(-2))))
        rows.append(row)
    return rows


@st.composite
def price_models(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.sampled_from(["per_unit", "graduated", "volume", "package"]))
    if model == "per_unit":
        return {"model": "per_unit", "unit_price": draw(prices4)}
    if model in ("graduated", "volume"):
        return {"model": model, "tiers": draw(tiers())}
    return {"model": "package", "package_size": draw(st.integers(1, 500)),
            "package_price": draw(st.integers(0, 5000).map(lambda n: str(Decimal(n).scaleb(-2)))),
            "rounding": draw(st.sampled_from(["up", "down"]))}


@st.composite
def allotments(draw: st.DrawFn, *, simple: bool = False) -> dict[str, Any] | None:
    if draw(st.booleans()):
        return None
    quantity = draw(st.integers(0, 2000))
    if simple:
        return {"quantity": quantity}
    per = draw(st.sampled_from(["period", "term"]))
    out: dict[str, Any] = {"quantity": quantity, "per": per}
    if per == "period" and draw(st.booleans()):
        out["rollover"] = True
        if draw(st.booleans()):
            out["rollover_cap"] = draw(st.integers(0, 2000))
    return out


@st.composite
def term_dates(draw: st.DrawFn) -> tuple[date, date, dict[str, Any]]:
    """A start in January, an end in January..April (a month end, or mid-month), and the billing."""
    start = date(YEAR, 1, draw(st.sampled_from([1, 1, 1, 10, 15])))
    last_month = draw(st.integers(1, 4))
    if draw(st.integers(0, 3)) == 0:
        end = date(YEAR, last_month, draw(st.integers(10, 28)))
    else:
        end = month_end(YEAR, last_month)
    if end < start:
        end = month_end(YEAR, 1)
    billing: dict[str, Any] = {"interval": "month"}
    if start.day != 1 and draw(st.booleans()):
        billing["anchor_day"] = 1  # a partial first period, prorated
    return start, end, billing


@st.composite
def usage_events(draw: st.DrawFn, meters: list[str], start: date, end: date) -> list[tuple[str, datetime, Decimal]]:
    """Events inside the term, none in the last hour of a day (so a period's last instant
    sees them all), with whole or two-place quantities."""
    days = (end - start).days + 1
    out = []
    for meter in meters:
        for day, second, quantity in draw(st.lists(
            st.tuples(st.integers(0, days - 1), st.integers(0, 23 * 3600 - 1),
                      st.one_of(st.integers(0, 3000).map(Decimal),
                                st.integers(0, 300000).map(lambda n: Decimal(n).scaleb(-2)))),
            max_size=8,
        )):
            out.append((meter, midnight(start + timedelta(days=day)) + timedelta(seconds=second), quantity))
    return out


TWEAKS = st.lists(
    st.tuples(st.sampled_from([0, 0, 0, 1, 2, 3]), st.integers(0, 20), st.integers(1, 5000)),
    min_size=6, max_size=6,
)  # mode: 0 billed exactly, 1 short, 2 over, 3 not invoiced
PROBES = st.lists(st.integers(0, 999_999), min_size=6, max_size=6)


@st.composite
def revrec_policies(draw: st.DrawFn) -> dict[str, Any]:
    """A ``revenue_recognition`` section (or none): commitment and amortization policies."""
    policy = draw(st.sampled_from(["default", "shortfall_at_end", "ratable_minimum", "scaled_consumption"]))
    amortization = draw(st.sampled_from(["default", "by_day", "monthly_even", "monthly_prorated"]))
    revrec: dict[str, Any] = {}
    if policy != "default":
        revrec["commitment"] = policy
        if policy == "scaled_consumption":
            revrec["expected_usage"] = draw(st.integers(100, 200000).map(lambda n: str(Decimal(n).scaleb(-2))))
    if amortization != "default":
        revrec["amortization"] = amortization
    return {"revenue_recognition": revrec} if revrec else {}


@st.composite
def cases(draw: st.DrawFn, index: int) -> Case:
    """Any contract: flat fee, one or two usage components in any model with allotments,
    per-period and per-term minimums, a cap, a discount, a money credit grant, and a
    recognition policy; usage; and invoices billing each period exactly, short, over, or not at all."""
    start, end, billing = draw(term_dates())
    components: list[dict[str, Any]] = []
    if draw(st.booleans()):
        fee: dict[str, Any] = {"type": "flat_fee", "id": "fee", "amount": draw(
            st.integers(0, 100000).map(lambda n: str(Decimal(n).scaleb(-3)))), "quantity": draw(st.integers(1, 3))}
        if draw(st.booleans()):
            fee["timing"] = "arrears"
        if draw(st.booleans()):
            fee["proration"] = "none"
        components.append(fee)
    for i in range(draw(st.integers(0 if components else 1, 2))):
        comp: dict[str, Any] = {"type": "usage", "id": f"u{i}", "meter": f"meter_{index}_{i}",
                                "price": draw(price_models())}
        allotment = draw(allotments())
        if allotment is not None:
            comp["allotment"] = allotment
        components.append(comp)
    ids = [c["id"] for c in components]
    subsets = st.lists(st.sampled_from(ids), unique=True, max_size=len(ids))
    commitments = []
    if draw(st.booleans()):
        commitments.append({"id": "min", "kind": "minimum", "amount": draw(dollars), "per": "period",
                            "applies_to": draw(subsets)})
    if draw(st.booleans()):
        commitments.append({"id": "tmin", "kind": "minimum", "amount": draw(dollars), "per": "term",
                            "applies_to": draw(subsets)})
    if draw(st.booleans()):
        commitments.append({"id": "cap", "kind": "maximum", "amount": draw(dollars), "per": "period",
                            "applies_to": draw(subsets)})
    terms: dict[str, Any] = {
        "currency": "USD", "start_date": start.isoformat(), "end_date": end.isoformat(), "billing": billing,
        "components": components,
    }
    if commitments:
        terms["commitments"] = commitments
    if draw(st.booleans()):
        discount: dict[str, Any] = {"id": "disc"}
        if draw(st.booleans()):
            discount["percent"] = draw(st.integers(0, 5000).map(lambda n: str(Decimal(n).scaleb(-2))))
        else:
            discount["amount"] = draw(st.integers(0, 10000).map(lambda n: str(Decimal(n).scaleb(-2))))
        if draw(st.booleans()):
            discount["applies_to"] = draw(st.sampled_from(ids))
        if draw(st.booleans()):
            discount["periods"] = draw(st.integers(1, 3))
        terms["discounts"] = [discount]
    if draw(st.booleans()):
        grant: dict[str, Any] = {"id": "grant", "amount": draw(st.integers(0, 100000).map(
            lambda n: str(Decimal(n).scaleb(-2)))), "category": draw(st.sampled_from(["paid", "promotional"]))}
        expiry = draw(st.sampled_from(["none", "in_term", "term_end", "later"]))
        if expiry == "in_term":
            grant["expires"] = (start + timedelta(days=draw(st.integers(1, (end - start).days + 1)))).isoformat()
        elif expiry == "term_end":
            grant["expires"] = (end + timedelta(days=1)).isoformat()
        elif expiry == "later":
            grant["expires"] = date(YEAR, draw(st.integers(7, 12)), draw(st.integers(1, 28))).isoformat()
        terms["credits"] = [grant]
    terms.update(draw(revrec_policies()))
    meters = [c["meter"] for c in components if c["type"] == "usage"]
    return Case(index, terms, draw(usage_events(meters, start, end)), draw(TWEAKS), draw(st.booleans()),
                draw(st.booleans()), draw(PROBES))


@st.composite
def simple_cases(draw: st.DrawFn, index: int, *, term_minimum: bool | None = None) -> Case:
    """The subset the first-principles reference prices: per-unit usage (with a per-period
    allotment that does not roll over), an optional flat fee, at most one minimum on
    every component (per period or per term); no tiers, caps, discounts or credits."""
    start, end, billing = draw(term_dates())
    billing["anchor_day"] = 1
    components: list[dict[str, Any]] = []
    if draw(st.booleans()):
        components.append({"type": "flat_fee", "id": "fee", "amount": draw(
            st.integers(0, 100000).map(lambda n: str(Decimal(n).scaleb(-3)))), "quantity": draw(st.integers(1, 3))})
    for i in range(draw(st.integers(1, 2))):
        comp: dict[str, Any] = {"type": "usage", "id": f"u{i}", "meter": f"meter_{index}_{i}",
                                "price": {"model": "per_unit", "unit_price": draw(prices4)}}
        allotment = draw(allotments(simple=True))
        if allotment is not None:
            comp["allotment"] = allotment
        components.append(comp)
    terms: dict[str, Any] = {
        "currency": "USD", "start_date": start.isoformat(), "end_date": end.isoformat(), "billing": billing,
        "components": components,
    }
    per = {True: "term", False: "period", None: draw(st.sampled_from(["none", "period", "term"]))}[term_minimum]
    if per != "none":
        terms["commitments"] = [{"id": "min", "kind": "minimum", "amount": draw(dollars), "per": per}]
    terms.update(draw(revrec_policies()))
    meters = [c["meter"] for c in components if c["type"] == "usage"]
    return Case(index, terms, draw(usage_events(meters, start, end)), draw(TWEAKS), draw(st.booleans()),
                draw(st.booleans()), draw(PROBES), simple=True)


# ------------------------------------------------- minimal examples found by the properties


def single(terms: dict[str, Any], events: list[tuple[str, datetime, Decimal]] | None = None,
           *, simple: bool = False) -> list[Case]:
    """One customer with these terms and usage, billed exactly every period."""
    return [Case(0, terms, list(events or []), [(0, 0, 1)] * 6, True, True, [500_000] * 6, simple=simple)]


def _terms(start: str, end: str, components: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"currency": "USD", "start_date": start, "end_date": end, "billing": {"interval": "month"},
            "components": components, **extra}


FEE = {"type": "flat_fee", "id": "fee", "amount": "10.00"}
API = {"type": "usage", "id": "u0", "meter": "meter_0_0", "price": {"model": "per_unit", "unit_price": "1.0000"}}

# A paid credit grant in the terms that expires inside a period: the rating engine lets it
# pay January (docs/pricing/credits.md: a grant pays a period it overlaps) and dates the
# draw at the period's end; recognition refuses a redemption after the expiry and skips
# the grant, so its purchase becomes point-in-time revenue and the credit line
# promotional contra revenue on the invoice's day, after the term.
GRANT_EXPIRING_IN_A_PERIOD = single(_terms("2026-01-01", "2026-01-31", [FEE], credits=[
    {"id": "grant", "amount": "15.00", "category": "paid", "expires": "2026-01-15"}]))

# A per-period minimum on a period that spans a month end (anchor day 15): rated on the
# usage before January 31 the period owes a 10.00 true-up, which recognition keeps even
# though the February usage (20.00) meets the minimum and the period bills no true-up.
TRUE_UP_GONE_BY_PERIOD_END = single(
    _terms("2026-01-15", "2026-02-14", [API], commitments=[{"id": "min", "kind": "minimum", "amount": "10.00"}]),
    [("meter_0_0", datetime(YEAR, 2, 5, tzinfo=UTC), Decimal(20))])

# A per-term minimum over a term that ends mid-month, with a fee amortized monthly: the
# invoice bills 4.84 (fee, 15/31 of 10.00) + 5.16 (true-up) = 10.00; recognition pins the
# commitment to the true-up at the term's end, before the monthly fee is recognized (at
# the month's end), and recognizes 5.16 in all.
MINIMUM_WITH_MONTHLY_FEE = single(_terms("2026-01-01", "2026-01-15", [FEE, {**API, "price": {
    "model": "per_unit", "unit_price": "0.0100"}}], commitments=[
    {"id": "min", "kind": "minimum", "amount": "10.00", "per": "term"}],
    revenue_recognition={"amortization": "monthly_even"}), simple=True)

# Two periods, January and February: the standing endpoint at February 1 00:00.
TWO_MONTHS = single(_terms("2026-01-01", "2026-02-28", [FEE]))


def customers(first: st.SearchStrategy[Case], second: st.SearchStrategy[Case]) -> st.SearchStrategy[list[Case]]:
    """One customer or two."""
    return st.one_of(st.tuples(first), st.tuples(first, second)).map(list)


# ----------------------------------------------------------------- the pure engine


def events_in(case: Case, before: datetime | None = None) -> list[UsageEventIn]:
    return [
        UsageEventIn(f"{case.meter_customer}-{n}", case.meter_customer, meter, quantity, when, {}, f"h{n}")
        for n, (meter, when, quantity) in enumerate(case.events) if before is None or when < before
    ]


def rate(case: Case) -> None:
    """Rate every period with the rating engine alone (no store): what a correct invoice bills."""
    plan = compile_terms(load_terms(case.terms), contract_id=case.contract_ext, system=CRM)
    queries = [q for p in plan.periods() for q in plan.usage_queries(p)]
    usage = aggregate_events(events_in(case), queries, system=METER)
    case.plan = plan
    case.ratings = rate_periods(plan, usage)


def rate_until(case: Case, period_index: int, instant: datetime) -> PeriodRating:
    """One period rated with only the usage before ``instant``, from the state the
    periods before it left (the standing endpoint's "period so far")."""
    assert case.plan is not None
    period = case.periods[period_index]
    usage = aggregate_events(events_in(case, before=instant), case.plan.usage_queries(period), system=METER)
    state = case.ratings[period_index - 1].state if period_index else opening_state(case.plan)
    return rate_period(case.plan, period, usage, state)


def charge_of(case: Case, kind: str, component: str) -> str:
    """The charge a rated line is compared in (docs/sync.md, ``unbilled_usage``)."""
    if kind == "usage":
        return f"usage:{case.usage_meters()[component]}"
    return {"flat_fee": "flat_fee", "minimum_true_up": "minimum_true_up"}.get(kind, "adjustments")


_INVOICE_KIND = {"flat_fee": "recurring", "usage": "usage", "minimum_true_up": "true_up", "discount": "discount",
                 "maximum_cap": "discount", "credit": "credit"}


def make_invoices(case: Case) -> None:
    """One invoice per period, issued when the period ends, with one line per rated line
    (billed exactly, one line short or over, or no invoice at all), plus the purchase of
    a paid credit grant on the first day of the term."""
    grant = case.grant()
    invoices = []
    if grant is not None and grant["category"] == "paid" and Decimal(grant["amount"]) > 0:
        line = {"kind": "other", "component": "grant", "description": "prepaid credit",
                "amount_minor": half_up_cents(Decimal(grant["amount"]))}
        invoices.append(Invoice(f"{case.billing_customer}-credit", midnight(case.start), None,
                                [InvoicedLine("credit_purchase", None, line)]))
    for i, (period, rating) in enumerate(zip(case.periods, case.ratings, strict=True)):
        mode, pick, delta = case.tweaks[i]
        if mode == 3:
            continue
        lines: list[InvoicedLine] = []
        for rl in rating.lines:
            line: dict[str, Any] = {
                "kind": _INVOICE_KIND[rl.kind], "amount_minor": rl.amount, "description": rl.name,
                "service_start": rl.service_start, "service_end": rl.service_end - timedelta(days=1),
            }
            if rl.kind == "usage":
                line["meter"] = case.usage_meters()[rl.component]
                line["quantity"] = rl.quantity
            if case.names_components or rl.kind in ("maximum_cap",):
                line["component"] = rl.component
            lines.append(InvoicedLine(charge_of(case, rl.kind, rl.component), period.start, line))
        if lines and mode in (1, 2):
            target = lines[pick % len(lines)].line
            target["amount_minor"] += delta if mode == 2 else -delta
        invoices.append(Invoice(f"{case.billing_customer}-{period.start.isoformat()}", period.end_at, period,
                                [ln for ln in lines if ln.line["amount_minor"] != 0 or mode in (1, 2)]))
    case.invoices = invoices


# ---------------------------------------------------------------------------- store


def stamp_head(engine: Engine) -> None:
    """Mark a schema built by ``create_all`` as current, so ``open_store`` (the CLI's way
    in, which ``rate_store`` uses) accepts it."""
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "head")


def store_url(engine: Engine) -> str:
    """A URL that opens the same database (and, on PostgreSQL, the test's schema)."""
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "postgresql":
        return url
    with engine.connect() as conn:
        schema = conn.execute(text("select current_schema()")).scalar_one()
    return url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"


def point_cli_at(engine: Engine, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CLI's store (``SUBLEDGER_DATABASE_URL``) ``engine`` and its settings
    (``SUBLEDGER_CONFIG``) ``ROLES``, as a user of ``subledger rate`` would."""
    settings_file = tmp / "subledger.yaml"
    settings_file.write_text("roles:\n" + "".join(f"  {k}: [{', '.join(v)}]\n" for k, v in ROLES.items()))
    monkeypatch.setenv("SUBLEDGER_DATABASE_URL", store_url(engine))
    monkeypatch.setenv("SUBLEDGER_CONFIG", str(settings_file))
    get_engine.cache_clear()  # the process-wide engine of the URL set above


def forget_cli_engine() -> None:
    get_engine().dispose()
    get_engine.cache_clear()


def reset(engine: Engine) -> None:
    """Empty every table (hypothesis runs many examples on one database)."""
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def seed(engine: Engine, cases: list[Case]) -> None:
    """Store the cases, each customer under a different id in each system."""
    reset(engine)
    with Session(engine) as s, s.begin():
        for name, roles in ROLES.items():
            s.add(M.Connection(name=name, plugin="memory", config={"roles": roles}, last_complete_pull_at=READ))
        for case in cases:
            i = case.index
            s.add(M.Customer(id=M.record_id("cus", CRM, case.crm_customer), system=CRM,
                             external_id=case.crm_customer, name=f"Customer {i} Holdings", tax_id=f"TX-{i:04d}"))
            s.add(M.Customer(id=M.record_id("cus", METER, case.meter_customer), system=METER,
                             external_id=case.meter_customer, name=f"meter account {i}", tax_id=f"tx{i:04d}"))
            s.add(M.Customer(id=M.record_id("cus", BILLING, case.billing_customer), system=BILLING,
                             external_id=case.billing_customer, name=f"billing account {i}",
                             canonical_hint=case.crm_customer))
            s.add(M.Contract(id=case.contract_id, system=CRM, external_id=case.contract_ext,
                             customer_external_id=case.crm_customer, currency="USD", status="active",
                             start_date=case.start, end_date=case.end,
                             terms=terms_to_document(load_terms(case.terms))))
            for inv in case.invoices:
                inv_id = M.record_id("inv", BILLING, inv.external_id)
                s.add(M.Invoice(
                    id=inv_id, system=BILLING, external_id=inv.external_id, number=inv.external_id,
                    customer_external_id=case.billing_customer,
                    contract_external_id=case.contract_ext if case.names_contract else None,
                    currency="USD", status="open", issued_at=inv.issued_at,
                    period_start=inv.period.start if inv.period else None,
                    period_end=inv.period.end - timedelta(days=1) if inv.period else None,
                    total_minor=sum(ln.line["amount_minor"] for ln in inv.lines),
                    amount_due_minor=sum(ln.line["amount_minor"] for ln in inv.lines),
                ))
                s.flush()
                for n, ln in enumerate(inv.lines, start=1):
                    s.add(M.InvoiceLine(invoice_id=inv_id, line_key=str(n), currency="USD", **ln.line))
        s.flush()
        for case in cases:
            ingest_usage(s, METER, events_in(case))
        # The metering system has read every meter from the start of the year to the as-of instant.
        record_coverage(s, METER, [UsageCoverage(datetime(YEAR, 1, 1, tzinfo=UTC), AS_OF)])


# -------------------------------------------------------------------------- readers


def open_findings(engine: Engine) -> dict[tuple[str, str | None, date | None, str], M.Finding]:
    """(rule, contract id, period start, charge) -> the open finding."""
    out = {}
    with Session(engine) as s:
        for f in s.exec(select(M.Finding).where(M.Finding.status == "open")).all():
            key = (f.rule, f.contract_id, f.period_start, str(f.details.get("charge")))
            assert key not in out, f"two open findings for {key}"
            out[key] = f
    return out


REVENUE_ROLES = ("revenue", "breakage_revenue", "refunds_contra", "discounts_contra", "promotional_contra")


def journal_by_month(engine: Engine, contract_id: str) -> dict[str, dict[str, int]]:
    """period (YYYY-MM) -> role -> debit minus credit posted in that period for the contract."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with Session(engine) as s:
        rows = s.exec(select(M.JournalEntry, M.JournalLine).where(M.JournalLine.entry_id == M.JournalEntry.id,
                                                                  M.JournalLine.contract_id == contract_id)).all()
        for entry, line in rows:
            out[entry.period][line.role] += line.debit_minor - line.credit_minor
    return out


def schedule_by_month(engine: Engine, contract_id: str) -> dict[tuple[str, str], int]:
    """(period, line kind) -> amount of the contract's revenue schedule (contra kinds negative)."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    with Session(engine) as s:
        for row in s.exec(select(M.RevenueScheduleLine).where(M.RevenueScheduleLine.contract_id == contract_id)):
            out[(row.period, row.line_kind)] += row.amount_minor
    return dict(out)


def months(first: date, last: date) -> list[tuple[int, int]]:
    out = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


# ------------------------------------------------------------- what revenue must be


def recognition_date(case: Case) -> date:
    """The day through which the term's revenue is all recognized: the term's last day,
    or, under a monthly amortization policy, the end of the term's last month ("a month's
    share is recognized when the month ends": docs/revrec/amortization-monthly-*.md)."""
    policy = (case.terms.get("revenue_recognition") or {}).get("amortization", "by_day")
    if policy in ("monthly_even", "monthly_prorated"):
        return month_end(case.end.year, case.end.month)
    return case.end


def paid_draws(case: Case, rating: PeriodRating) -> int:
    """What a paid grant paid in a period (positive minor units): not revenue reduction,
    the release of the liability its purchase created (docs/revrec/prepaid-credits.md)."""
    grant = case.grant()
    if grant is None or grant["category"] != "paid":
        return 0
    return -sum(ln.amount for ln in rating.lines if ln.kind == "credit" and ln.component == grant["id"])


def breakage(case: Case) -> tuple[int, datetime | None]:
    """(unused paid credit at expiry, the expiry instant); (0, None) when it never breaks."""
    grant = case.grant()
    if grant is None or grant["category"] != "paid" or not grant.get("expires"):
        return 0, None
    purchase = half_up_cents(Decimal(grant["amount"]))
    drawn = sum(paid_draws(case, r) for r in case.ratings)
    return purchase - drawn, midnight(date.fromisoformat(grant["expires"]))


def revenue_through(case: Case, instant: datetime) -> int:
    """Revenue recognized before ``instant`` once every period before it is over:

    revenue = usage value + fees - discounts - caps + true-ups - promotional credits used
            = the sum of the periods' expectations + what paid credit paid (paid draws are
              not contra revenue), plus the breakage of unused paid credit at its expiry
              (breakage at expiry, the default policy).
    """
    total = sum(r.total + paid_draws(case, r) for p, r in zip(case.periods, case.ratings, strict=True)
                if p.end_at <= instant)
    unused, expires = breakage(case)
    if expires is not None and expires < instant:
        total += unused
    return total


# ---------------------------------------------------------- first-principles reference


def reference_periods(case: Case) -> list[tuple[int, int]]:
    """Each period's (spend, true-up) for a ``simple_cases`` contract, from the docs alone:
    Decimal arithmetic, each line rounded once half up to cents, a partial period's fee and
    per-period minimum prorated by day (docs/rating.md), a per-term minimum trued up in
    the last period on the term's spend (docs/pricing/commitments.md)."""
    terms = case.terms
    start, end = case.start, case.end
    stop = end + timedelta(days=1)
    # Monthly periods on the 1st, clipped to the term; each remembers its calendar month.
    bounds = []
    cursor = start
    while cursor < stop:
        nxt = date(cursor.year + (cursor.month == 12), cursor.month % 12 + 1, 1)
        bounds.append((cursor, min(nxt, stop), date(cursor.year, cursor.month, 1), nxt))
        cursor = min(nxt, stop)
    fee = next((c for c in terms["components"] if c["type"] == "flat_fee"), None)
    usages = [c for c in terms["components"] if c["type"] == "usage"]
    minimum = (terms.get("commitments") or [None])[0]
    out: list[tuple[int, int]] = []
    for n, (p_start, p_end, c_start, c_end) in enumerate(bounds):
        days, cycle = (p_end - p_start).days, (c_end - c_start).days
        lines = []
        if fee is not None:
            lines.append(half_up_cents(Decimal(fee["amount"]) * fee.get("quantity", 1) * days / cycle))
        for u in usages:
            used = sum((q for m, w, q in case.events if m == u["meter"] and midnight(p_start) <= w < midnight(p_end)),
                       Decimal(0))
            included = Decimal((u.get("allotment") or {}).get("quantity", 0))
            billable = max(used - included, Decimal(0))
            lines.append(half_up_cents(billable * Decimal(u["price"]["unit_price"])))
        spend = sum(lines)
        true_up = 0
        if minimum is not None and minimum["per"] == "period":
            m = Decimal(minimum["amount"])
            threshold = half_up_cents(m * days / cycle) if (p_start, p_end) != (c_start, c_end) else half_up_cents(m)
            true_up = max(threshold - spend, 0)
        if minimum is not None and minimum["per"] == "term" and n == len(bounds) - 1:
            term_spend = sum(s for s, _ in out) + spend
            true_up = max(half_up_cents(Decimal(minimum["amount"])) - term_spend, 0)
        out.append((spend, true_up))
    return out


def reference_totals(case: Case) -> list[int]:
    """Each period's total for a ``simple_cases`` contract (spend plus true-up)."""
    return [spend + true_up for spend, true_up in reference_periods(case)]
