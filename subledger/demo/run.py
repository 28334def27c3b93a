"""The demo, end to end: sandboxes up, company seeded, sync, fix, re-sync, revenue, journal, close.

Everything goes through the product's real paths: each sandbox is served over HTTP on
127.0.0.1 and the connectors reach it with the vendors' SDKs; the store is a real database;
the sync engine's pull, reconcile, plan and apply run exactly as ``subledger sync`` runs
them, with a fixed "today" (:data:`~subledger.demo.company.AS_OF`) so the story never
changes from one run to the next.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.model import Action, Connection, Finding
from subledger.core.money import to_major
from subledger.core.plugins import connector_classes, register_plugin
from subledger.core.sandbox import SandboxServer
from subledger.core.secrets import config_for_storage, load_config
from subledger.core.store.engine import make_engine
from subledger.core.store.migrate import upgrade
from subledger.demo import seed
from subledger.demo.company import AS_OF, MONTHS, YEAR_START, Company, generate, month_starts
from subledger.demo.report import ReportData
from subledger.sync.apply import ApplyReport, apply_actions
from subledger.sync.engine import ReconcileReport, reconcile
from subledger.sync.leakage import LeakageReport, leakage
from subledger.sync.pull import pull
from subledger.sync.settings import AutoApproval, IdentitySettings, SyncSettings

CONNECTIONS = ("salesforce", "hubspot", "stripe", "netsuite")
# Journal postings are approved by the demo itself, month by month (see ``post_journal``).
FIXABLE_RULES = ("unbilled_usage", "invoice_missing_from_erp", "customer_missing_from_erp", "crm_usage_fields")
SETTINGS = SyncSettings(
    roles={"salesforce": ["crm"], "hubspot": ["crm"], "stripe": ["billing", "metering"], "netsuite": ["erp"]},
    identity=IdentitySettings(master=["salesforce", "hubspot"]),
    auto_approve=[AutoApproval(rule=r) for r in FIXABLE_RULES],
    billing_connection="stripe",
)
ACCOUNT_MAPPING = """\
subsidiary: "1"
accounts:              # subledger's default chart, by role -> the sandbox account's internal id
  cash: "11"
  accounts_receivable: "12"
  unbilled_receivable: "13"
  tax_liability: "22"
  customer_balance: "21"
  contract_liability: "21"
  revenue: "41"
  breakage_revenue: "41"
  refunds_contra: "41"
  discounts_contra: "41"
  promotional_contra: "41"
"""

Progress = Callable[[str], None]
# How many times run_demo reports progress (one call per step), for a progress bar's total.
PROGRESS_STEPS = 6


@dataclass
class SyncRound:
    """One pull + reconcile + apply, with the open findings it left."""

    label: str
    seconds: float
    reconcile: ReconcileReport
    applied: ApplyReport
    open_findings: list[dict[str, Any]]
    leakage: LeakageReport | None = None


@dataclass
class DemoResult:
    """What the demo did, for the summary, the report and the tests."""

    company: Company
    database_url: str
    urls: dict[str, str]
    rounds: list[SyncRound] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    revrec: dict[str, Any] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    engine: Engine | None = None
    sandboxes: dict[str, Any] = field(default_factory=dict)


def _ensure_plugins() -> None:
    """Register the built-in connectors in-process when their entry points are not installed."""
    have = connector_classes()
    installed = {ep.name for ep in importlib.metadata.entry_points(group="subledger")}
    for name in CONNECTIONS:
        if name not in have and name not in installed:
            register_plugin(importlib.import_module(f"subledger.plugins.{name}"), name=name)


def _stripe_invoices(sandbox: Any) -> list[dict[str, Any]]:
    """The Stripe sandbox's invoices with their lines (what a billing export hands the ERP)."""
    out = []
    for inv in sandbox.store.ordered("invoices", newest_first=False):
        lines = [ln for ln in (sandbox.store.get("invoice_lines", lid) for lid in inv["_lines"]) if ln]
        out.append({**inv, "lines": lines})
    return out


