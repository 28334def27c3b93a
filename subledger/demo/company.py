"""A made-up B2B SaaS company: customers, contracts and monthly usage, generated deterministically.

The same ``seed`` and customer count always give the same company, so the demo's test can
compare what the sync finds with what was planted (:class:`Leak`). All money is exact:
usage quantities are whole thousands and rates have at most five decimals, so every
charge is a whole number of cents and needs no rounding.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

CURRENCY = "USD"
METER = "api_calls"
YEAR_START = date(2025, 11, 1)
MONTHS = 12
# The demo runs "as of" the middle of the month after the year: every month of it has ended.
AS_OF = datetime(2026, 11, 15, tzinfo=UTC)

PRICING_MODELS = ("per_unit", "graduated", "volume", "hybrid", "minimum", "package", "prepaid")
# Prepaid credit is bought with the contract and usable for its first six months.
CREDIT_EXPIRES = date(2026, 5, 1)


def month_starts(start: date = YEAR_START, months: int = MONTHS) -> list[date]:
    """The first day of each month of the year."""
    out = []
    y, m = start.year, start.month
    for _ in range(months):
        out.append(date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


@dataclass(frozen=True)
class Tier:
    """A price tier: ``up_to`` units inclusive (None: open), at ``unit_price`` dollars a unit."""

    up_to: int | None
    unit_price: Decimal


@dataclass
class Plan:
    """What a customer signed: one pricing model on the ``api_calls`` meter."""

    model: str
    unit_price: Decimal | None = None  # per_unit, minimum and prepaid
    tiers: list[Tier] = field(default_factory=list)  # graduated, volume, hybrid (first tier free)
    platform_fee: Decimal | None = None  # hybrid, per month
    minimum: Decimal | None = None  # minimum, per month
    package_size: int | None = None  # package: calls per package, billed in whole packages (rounded up)
    package_price: Decimal | None = None  # package: dollars per package
    prepaid_credit: Decimal | None = None  # prepaid: dollars of credit bought up front, until CREDIT_EXPIRES

    def usage_charge(self, quantity: int) -> Decimal:
        """The usage charge for a month's quantity (dollars, exact), before any credit."""
        q = Decimal(quantity)
        if self.model == "package":
            assert self.package_size is not None and self.package_price is not None
            return -(-quantity // self.package_size) * self.package_price
        if self.model in ("per_unit", "minimum", "prepaid"):
            assert self.unit_price is not None
            return q * self.unit_price
        if self.model == "volume":
            tier = next(t for t in self.tiers if t.up_to is None or quantity <= t.up_to)
            return q * tier.unit_price
        total, floor = Decimal(0), 0
        for t in self.tiers:  # graduated (hybrid is graduated with a free first tier)
            top = quantity if t.up_to is None else min(quantity, t.up_to)
            if top > floor:
                total += Decimal(top - floor) * t.unit_price
            if t.up_to is None or quantity <= t.up_to:
                break
            floor = t.up_to
        return total

    def month_charge(self, quantity: int) -> Decimal:
        """Everything a month costs before credits: fee, usage, and the true-up to the minimum."""
        usage = self.usage_charge(quantity)
        fee = self.platform_fee or Decimal(0)
        true_up = max(Decimal(0), (self.minimum or Decimal(0)) - usage) if self.minimum else Decimal(0)
        return fee + usage + true_up


@dataclass
class Customer:
    """One customer: its ids in every system, its plan, and its usage per month."""

    n: int
    canonical_id: str
    name: str
    domain: str
    plan: Plan
    usage: dict[date, int]  # month start -> quantity billed on time
    stripe_unit_price: Decimal | None = None  # set when Stripe's rate drifted from the contract
    send_invoice: bool = False  # pays by bank transfer: Stripe invoices stay open

    @property
    def crm(self) -> str:
        """Where the contract lives: every tenth customer came through a HubSpot-run sales team."""
        return "hubspot" if self.n % 10 == 0 else "salesforce"

    @property
    def stripe_id(self) -> str:
        return f"cus_demo{self.n:05d}"

    @property
    def account_id(self) -> str:  # Salesforce Account Id (18 characters)
        return f"0015g0000{self.n:05d}DMAAA"[:18]

    @property
    def opportunity_id(self) -> str:
        return f"0065g0000{self.n:05d}DMAAA"[:18]

    @property
    def contract_id(self) -> str:
        return f"8005g0000{self.n:05d}DMAAA"[:18]


@dataclass(frozen=True)
class Leak:
    """A planted problem the sync must find: rule, canonical customer, amount (minor units), why."""

    rule: str
    customer: str | None
    amount_minor: int
    what: str
    period: str | None = None  # YYYY-MM, for per-period findings
    fixable: bool = False  # the demo closes it: plan/apply, or revenue recognition (breakage)


@dataclass
class LateUsage:
    """Usage reported to Stripe after the month was invoiced (so it is never billed)."""

    customer: Customer
    month: date
    quantity: int


@dataclass
class Company:
    """The generated company and its planted leaks."""

    customers: list[Customer]
    late_usage: list[LateUsage]
    unlinked_name: str  # a Stripe customer nobody linked to the CRM
    missing_erp_invoice_customers: list[str]  # canonical ids whose latest invoice NetSuite lacks
    unapplied_payment_customers: list[str]  # canonical ids with one payment unapplied in NetSuite
    short_minimum: list[tuple[str, date]]  # (canonical id, month) whose usage fell below the minimum
    drifted: list[str]  # canonical ids whose Stripe overage rate differs from Salesforce
    leaks: list[Leak] = field(default_factory=list)

    def by_id(self, canonical_id: str) -> Customer:
        return next(c for c in self.customers if c.canonical_id == canonical_id)


NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Cyberdyne",
         "Soylent", "Wonka", "Gringotts", "Oscorp", "Pied Piper", "Dunder", "Massive", "Aperture", "Black Mesa",
         "Virtucon")
SUFFIXES = ("Labs", "Systems", "Analytics", "Cloud", "Logistics", "Health", "Robotics", "Media", "Bank", "Energy")
PER_UNIT_RATES = (Decimal("0.002"), Decimal("0.004"), Decimal("0.005"), Decimal("0.008"), Decimal("0.01"))


def _plan(model: str, rng: random.Random) -> tuple[Plan, int]:
    """A plan and a typical monthly volume (whole thousands) that keeps the plan interesting."""
    if model == "per_unit":
        return Plan(model, unit_price=rng.choice(PER_UNIT_RATES)), rng.randrange(20, 400) * 1000
    if model == "graduated":
        return Plan(model, tiers=[Tier(50_000, Decimal("0.01")), Tier(None, Decimal("0.006"))]), \
            rng.randrange(30, 300) * 1000
    if model == "volume":
        return Plan(model, tiers=[Tier(100_000, Decimal("0.008")), Tier(None, Decimal("0.005"))]), \
            rng.randrange(40, 250) * 1000
    if model == "hybrid":
        included = rng.choice((50_000, 100_000))
        rate = rng.choice((Decimal("0.004"), Decimal("0.006")))
        return Plan(model, tiers=[Tier(included, Decimal("0")), Tier(None, rate)],
                    platform_fee=rng.choice((Decimal("300"), Decimal("500"), Decimal("1000")))), \
            included + rng.randrange(0, 150) * 1000
    if model == "package":
        return Plan(model, package_size=10_000, package_price=rng.choice((Decimal("25"), Decimal("40")))), \
            rng.randrange(30, 400) * 1000
    if model == "prepaid":
        return Plan(model, unit_price=rng.choice((Decimal("0.004"), Decimal("0.005")))), rng.randrange(50, 300) * 1000
    rate = rng.choice((Decimal("0.005"), Decimal("0.01")))
    minimum = rng.choice((Decimal("500"), Decimal("1000")))
    floor = int(minimum * 3 / 2 / rate)  # comfortably above the minimum every month
    return Plan(model, unit_price=rate, minimum=minimum), (floor // 1000 + rng.randrange(0, 50)) * 1000


def generate(customers: int = 200, *, seed: int = 2026) -> Company:
    """Generate the company and plant the leaks; the same arguments give the same company."""
    if customers < len(PRICING_MODELS) * 2:
        from subledger.core.errors import ConfigError

        raise ConfigError(f"the demo needs at least {len(PRICING_MODELS) * 2} customers (got {customers})",
                          fix=f"pass --customers {len(PRICING_MODELS) * 2} or more")
    rng = random.Random(seed)
    months = month_starts()
    out: list[Customer] = []
    for n in range(1, customers + 1):
        model = PRICING_MODELS[(n - 1) % len(PRICING_MODELS)]
        plan, base = _plan(model, rng)
        name = f"{NAMES[(n - 1) % len(NAMES)]} {SUFFIXES[((n - 1) // len(NAMES)) % len(SUFFIXES)]} {n}"
        usage = {m: base + rng.randrange(0, max(1, base // 4000)) * 1000 for m in months}
        out.append(Customer(n, f"demo-{n:05d}", name, f"c{n:05d}.example", plan, usage))
    return _plant(out, months, rng)


def _of(model: str, customers: list[Customer]) -> list[Customer]:
    return [c for c in customers if c.plan.model == model]


def _plant(customers: list[Customer], months: list[date], rng: random.Random) -> Company:
    """Choose who leaks and record each leak with its exact amount."""
    k = max(1, len(customers) // 40)  # leaks of each kind: 1 for 20 customers, 5 for 200
    per_unit = _of("per_unit", customers)
    minimum = _of("minimum", customers)
    others = [c for c in customers if c.plan.model in ("graduated", "volume", "hybrid")]
    leaks: list[Leak] = []

    # 1. Late usage: reported to Stripe after the month's invoice went out.
    late = []
    for i, c in enumerate(per_unit[:k]):
        month = months[3 + i % 6]
        qty = rng.randrange(5, 50) * 1000
        late.append(LateUsage(c, month, qty))
        assert c.plan.unit_price is not None
        leaks.append(Leak("unbilled_usage", c.canonical_id, _cents(qty * c.plan.unit_price),
                          f"{qty:,} late API calls never billed", f"{month:%Y-%m}", fixable=True))

    # 2. Terms drift: Stripe's rate is below the contract's, so every month is under-billed.
    drifted = per_unit[k:k + 1]
    for c in drifted:
        assert c.plan.unit_price is not None
        c.stripe_unit_price = c.plan.unit_price - Decimal("0.001")
        for m in months:
            leaks.append(Leak("unbilled_usage", c.canonical_id, _cents(c.usage[m] * Decimal("0.001")),
                              f"billed at {c.stripe_unit_price} a call, contract says {c.plan.unit_price}",
                              f"{m:%Y-%m}", fixable=True))
        last = months[-1]
        leaks.append(Leak("terms_drift", c.canonical_id, _cents(c.usage[last] * Decimal("0.001")),
                          "Stripe overage rate differs from the Salesforce contract"))

    # 3. A month below the minimum commitment, with no true-up billed.
    short = []
    for i, c in enumerate(minimum[:k]):
        month = months[2 + i % 6]
        assert c.plan.unit_price is not None and c.plan.minimum is not None
        c.usage[month] = int(c.plan.minimum / c.plan.unit_price / 2) // 1000 * 1000
        true_up = c.plan.minimum - c.usage[month] * c.plan.unit_price
        short.append((c.canonical_id, month))
        leaks.append(Leak("unbilled_usage", c.canonical_id, _cents(true_up),
                          f"minimum commitment {c.plan.minimum} not trued up", f"{month:%Y-%m}", fixable=True))
    # Stripe's subscriptions carry no minimum at all: the terms differ for every minimum
    # customer, and what is at stake is the last month's shortfall (zero when it was met).
    for c in minimum:
        assert c.plan.minimum is not None
        shortfall = max(Decimal(0), c.plan.minimum - c.plan.usage_charge(c.usage[months[-1]]))
        leaks.append(Leak("terms_drift", c.canonical_id, _cents(shortfall),
                          "the Salesforce contract has a minimum commitment; the Stripe subscription has none"))

    # 4. Prepaid credit: most customers use all of it before it expires; k of them bought
    # more than they used, and the unused balance expired with no breakage revenue booked.
    prepaid = _of("prepaid", customers)
    for i, c in enumerate(prepaid):
        usable = sum((c.plan.usage_charge(c.usage[m]) for m in months if m < CREDIT_EXPIRES), Decimal(0))
        if i < k:
            c.plan.prepaid_credit = _hundreds(usable * Decimal("1.25"), up=True)
            unused = c.plan.prepaid_credit - usable
            leaks.append(Leak("expired_credit_unrecognized", c.canonical_id, _cents(unused),
                              f"{unused:.2f} of {c.plan.prepaid_credit:.2f} prepaid credit expired unused; "
                              "no breakage booked", f"{CREDIT_EXPIRES:%Y-%m}", fixable=True))
        else:
            c.plan.prepaid_credit = max(Decimal(100), _hundreds(usable * Decimal("0.8"), up=False))

    # 5./6. ERP: an invoice never exported (on bank-transfer customers, whose invoices are open),
    # and a payment recorded in NetSuite without applying it. Amounts come from Stripe's
    # invoices, known once Stripe has billed: recorded by the seeding.
    missing = others[:k]
    for c in missing:
        c.send_invoice = True
    unapplied = others[k:2 * k]

    company = Company(customers, late, unlinked_name="",
                      missing_erp_invoice_customers=[c.canonical_id for c in missing],
                      unapplied_payment_customers=[c.canonical_id for c in unapplied], short_minimum=short,
                      drifted=[c.canonical_id for c in drifted], leaks=leaks)
    # 7. A Stripe customer created by hand for a pilot, never linked to its CRM account.
    company.unlinked_name = "Pilot account (ask sales)"
    leaks.append(Leak("identity", None, 0, "Stripe customer with no link to a CRM account"))
    leaks.append(Leak("billing_customer_without_contract", None, 0, "Stripe customer with no CRM contract"))
    return company


def _hundreds(dollars: Decimal, *, up: bool) -> Decimal:
    """``dollars`` rounded to whole hundreds, up or down."""
    hundreds = -(-dollars // 100) if up else dollars // 100
    return Decimal(hundreds * 100)


def _cents(dollars: Decimal) -> int:
    cents = dollars * 100
    assert cents == cents.to_integral_value(), dollars
    return int(cents)