@contextmanager
def sandboxes(company: Company, workdir: Path) -> Iterator[dict[str, Any]]:
    """Seed and serve the Salesforce, HubSpot, Stripe and NetSuite sandboxes; yields name -> SandboxServer."""
    from subledger.core.sandbox import SandboxClock
    from subledger.demo.seed_hubspot import hubspot_fixture
    from subledger.plugins.hubspot.sandbox import HubSpotSandbox
    from subledger.plugins.netsuite.sandbox import NetSuiteSandbox, standard_fixture
    from subledger.plugins.salesforce.sandbox import SalesforceSandbox
    from subledger.plugins.stripe.sandbox import StripeSandbox

    stripe_sb = StripeSandbox(random_seed=2026)
    stripe_sb.seed(seed.stripe_fixture(company))
    stripe_sb.seed(seed.stripe_late_usage(company))  # after the invoices went out: never billed
    stripe_sb.clock.freeze(int(AS_OF.timestamp()))
    salesforce_sb = SalesforceSandbox(fixture=seed.salesforce_fixture(company), random_seed=2026)
    hubspot_sb = HubSpotSandbox(
        fixture=hubspot_fixture(company, [c for c in company.customers if c.crm == "hubspot"]), random_seed=2026)
    ns_clock = SandboxClock()
    ns_clock.freeze(int(AS_OF.timestamp()))
    netsuite_sb = NetSuiteSandbox(
        clock=ns_clock, fixture=seed.netsuite_fixture(company, _stripe_invoices(stripe_sb), standard_fixture()))
    with ExitStack() as stack:
        servers = {name: stack.enter_context(SandboxServer(sb))
                   for name, sb in (("salesforce", salesforce_sb), ("hubspot", hubspot_sb), ("stripe", stripe_sb),
                                    ("netsuite", netsuite_sb))}
        yield servers


def connect(engine: Engine, servers: dict[str, SandboxServer], workdir: Path) -> None:
    """Register the four connections on the sandboxes (secrets stored encrypted, as always)."""
    from subledger.demo.seed_hubspot import hubspot_config
    from subledger.plugins.hubspot.config import HubSpotConfig
    from subledger.plugins.netsuite import sandbox as ns
    from subledger.plugins.netsuite.config import NetSuiteConfig
    from subledger.plugins.salesforce import sandbox as sf
    from subledger.plugins.salesforce.config import SalesforceConfig
    from subledger.plugins.stripe.config import StripeConfig
    from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY

    mapping = workdir / "netsuite-accounts.yaml"
    mapping.write_text(ACCOUNT_MAPPING)
    configs = {
        "salesforce": load_config(SalesforceConfig, {
            "username": sf.DEFAULT_USERNAME, "password": sf.DEFAULT_PASSWORD, "security_token": sf.DEFAULT_TOKEN,
            "base_url": servers["salesforce"].url}),
        "hubspot": load_config(HubSpotConfig, hubspot_config(servers["hubspot"].url)),
        "stripe": load_config(StripeConfig, {
            "api_key": DEFAULT_API_KEY, "api_base": servers["stripe"].url, "finalize_invoices": True,
            "usage_start": (YEAR_START - timedelta(days=1)).isoformat()}),
        "netsuite": load_config(NetSuiteConfig, {
            "account_id": ns.DEFAULT_ACCOUNT, "base_url": servers["netsuite"].url,
            "consumer_key": ns.DEFAULT_CONSUMER_KEY, "consumer_secret": ns.DEFAULT_CONSUMER_SECRET,
            "token_id": ns.DEFAULT_TOKEN_ID, "token_secret": ns.DEFAULT_TOKEN_SECRET, "invoice_item_id": "501",
            "account_mapping": str(mapping)}),
    }
    with Session(engine) as s, s.begin():
        for name, config in configs.items():
            if s.get(Connection, name) is None:
                s.add(Connection(name=name, plugin=name, config=config_for_storage(config)))


def open_findings(engine: Engine) -> list[dict[str, Any]]:
    """Open findings as plain rows (rule, customer, amount, period, evidence)."""
    with Session(engine) as s:
        rows = s.exec(select(Finding).where(Finding.status == "open").order_by(Finding.rule, Finding.key)).all()
        return [{"id": f.id, "rule": f.rule, "key": f.key, "customer": f.customer, "amount_minor": f.amount_minor,
                 "currency": f.currency, "summary": f.summary,
                 "period": f"{f.period_start:%Y-%m}" if f.period_start else None,
                 "evidence": list(f.evidence or []), "details": dict(f.details or {})} for f in rows]


def sync_round(engine: Engine, label: str, *, skip_rules: tuple[str, ...] = ()) -> SyncRound:
    """Pull every connection, reconcile as of ``AS_OF``, apply what was auto-approved."""
    from subledger.sync.engine import load_rules

    t = time.perf_counter()
    for name in CONNECTIONS:
        pull(engine, name)
    rules = [r for r in load_rules() if r.name not in skip_rules]
    rec = reconcile(engine, settings=SETTINGS, actor="demo", now=AS_OF, rules=rules)
    applied = apply_actions(engine, actor="demo")
    with Session(engine) as s:
        leaks = leakage(s, top=10)
    return SyncRound(label, time.perf_counter() - t, rec, applied, open_findings(engine), leaks)


def _netsuite_for_posting(engine: Engine) -> Any:
    """The NetSuite connector, reading NetSuite's accounting periods once for the whole posting.

    Work-around: the connector asks NetSuite for the periods before every journal entry
    (two SuiteQL pages each); periods do not change while the demo posts, so one read does.
    """
    from subledger.sync.pull import load_connector

    with Session(engine) as s:
        connector = load_connector(s, "netsuite")
    connector.closed_period = functools.lru_cache(maxsize=None)(connector.closed_period)  # type: ignore[method-assign]
    return connector


def post_journal(engine: Engine, months: list[str] | None) -> tuple[SyncRound, list[str]]:
    """Plan every unposted journal entry (rule ``journal_not_in_erp``), approve those of ``months``
    (None: all), and apply them to NetSuite exactly once. Returns the round and the posted entries."""
    from subledger.sync.plan import approve
    from subledger.sync.rules.journal import JournalNotInErpRule

    class ClosingJournalRule(JournalNotInErpRule):
        """The built-in rule, limited to the months being closed (the rest stays for later runs)."""

        def evaluate(self, ctx: Any) -> Any:
            return (d for d in super().evaluate(ctx) if months is None or d.details.get("period") in months)

    t = time.perf_counter()
    rec = reconcile(engine, settings=SETTINGS, actor="demo", now=AS_OF, rules=[ClosingJournalRule()])
    with Session(engine) as s, s.begin():
        planned = s.exec(select(Action).where(Action.kind == "create_journal_entry", Action.status == "planned")).all()
        chosen = [a for a in planned if months is None or a.payload.get("period") in months]
        approve(s, [a.id for a in chosen], actor="demo", reason="demo: post the closing journal", now=AS_OF)
        ids = [a.id for a in chosen]
        posted = [str(a.payload["external_id"]) for a in chosen]
    netsuite = _netsuite_for_posting(engine)
    applied = apply_actions(engine, actor="demo", action_ids=ids, connectors={"netsuite": netsuite})
    return SyncRound("post journal", time.perf_counter() - t, rec, applied, open_findings(engine)), posted


def recognize_and_post(engine: Engine, journal_months: int | None) -> dict[str, Any]:
    """Recognize the year's revenue, post the journal to NetSuite, close the year's months.

    ``journal_months``: post the entries of the last N months of the year (None: every month).
    """
    from subledger.core.revrec.calendar import Month
    from subledger.core.revrec.ledger import close_period
    from subledger.sync.recognition import recognize

    _first, through = demo_year()
    # The CRM contracts, rated by the contract read model exactly as reconciliation rates
    # them, with Stripe's documents (NetSuite holds copies of them) placed on their terms.
    with Session(engine) as s, s.begin():
        summary = recognize(s, through=through, as_of=AS_OF, settings=SETTINGS).to_json()
    months = None if journal_months is None else [f"{m:%Y-%m}" for m in month_starts()[-journal_months:]]
    journal, posted = post_journal(engine, months)
    with Session(engine) as s, s.begin():
        closed = [str(m) for m in close_period(s, Month.of(through), closed_by="demo", today=AS_OF.date())]
    return {"run": summary, "journal_round": journal, "posted": posted, "closed": closed, "through": through,
            "journal_months": months}


def run_demo(
    customers: int = 200,
    *,
    database_url: str | None = None,
    workdir: Path | None = None,
    progress: Progress | None = None,
    journal_months: int | None = 1,
    keep: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Run the whole demo; ``keep`` (if given) is called while the sandboxes still serve.

    ``journal_months``: how many of the year's last months of journal entries to post to
    NetSuite (None: all of them; posting is about 25 ms an entry, ~5 entries a customer-month).
    """
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _ensure_plugins()
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="subledger-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        database_url = database_url or f"sqlite:///{workdir / 'demo.sqlite'}"
        say(f"generating {customers} customers, {MONTHS} months from {YEAR_START:%B %Y}")
        company = generate(customers)
        say("seeding and starting the Salesforce, HubSpot, Stripe and NetSuite sandboxes on 127.0.0.1")
        servers = stack.enter_context(sandboxes(company, workdir))
        timings["seed"] = time.perf_counter() - t0
        engine = make_engine(database_url)
        upgrade(engine)  # the schema production runs on, ledger invariants included
        connect(engine, servers, workdir)
        result = DemoResult(company, database_url, {n: s.url for n, s in servers.items()}, engine=engine,
                            sandboxes={n: s.sandbox for n, s in servers.items()})
        say("sync 1: pulling Salesforce, HubSpot, Stripe and NetSuite; reconciling; applying the fixes")
        result.rounds.append(sync_round(engine, "find and fix"))
        say("sync 2: pulling the fixes back; posting the new invoices to NetSuite")
        result.rounds.append(sync_round(engine, "verify"))
        timings["sync"] = time.perf_counter() - t0 - timings["seed"]
        say("recognizing revenue (breakage included), posting the journal to NetSuite, closing the periods")
        t1 = time.perf_counter()
        rr = recognize_and_post(engine, journal_months)
        result.rounds.append(rr.pop("journal_round"))
        result.revrec, result.closed = rr, rr["closed"]
        timings["revrec"] = time.perf_counter() - t1
        say("sync 3: after the close, checking every leak is closed")
        t2 = time.perf_counter()
        # The closing step planned the journal (and posted the closing month): planning the
        # other months' thousands of entries again here would show nothing new.
        result.rounds.append(sync_round(engine, "after the close", skip_rules=("journal_not_in_erp",)))
        timings["sync"] += time.perf_counter() - t2
        timings["total"] = time.perf_counter() - t0
        result.timings = timings
        if keep is not None:
            keep(result)
        engine.dispose()
    return result


def demo_year() -> tuple[date, date]:
    """First and last day of the demo's year."""
    months = month_starts()
    last = months[-1]
    nxt = date(last.year + (last.month == 12), last.month % 12 + 1, 1)
    return months[0], nxt - timedelta(days=1)


def report_data(result: DemoResult) -> ReportData:
    """The report's figures: leakage as first found, revenue and deferred revenue, all findings."""
    from subledger.core.revrec.chart import waterfall_svg
    from subledger.core.revrec.reports import rollforward, waterfall

    assert result.engine is not None
    first = result.rounds[0]
    by_month: dict[str, int] = {f"{m:%Y-%m}": 0 for m in month_starts()}
    by_rule: dict[str, int] = {}
    for f in first.open_findings:
        if f["rule"] == "unbilled_usage" and f["period"] in by_month:
            by_month[f["period"]] += f["amount_minor"]
        if f["amount_minor"] > 0:
            by_rule[f["rule"]] = by_rule.get(f["rule"], 0) + f["amount_minor"]
    with Session(result.engine) as s:
        svg = waterfall_svg(waterfall(s, by="product"), currency="USD")
        balances: dict[str, dict[str, int]] = {"contract_liability": {}, "unbilled_receivable": {}}
        for row in rollforward(s).rows:
            if row[0] in balances and row[1] == "USD":
                balances[row[0]][row[2]] = int((Decimal(row[8]) * 100).to_integral_value())
        statuses = {f.id: f.status for f in s.exec(select(Finding).where(
            Finding.id.in_([f["id"] for f in first.open_findings]))).all()}
    findings = [{**f, "status": statuses.get(f["id"], "open")} for f in first.open_findings
                if f["rule"] not in ("crm_usage_fields",)]
    unbilled = sum(f["amount_minor"] for f in first.open_findings if f["rule"] == "unbilled_usage")
    fixed = sum(1 for f in findings if f["status"] == "resolved")
    posted = len(result.revrec.get("posted", []))
    return ReportData(
        title=f"subledger demo: {len(result.company.customers)} customers, {MONTHS} months",
        as_of=AS_OF.date().isoformat(), currency="USD",
        cards=[("unbilled found", f"{to_major(unbilled, 'USD'):,} USD"),
               ("findings", str(len(findings))), ("closed by apply", str(fixed)),
               ("journal entries posted", str(posted)),
               ("periods closed", ", ".join(result.closed[-1:]) or "-"),
               ("run time", f"{result.timings.get('total', 0):.1f} s")],
        leakage_by_month=by_month, leakage_by_rule=by_rule, deferred_by_month=balances["contract_liability"],
        unbilled_receivable_by_month=balances["unbilled_receivable"], findings=findings,
        waterfall_svg=svg,
        notes=["Amounts are exact (integer cents); every finding lists the source records it rests on.",
               "Not fixable by subledger (left for people): identity, unapplied payments, terms drift "
               "(the CRM owns terms), invoices paid in Stripe but open in NetSuite."],
    )
