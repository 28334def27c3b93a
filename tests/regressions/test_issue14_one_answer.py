"""Issue 14, "one answer to what should this contract have billed": its eight numbered cases.

Each test reproduces one case of the issue as written, with its numbers, and asserts the
answer the issue says is right:

1. a per-term minimum's true-up is recognized once (100 / 100 / 800, not 1500 in March);
2. invoices subledger writes back carry their contract, so the files quickstart recognizes
   each contract's value (acme 2026-03: 1,087.38), never more;
3. a CRM contract billed and metered by another system meets it through the identity map;
4. a cap and a minimum on one contract: 700 - 200 + 500 = 1000, not 800;
5. periods whose usage was not read are "not covered", never findings;
6. invoice lines that name only their component are matched; a line no contract explains
   is a finding;
7. the files format carries a paid prepaid credit (at-expiry and proportional breakage)
   and a credit note;
8. correction lines carry the quantity difference, not the period's whole quantity.

The files cases (2, 5, 6, 7 and 8) run the installed ``subledger`` console script in a
real process with its own data directory for every step a user takes (init, connections
add, sync, approve, apply, revrec run); the read-only reports they then look at (``rate``,
``findings list``, ``plan``, ``leakage``, ``revrec report``, ``journal export``) run the
same CLI app in this process on that store, to keep the file quick. The store cases (1, 3
and 5) run the sync engine and recognition in process on the ``engine`` fixture, so they
also run on PostgreSQL when ``SUBLEDGER_TEST_POSTGRES_URL`` is set; case 4 is the pure
rating engine, and ``subledger rate`` on files. Money is compared as exact decimal strings
or minor units, never floats.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from subledger.core.connector import UsageEventIn
from subledger.core.model import Connection, Finding, InvoiceLine
from subledger.core.model.revenue import RevenueScheduleLine
from subledger.core.rating import aggregate_events, compile_terms, rate_through, select_period
from subledger.core.revrec import reports
from subledger.core.revrec.calendar import Month
from subledger.core.secrets import config_for_storage, load_config
from subledger.core.store.engine import get_engine, make_engine
from subledger.core.terms import load_document, parse_yaml
from subledger.plugins.files.connector import FilesConfig
from subledger.sync.engine import sync
from subledger.sync.recognition import recognize
from subledger.sync.settings import SyncSettings, load_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUBLEDGER = Path(sys.executable).with_name("subledger")
LEAK_RULES = ("unbilled_usage", "over_billing", "unmatched_invoice_line")


# ------------------------------------------------------------------------------ helpers


def write_folder(folder: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> text, dedented) under ``folder``."""
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return folder


def jsonl(*events: tuple[str, str, str, int | str, str]) -> str:
    """Usage events (event_id, customer, meter, quantity, timestamp) as JSONL."""
    return "".join(
        json.dumps({"event_id": e, "customer": c, "meter": m, "quantity": q, "timestamp": t}) + "\n"
        for e, c, m, q, t in events
    )


@dataclass
class Cli:
    """The installed console script, run in a real process with its own data directory."""

    home: Path

    def env(self) -> dict[str, str]:
        env = {**os.environ, "SUBLEDGER_HOME": str(self.home), "COLUMNS": "200"}
        env.pop("SUBLEDGER_DATABASE_URL", None)
        env.pop("SUBLEDGER_CONFIG", None)
        return env

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(SUBLEDGER), *args], capture_output=True, text=True, env=self.env(), timeout=120)
        assert done.returncode == 0, f"subledger {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args).stdout)

    def connect(self, folder: Path, *settings: str, name: str = "skyline") -> None:
        self("init")
        self("connections", "add", name, "files", "--set", f"path={folder}", *settings)

    def query(self, *args: str) -> Any:
        """A read-only command's JSON output, from the same CLI app run in this process on
        the same store (a process costs about a second; reports and ``rate`` need none)."""
        from subledger.cli import app

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SUBLEDGER_HOME", str(self.home))
            mp.delenv("SUBLEDGER_DATABASE_URL", raising=False)
            mp.delenv("SUBLEDGER_CONFIG", raising=False)
            get_engine.cache_clear()  # the process-wide engine is cached: open this store's own
            try:
                result = CliRunner().invoke(app, list(args), catch_exceptions=False)
            finally:
                get_engine().dispose()
                get_engine.cache_clear()
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def add_files_connection(engine: Engine, name: str, folder: Path, **extra: str) -> None:
    config = load_config(FilesConfig, {"path": str(folder), **extra})
    with Session(engine) as s, s.begin():
        s.add(Connection(name=name, plugin="files", config=config_for_storage(config)))


def leak_findings(engine: Engine) -> list[tuple[str, str | None, str | None, int]]:
    """Open findings of the leak rules: (rule, customer, period YYYY-MM, amount in minor units)."""
    with Session(engine) as s:
        rows = s.exec(select(Finding).where(Finding.status == "open", Finding.rule.in_(LEAK_RULES))).all()
        return sorted((f.rule, f.customer, f"{f.period_start:%Y-%m}" if f.period_start else None, f.amount_minor)
                      for f in rows)


def rows_by(report: reports.Report, key: str) -> dict[str, dict[str, str]]:
    return {row[key]: row for row in report.to_json()["rows"]}


def rate_in_store(engine: Engine, monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    """``subledger rate ... --json`` on the test's store (the real CLI app, in process)."""
    from subledger.cli import app
    from subledger.commands import rate as rate_cmd

    monkeypatch.setattr(rate_cmd, "open_store", lambda: engine)
    monkeypatch.delenv("SUBLEDGER_CONFIG", raising=False)
    result = CliRunner().invoke(app, ["rate", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lines_of(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, component, amount) of each line of ``subledger rate --json``."""
    return [(ln["kind"], ln["component"], ln["amount"]) for ln in doc["lines"]]


# ------------------------------------------------------------------ 1. true-up recognized once

CASE1 = {
    "customers.csv": """
        id,name,currency
        quarterly,Quarterly Co,USD
    """,
    "contracts/q-2026.yaml": """
        id: q-2026
        customer: quarterly
        currency: USD
        start_date: 2026-01-01
        end_date: 2026-03-31
        components:
          - type: usage
            id: api
            meter: api_calls
            price: {model: per_unit, unit_price: "1.00"}
        commitments:
          - {id: q_min, kind: minimum, amount: "1000.00", per: term}
    """,
    "usage.jsonl": jsonl(
        ("e_jan", "quarterly", "api_calls", 100, "2026-01-15T12:00:00Z"),
        ("e_feb", "quarterly", "api_calls", 100, "2026-02-15T12:00:00Z"),
        ("e_mar", "quarterly", "api_calls", 100, "2026-03-15T12:00:00Z"),
    ),
    "invoices.csv": """
        id,customer,contract,currency,status,issued_at,line_id,line_kind,line_component,line_meter,line_quantity,line_unit_price,line_amount,line_service_start,line_service_end
        in_1,quarterly,q-2026,USD,paid,2026-02-01,usage,usage,api,api_calls,100,1.00,100.00,2026-01-01,2026-01-31
        in_2,quarterly,q-2026,USD,paid,2026-03-01,usage,usage,api,api_calls,100,1.00,100.00,2026-02-01,2026-02-28
        in_3,quarterly,q-2026,USD,open,2026-04-01,usage,usage,api,api_calls,100,1.00,100.00,2026-03-01,2026-03-31
        in_3,,,,,,true_up,true_up,q_min,,,,700.00,2026-03-01,2026-03-31
    """,
}


def test_case1_a_per_term_minimum_true_up_is_recognized_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-unit 1.00, a 1,000.00 minimum per term (Jan-Mar 2026), 100 units each month.

    Invoice in_3 (issued 2026-04-01) bills March: usage 100.00 and the q_min true-up
    700.00, exactly what ``subledger rate --period 2026-03`` says. Recognized through
    2026-04: 100 / 100 / 800 (not 1500 in March), 1,000.00 in all, and once in_3 is
    issued no unbilled receivable is left.
    """
    add_files_connection(engine, "skyline", write_folder(tmp_path / "q", CASE1))
    sync(engine, trigger="test", settings=SyncSettings())

    march = rate_in_store(engine, monkeypatch, "q-2026", "--period", "2026-03")
    assert lines_of(march) == [("usage", "api", "100.00"), ("minimum_true_up", "q_min", "700.00")]
    assert march["total"] == march["invoiced"] == "800.00"
    assert leak_findings(engine) == []

    with Session(engine, expire_on_commit=False) as s:
        recognize(s, through=date(2026, 4, 30), settings=SyncSettings())
        s.commit()
    with Session(engine) as s:
        waterfall = rows_by(reports.waterfall(s, by="customer"), "customer")
        at_march_end = rows_by(reports.positions(s, as_of=Month.parse("2026-03")), "customer")
        after_in_3 = rows_by(reports.positions(s, as_of=Month.parse("2026-04")), "customer")
    row = waterfall["quarterly"]
    assert (row["2026-01"], row["2026-02"], row["2026-03"], row["total"]) == ("100.00", "100.00", "800.00", "1000.00")
    assert all(row.get(m, "0.00") == "0.00" for m in ("2026-04", "2026-05"))
    # March's 800.00 is earned in March and billed on 1 April: unbilled at March's end, then settled.
    assert at_march_end["quarterly"]["unbilled_receivable"] == "800.00"
    assert "quarterly" not in after_in_3, after_in_3


# ------------------------------------------------------------ 2. the files quickstart, no over-recognition

# The example company's contracts, one per customer (examples/contracts/*.yaml).
EXAMPLE_CONTRACTS = {
    "acme": "acme-2026", "globex": "globex-2026", "hooli": "hooli-2026",
    "initech": "initech-2026", "soylent": "soylent-2026", "umbrella": "umbrella-2026",
}


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """README "Five-minute quickstart on files": copy examples/, sync, approve and apply
    the fixes, sync again, recognize through 2026-03."""
    root = tmp_path_factory.mktemp("quickstart")
    folder = root / "skyline"
    shutil.copytree(EXAMPLES, folder)
    cli = Cli(root / "home")
    cli.connect(folder)
    cli("sync")
    cli("approve", "--all")
    cli("apply")
    cli("sync")
    cli("revrec", "run", "--through", "2026-03")
    waterfall = cli.query("revrec", "report", "waterfall", "--by", "customer", "--json")
    rated = {
        (customer, month): cli.query("rate", contract, "--period", month, "--json")
        for customer, contract in EXAMPLE_CONTRACTS.items()
        for month in ("2026-01", "2026-02", "2026-03")
    }
    written = [json.loads(p.read_text()) for p in sorted((folder / "invoices" / "subledger").glob("*.json"))]
    return {"waterfall": {r["customer"]: r for r in waterfall["rows"]}, "rated": rated, "written": written}


def test_case2_invoices_written_back_name_their_contract(quickstart: dict[str, Any]) -> None:
    """The three invoices ``apply`` writes (acme 87.38, hooli 152.04, initech 25.00) each
    carry the contract they fix."""
    written = {(inv["customer"], inv["contract"], inv["total"]) for inv in quickstart["written"]}
    assert written == {
        ("acme", "acme-2026", "87.38"), ("hooli", "hooli-2026", "152.04"), ("initech", "initech-2026", "25.00"),
    }


def test_case2_acme_recognizes_its_contract_value_in_march(quickstart: dict[str, Any]) -> None:
    """acme 2026-03 recognizes 1,087.38 = 1,000.00 platform + 87.38 overage (not 1,174.76)."""
    assert quickstart["waterfall"]["acme"]["2026-03"] == "1087.38"
    assert lines_of(quickstart["rated"][("acme", "2026-03")]) == [
        ("flat_fee", "platform", "1000.00"), ("usage", "api_overage", "87.38")]


def test_case2_every_contract_recognizes_its_rated_expectation_each_month(quickstart: dict[str, Any]) -> None:
    """Across the example company, revenue recognized per contract per month equals what
    ``subledger rate <contract> --period <month> --json`` says the contract is worth, and
    the totals agree: no over-recognition (the issue measured 264.42 of it).

    The expectation is the rated total before prepaid credit is drawn: Soylent's credit is
    paid (bought for 1,200.00), so its redemptions are revenue; a credit line only says how
    the period was paid. Every other contract's expectation is its rated total.
    """
    recognized, expected = {}, {}
    for (customer, month), doc in quickstart["rated"].items():
        paid_by_credit = sum(ln["amount_minor"] for ln in doc["lines"] if ln["kind"] == "credit")
        expected[(customer, month)] = Decimal(doc["total_minor"] - paid_by_credit) / 100
        recognized[(customer, month)] = Decimal(quickstart["waterfall"][customer][month])
    assert recognized == expected
    for customer, row in quickstart["waterfall"].items():
        term = sum((v for (c, _), v in expected.items() if c == customer), Decimal(0))
        assert Decimal(row["total"]) == term, customer  # nothing recognized outside Jan-Mar
    # Soylent: 1,200.00 of paid credit and 188.26 billed in March.
    assert Decimal(quickstart["waterfall"]["soylent"]["total"]) == Decimal("1200.00") + Decimal("188.26")


# --------------------------------------------------- 3. a CRM contract billed by another system

CRM_ID, BILLING_ID = "0015g00000AcmeA1", "cus_Q1acme"
CASE3_CRM = {
    "customers.csv": f"""
        id,name,country
        {CRM_ID},Acme Corp,US
    """,
    "contracts/8005g00000AcmeK1.yaml": f"""
        id: 8005g00000AcmeK1
        customer: {CRM_ID}
        currency: USD
        start_date: 2026-01-01
        end_date: 2026-02-28
        components:
          - {{type: flat_fee, id: platform, amount: "1000.00", timing: advance}}
          - type: usage
            id: api_overage
            meter: api_calls
            allotment: {{quantity: 100000, per: period}}
            price: {{model: per_unit, unit_price: "0.002"}}
    """,
}
CASE3_BILLING_USAGE_AND_INVOICES = {
    "usage.jsonl": jsonl(
        ("u_jan", BILLING_ID, "api_calls", 140000, "2026-01-20T12:00:00Z"),
        ("u_feb", BILLING_ID, "api_calls", 125000, "2026-02-20T12:00:00Z"),
    ),
    # As a billing system writes them: no contract, lines by kind and meter only.
    "invoices.csv": f"""
        id,customer,currency,status,issued_at,line_id,line_kind,line_meter,line_quantity,line_unit_price,line_amount,line_service_start,line_service_end
        in_jan,{BILLING_ID},USD,paid,2026-01-01,fee,recurring,,1,1000.00,1000.00,2026-01-01,2026-01-31
        in_feb,{BILLING_ID},USD,paid,2026-02-01,fee,recurring,,1,1000.00,1000.00,2026-02-01,2026-02-28
        in_feb,,,,,overage,usage,api_calls,40000,0.002,80.00,2026-01-01,2026-01-31
        in_mar,{BILLING_ID},USD,open,2026-03-01,overage,usage,api_calls,25000,0.002,50.00,2026-02-01,2026-02-28
    """,
}
CASE3_BILLING_CUSTOMER = {
    # Linked by an identical name ...
    "name": f"""
        id,name,country
        {BILLING_ID},Acme Corp,US
    """,
    # ... or by an explicit link to the CRM's id, under another name.
    "canonical_id": f"""
        id,name,country,canonical_id
        {BILLING_ID},ACME billing account,US,{CRM_ID}
    """,
}


@pytest.mark.parametrize("link", ["name", "canonical_id"])
def test_case3_a_crm_contract_meets_its_billing_system_through_the_identity_map(
    engine: Engine, tmp_path: Path, link: str
) -> None:
    """Contract 8005g00000AcmeK1 lives in the CRM under customer 0015g00000AcmeA1; usage
    and invoices live in the billing system under cus_Q1acme. Platform 1,000.00 a month in
    advance + 0.002 a call over 100,000: January 140,000 calls (80.00 over), February
    125,000 (50.00 over). Billing is right, so reconciliation finds no leak; the usage is
    recognized once (1,080.00 and 1,050.00), and the billing system's invoice lines bill
    the contract's obligations: no obligation of their own, nothing unbilled or deferred.
    """
    crm = write_folder(tmp_path / "crm", CASE3_CRM)
    billing = write_folder(tmp_path / "billing", {
        **CASE3_BILLING_USAGE_AND_INVOICES, "customers.csv": CASE3_BILLING_CUSTOMER[link]})
    settings_file = write_folder(tmp_path, {"subledger.yaml": """
        roles: {crm: [crm], billing: [billing, metering]}
    """}) / "subledger.yaml"
    settings = load_settings(settings_file)
    add_files_connection(engine, "crm", crm)
    add_files_connection(engine, "billing", billing)

    sync(engine, trigger="test", settings=settings)
    with Session(engine) as s:
        identity = s.exec(select(Finding).where(Finding.rule == "identity", Finding.status == "open")).all()
    assert [f.summary for f in identity] == []
    assert leak_findings(engine) == []

    with Session(engine, expire_on_commit=False) as s:
        recognize(s, through=date(2026, 3, 31), settings=settings)
        s.commit()
    with Session(engine) as s:
        row = rows_by(reports.waterfall(s, by="customer"), "customer")[CRM_ID]
        positions = reports.positions(s).to_json()["rows"]
        obligations = sorted({ln.obligation_key for ln in s.exec(select(RevenueScheduleLine)).all()})
    assert (row["2026-01"], row["2026-02"], row["total"]) == ("1080.00", "1050.00", "2130.00")
    assert positions == []  # every line billed the contract's obligations: nothing unbilled, nothing deferred
    assert obligations and all(key.startswith("contract:") for key in obligations), obligations


# ------------------------------------------------------------------------ 4. caps before minimums

CASE4_CONTRACT = """
id: capped-2026
customer: capped
currency: USD
start_date: 2026-01-01
end_date: 2026-12-31
components:
  - type: usage
    id: api
    meter: api_calls
    price: {model: per_unit, unit_price: "1.00"}
commitments:
  - {id: api_cap, kind: maximum, amount: "500.00", applies_to: [api]}
  - {id: minimum, kind: minimum, amount: "1000.00"}
"""
CASE4_USAGE = jsonl(("e1", "capped", "api_calls", 700, "2026-03-10T12:00:00Z"))


def test_case4_a_minimum_is_measured_on_the_spend_after_the_cap() -> None:
    """Per-unit 1.00, 700 units, a 500.00 cap on api and a 1,000.00 minimum: usage 700.00,
    cap -200.00, true-up 500.00 = 1,000.00 (not 700 - 200 + 300 = 800)."""
    document = load_document(parse_yaml(CASE4_CONTRACT))
    plan = compile_terms(document, contract_id=document.id, system="files")
    period = select_period(plan.schedule, "2026-03")
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    events = [UsageEventIn("e1", "capped", "api_calls", Decimal("700"), at, {}, "h1")]
    queries = [q for p in plan.periods(until=period.start) for q in plan.usage_queries(p)]
    rated = rate_through(plan, period, aggregate_events(events, queries, system="files"))
    assert [(ln.kind, ln.component, ln.amount) for ln in rated.lines] == [
        ("usage", "api", 700_00), ("maximum_cap", "api_cap", -200_00), ("minimum_true_up", "minimum", 500_00)]
    assert rated.total == 1000_00


def test_case4_subledger_rate_on_files_bills_the_minimum(tmp_path: Path) -> None:
    """``subledger rate --contract FILE --usage FILE --period 2026-03`` gives 1000.00."""
    folder = write_folder(tmp_path, {"capped.yaml": CASE4_CONTRACT, "usage.jsonl": CASE4_USAGE})
    doc = Cli(tmp_path / "home").json("rate", "--contract", str(folder / "capped.yaml"),
                                      "--usage", str(folder / "usage.jsonl"), "--period", "2026-03", "--json")
    assert lines_of(doc) == [("usage", "api", "700.00"), ("maximum_cap", "api_cap", "-200.00"),
                             ("minimum_true_up", "minimum", "500.00")]
    assert (doc["total"], doc["total_minor"]) == ("1000.00", 1000_00)


# ------------------------------------------------------------- 5. no leakage invented on history

# Per-unit 0.01 with a 500.00 minimum a month. Really used: January 80,000 calls (800.00),
# February 30,000 (300.00 + 200.00 true-up), March 60,000 (600.00); billed exactly so,
# except March, billed for 55,000 calls (550.00): a real leak of 50.00. The usage export
# holds March on only (usage_start 2026-03-01). Judged on the usage it does not hold,
# January would look over-billed by 800.00 and under-billed by a 500.00 true-up, February
# over-billed by 300.00 and under-billed by 300.00.
CASE5 = {
    "customers.csv": """
        id,name
        acme,Acme Corp
    """,
    "contracts/acme-2026.yaml": """
        id: acme-2026
        customer: acme
        currency: USD
        start_date: 2026-01-01
        end_date: 2026-03-31
        components:
          - type: usage
            id: api
            meter: api_calls
            price: {model: per_unit, unit_price: "0.01"}
        commitments:
          - {id: monthly_min, kind: minimum, amount: "500.00"}
    """,
    "usage.jsonl": jsonl(
        ("m1", "acme", "api_calls", 35000, "2026-03-05T12:00:00Z"),
        ("m2", "acme", "api_calls", 25000, "2026-03-25T12:00:00Z"),
    ),
    "invoices.csv": """
        id,customer,contract,currency,status,issued_at,line_id,line_kind,line_component,line_meter,line_quantity,line_unit_price,line_amount,line_service_start,line_service_end
        in_jan,acme,acme-2026,USD,paid,2026-02-01,api,usage,api,api_calls,80000,0.01,800.00,2026-01-01,2026-01-31
        in_feb,acme,acme-2026,USD,paid,2026-03-01,api,usage,api,api_calls,30000,0.01,300.00,2026-02-01,2026-02-28
        in_feb,,,,,,min,true_up,monthly_min,,,,200.00,2026-02-01,2026-02-28
        in_mar,acme,acme-2026,USD,open,2026-04-01,api,usage,api,api_calls,55000,0.01,550.00,2026-03-01,2026-03-31
    """,
}
CASE5_RIGHT = [("unbilled_usage", "acme", "2026-03", 50_00)]  # March only, the real leak


def test_case5_periods_before_usage_start_are_not_covered_not_findings(engine: Engine, tmp_path: Path) -> None:
    """A files connection with usage_start=2026-03-01 over billing history from January:
    January and February are not covered (no finding), March is judged (its 50.00 leak)."""
    add_files_connection(engine, "skyline", write_folder(tmp_path / "acme", CASE5), usage_start="2026-03-01")
    report = sync(engine, trigger="test", settings=SyncSettings())
    assert leak_findings(engine) == CASE5_RIGHT
    assert report.reconcile is not None
    not_covered = sorted((c, d.isoformat()) for gap in report.reconcile.not_covered for c, d in gap.periods)
    assert not_covered == [("acme-2026", "2026-01-01"), ("acme-2026", "2026-02-01")]


def test_case5_the_cli_says_which_periods_are_not_covered(tmp_path: Path) -> None:
    """The same through the CLI: ``sync`` and ``leakage`` name the periods not judged and
    the day to pull usage from; ``leakage`` shows only March's 50.00."""
    cli = Cli(tmp_path / "home")
    cli.connect(write_folder(tmp_path / "acme", CASE5), "--set", "usage_start=2026-03-01")
    out = cli("sync").stdout
    assert "not covered: pull usage from 2026-01-01 (skyline)" in out, out
    findings = cli.query("findings", "list", "--json")
    assert sorted((f["rule"], f["customer"], f["period_start"], f["amount_minor"]) for f in findings
                  if f["rule"] in LEAK_RULES) == [("unbilled_usage", "acme", "2026-03-01", 50_00)]
    leakage = cli.query("leakage", "--json")
    assert [(r["customer"], r["period"], r["unbilled"], r["over_billed"]) for r in leakage["rows"]] == [
        ("acme", "2026-03", "50.00", "0.00")]
    gaps = sorted((p["contract"], p["period_start"]) for g in leakage["not_covered"] for p in g["periods"])
    assert gaps == [("acme-2026", "2026-01-01"), ("acme-2026", "2026-02-01")]


# ------------------------------------------------------------------ 6. lines placed by component

CASE6 = {
    "customers.csv": """
        id,name
        acme,Acme Corp
    """,
    "contracts/acme-2026.yaml": """
        id: acme-2026
        customer: acme
        currency: USD
        start_date: 2026-03-01
        end_date: 2026-03-31
        components:
          - {type: flat_fee, id: platform, amount: "100.00", timing: advance}
          - type: usage
            id: api
            meter: api_calls
            price: {model: per_unit, unit_price: "0.01"}
    """,
    "usage.jsonl": jsonl(
        ("u1", "acme", "api_calls", 600, "2026-03-10T12:00:00Z"),
        ("u2", "acme", "api_calls", 400, "2026-03-20T12:00:00Z"),
    ),
    # The $110 invoice names each line's component and gives no kind (and no contract).
    "invoices.json": """
        [{"id": "in_mar", "customer": "acme", "currency": "USD", "status": "paid", "issued_at": "2026-04-01",
          "lines": [{"id": "1", "component": "platform", "amount": "100.00",
                     "service_start": "2026-03-01", "service_end": "2026-03-31"},
                    {"id": "2", "component": "api", "quantity": "1000", "amount": "10.00",
                     "service_start": "2026-03-01", "service_end": "2026-03-31"}]},
         {"id": "in_extra", "customer": "acme", "currency": "USD", "status": "open", "issued_at": "2026-04-02",
          "lines": [{"id": "1", "description": "Onboarding workshop", "component": "onboarding", "amount": "250.00",
                     "service_start": "2026-03-15", "service_end": "2026-03-15"}]}]
    """,
    "payments.csv": """
        id,customer,currency,amount,received_at,invoice,applied_amount
        py_1,acme,USD,110.00,2026-04-05,in_mar,110.00
    """,
}


@pytest.fixture(scope="module")
def by_component(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("case6")
    cli = Cli(root / "home")
    cli.connect(write_folder(root / "acme", CASE6))
    cli("sync")
    return {
        "findings": cli.query("findings", "list", "--json"),
        "plan": cli.query("plan", "--json"),
        "march": cli.query("rate", "acme-2026", "--period", "2026-03", "--json"),
    }


def test_case6_lines_naming_only_their_component_are_matched(by_component: dict[str, Any]) -> None:
    """A paid $110 invoice: ``component: platform`` 100.00 and ``component: api`` 10.00, no
    kind. Reconciliation reports invoiced 110.00, finds nothing unbilled and plans no invoice
    (the issue saw "invoiced 0.00" and $110 billed a second time)."""
    march = by_component["march"]
    assert (march["total"], march["invoiced"]) == ("110.00", "110.00")
    assert sorted(ln["id"] for ln in march["invoiced_lines"]) == ["in_mar/1", "in_mar/2"]
    assert [f for f in by_component["findings"] if f["rule"] in ("unbilled_usage", "over_billing")] == []
    assert by_component["plan"] == []


def test_case6_a_line_no_contract_explains_is_a_finding(by_component: dict[str, Any]) -> None:
    """The 250.00 onboarding line bills nothing acme-2026 prices: an unmatched_invoice_line
    finding, never skipped silently."""
    unmatched = [f for f in by_component["findings"] if f["rule"] == "unmatched_invoice_line"]
    assert [(f["customer"], f["amount_minor"], f["currency"]) for f in unmatched] == [("acme", 250_00, "USD")]
    assert unmatched[0]["evidence"][0]["id"] == "in_extra/1"


# --------------------------------------------------- 7. paid prepaid credit and credit notes in files

CASE7_CONNECTION = "skyline"
# A billing line that applies a stored grant names it <connection>:<grant id>, as
# `subledger rate` prints it (subledger.core.store.rating_inputs.grant_from_row).
CASE7 = {
    "customers.csv": """
        id,name
        soylent,Soylent Foods
        umbrella,Umbrella Health
        initech,Initech
    """,
    # soylent: 0.01 a call, Jan-Mar 2026, paid by a 1,200.00 paid credit (breakage at expiry).
    "contracts/soylent-2026.yaml": """
        id: soylent-2026
        customer: soylent
        currency: USD
        start_date: 2026-01-01
        end_date: 2026-03-31
        components:
          - type: usage
            id: api
            meter: api_calls
            price: {model: per_unit, unit_price: "0.01"}
    """,
    # umbrella: 1.00 a call, Jan-Mar 2026, paid by a 10,000.00 paid credit, 15% expected breakage.
    "contracts/umbrella-2026.yaml": """
        id: umbrella-2026
        customer: umbrella
        currency: USD
        start_date: 2026-01-01
        end_date: 2026-03-31
        components:
          - type: usage
            id: api
            meter: api_calls
            price: {model: per_unit, unit_price: "1.00"}
    """,
    # initech: March 2026, platform 100.00 + 0.01 a call; its invoice gets a credit note.
    "contracts/initech-2026.yaml": """
        id: initech-2026
        customer: initech
        currency: USD
        start_date: 2026-03-01
        end_date: 2026-03-31
        components:
          - {type: flat_fee, id: platform, amount: "100.00", timing: advance}
          - type: usage
            id: api
            meter: api_calls
            price: {model: per_unit, unit_price: "0.01"}
    """,
    "usage.jsonl": jsonl(
        ("s_jan", "soylent", "api_calls", 30000, "2026-01-15T12:00:00Z"),   # 300.00
        ("s_feb", "soylent", "api_calls", 40000, "2026-02-15T12:00:00Z"),   # 400.00
        ("s_mar", "soylent", "api_calls", 35000, "2026-03-15T12:00:00Z"),   # 350.00
        ("u_jan", "umbrella", "api_calls", 2700, "2026-01-15T12:00:00Z"),   # 2,700.00
        ("u_feb", "umbrella", "api_calls", 2250, "2026-02-15T12:00:00Z"),   # 2,250.00
        ("u_mar", "umbrella", "api_calls", 1800, "2026-03-15T12:00:00Z"),   # 1,800.00
        ("i_mar", "initech", "api_calls", 1000, "2026-03-15T12:00:00Z"),    # 10.00
    ),
    "credit_grants.csv": """
        id,customer,contract,currency,amount,category,effective_at,expires_at,breakage,expected_breakage_rate
        cg_soylent,soylent,soylent-2026,USD,1200.00,paid,2026-01-01,2026-04-15,at_expiry,
        cg_umbrella,umbrella,umbrella-2026,USD,10000.00,paid,2026-01-01,2026-04-15,proportional,0.15
    """,
    # Each month's usage is paid in full by the credit: invoices of 0.00, as the rating engine bills them.
    "invoices.csv": """
        id,customer,contract,currency,status,issued_at,line_id,line_kind,line_component,line_meter,line_quantity,line_unit_price,line_amount,line_service_start,line_service_end
        in_s1,soylent,soylent-2026,USD,paid,2026-02-01,api,usage,api,api_calls,30000,0.01,300.00,2026-01-01,2026-01-31
        in_s1,,,,,,credit,credit,skyline:cg_soylent,,,,-300.00,2026-01-01,2026-01-31
        in_s2,soylent,soylent-2026,USD,paid,2026-03-01,api,usage,api,api_calls,40000,0.01,400.00,2026-02-01,2026-02-28
        in_s2,,,,,,credit,credit,skyline:cg_soylent,,,,-400.00,2026-02-01,2026-02-28
        in_s3,soylent,soylent-2026,USD,paid,2026-04-01,api,usage,api,api_calls,35000,0.01,350.00,2026-03-01,2026-03-31
        in_s3,,,,,,credit,credit,skyline:cg_soylent,,,,-350.00,2026-03-01,2026-03-31
        in_u1,umbrella,umbrella-2026,USD,paid,2026-02-01,api,usage,api,api_calls,2700,1.00,2700.00,2026-01-01,2026-01-31
        in_u1,,,,,,credit,credit,skyline:cg_umbrella,,,,-2700.00,2026-01-01,2026-01-31
        in_u2,umbrella,umbrella-2026,USD,paid,2026-03-01,api,usage,api,api_calls,2250,1.00,2250.00,2026-02-01,2026-02-28
        in_u2,,,,,,credit,credit,skyline:cg_umbrella,,,,-2250.00,2026-02-01,2026-02-28
        in_u3,umbrella,umbrella-2026,USD,paid,2026-04-01,api,usage,api,api_calls,1800,1.00,1800.00,2026-03-01,2026-03-31
        in_u3,,,,,,credit,credit,skyline:cg_umbrella,,,,-1800.00,2026-03-01,2026-03-31
        in_i3,initech,initech-2026,USD,paid,2026-04-01,platform,recurring,platform,,1,100.00,100.00,2026-03-01,2026-03-31
        in_i3,,,,,,api,usage,api,api_calls,1000,0.01,10.00,2026-03-01,2026-03-31
    """,
    "payments.csv": """
        id,customer,currency,amount,received_at,invoice,applied_amount
        py_i3,initech,USD,110.00,2026-04-05,in_i3,110.00
    """,
    # 10.00 of initech's API calls waived on in_i3 and paid back.
    "credit_notes.csv": """
        id,customer,currency,invoice,number,amount,refund,issued_at,reason,line_id,line_kind,line_component,line_amount
        cn_1,initech,USD,in_i3,CN-1,10.00,10.00,2026-04-10,API calls waived,api,usage,api,10.00
    """,
}


@pytest.fixture(scope="module")
def prepaid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Sync the folder and recognize through 2026-04 (the grants expire on 2026-04-15)."""
    root = tmp_path_factory.mktemp("case7")
    cli = Cli(root / "home")
    cli.connect(write_folder(root / "data", CASE7), name=CASE7_CONNECTION)
    cli("sync")
    run = cli.json("revrec", "run", "--through", "2026-04", "--json")
    journal = cli.query("journal", "export", "--format", "json")
    # Revenue by customer, month and account role (credit minus debit), from the posted journal.
    by_role: dict[str, dict[tuple[str, str], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for entry in journal["entries"]:
        for ln in entry["lines"]:
            if ln["role"] in ("revenue", "breakage_revenue", "refunds_contra", "discounts_contra",
                              "promotional_contra"):
                by_role[ln["customer"]][(entry["period"], ln["role"])] += Decimal(ln["credit"]) - Decimal(ln["debit"])
    return {
        "run": run,
        "by_role": by_role,
        "status": cli.query("status", "--json"),
        "rejects": cli.query("rejects", "--json"),
        "initech": cli.query("rate", "initech-2026", "--period", "2026-03", "--json"),
    }


def revenue_by_month(by_role: dict[tuple[str, str], Decimal]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = defaultdict(Decimal)
    for (month, _role), amount in by_role.items():
        out[month] += amount
    return {m: v for m, v in sorted(out.items()) if v}


def nonzero(by_role: dict[tuple[str, str], Decimal]) -> dict[tuple[str, str], Decimal]:
    return {k: v for k, v in sorted(by_role.items()) if v}


def test_case7_the_files_load_with_no_rejects(prepaid: dict[str, Any]) -> None:
    """Credit grants and credit notes are files the connector reads."""
    assert prepaid["rejects"] == []
    counts = prepaid["status"]["counts"]
    assert (counts["credit grants"], counts["credit notes"]) == (2, 1)


def test_case7_a_paid_credit_used_by_usage_never_makes_revenue_negative(prepaid: dict[str, Any]) -> None:
    """soylent bought 1,200.00 of paid credit (expiring 2026-04-15, breakage at expiry) and
    used 300.00 / 400.00 / 350.00 of it in January to March. Revenue is the usage as it
    occurs; the 150.00 left is breakage at expiry, in April; nothing else after the contract
    ends, nothing negative, 1,200.00 in all (the issue saw -46.59 and -288.83)."""
    soylent = prepaid["by_role"]["soylent"]
    assert nonzero(soylent) == {
        ("2026-01", "revenue"): Decimal("300.00"),
        ("2026-02", "revenue"): Decimal("400.00"),
        ("2026-03", "revenue"): Decimal("350.00"),
        ("2026-04", "breakage_revenue"): Decimal("150.00"),
    }
    assert all(v >= 0 for v in revenue_by_month(soylent).values())
    assert sum(soylent.values(), Decimal(0)) == Decimal("1200.00")


def test_case7_proportional_breakage_follows_redemptions(prepaid: dict[str, Any]) -> None:
    """umbrella bought 10,000.00 of paid credit, 15% expected to go unused (1,500.00 over
    expected redemptions of 8,500.00), and redeemed 2,700 / 2,250 / 1,800
    (docs/revrec/breakage-proportional.md). Breakage to date = 1,500 x redeemed / 8,500,
    rounded cumulatively: 476.47, 873.53, 1,191.18, so 476.47 / 397.06 / 317.65 a month;
    at expiry the estimate is trued up to the 3,250.00 actually left: 2,058.82. January
    books 3,176.47 (2,700.00 + 476.47), as the docs' journal shows; 10,000.00 in all."""
    umbrella = prepaid["by_role"]["umbrella"]
    assert nonzero(umbrella) == {
        ("2026-01", "breakage_revenue"): Decimal("476.47"),
        ("2026-01", "revenue"): Decimal("2700.00"),
        ("2026-02", "breakage_revenue"): Decimal("397.06"),
        ("2026-02", "revenue"): Decimal("2250.00"),
        ("2026-03", "breakage_revenue"): Decimal("317.65"),
        ("2026-03", "revenue"): Decimal("1800.00"),
        ("2026-04", "breakage_revenue"): Decimal("2058.82"),
    }
    assert revenue_by_month(umbrella)["2026-01"] == Decimal("3176.47")
    assert sum(umbrella.values(), Decimal(0)) == Decimal("10000.00")


def test_case7_a_credit_note_file_is_read_against_its_invoice(prepaid: dict[str, Any]) -> None:
    """cn_1 credits 10.00 of initech's paid 110.00 invoice in_i3 and refunds it. The
    contract's March is then invoiced 100.00 net, recognition books the 10.00 against
    in_i3 (which is in the store) and initech's revenue is 110.00 - 10.00 = 100.00."""
    march = prepaid["initech"]
    assert (march["total"], march["invoiced"]) == ("110.00", "100.00")
    assert {n for ln in march["invoiced_lines"] for n in ln.get("credit_notes") or []} == {"cn_1"}
    assert prepaid["status"]["counts"]["payments"] == 2  # py_i3, and cn_1's refund read as a payment
    assert sum(prepaid["by_role"]["initech"].values(), Decimal(0)) == Decimal("100.00")
    assert [w for w in prepaid["run"]["warnings"] if "in_i3" in w] == []  # in_i3 is in the store


# -------------------------------------------------------- 8. corrections carry the quantity difference

# initech: contract price 0.0025 a call, invoiced at a stale 0.002 on 158,030 calls:
# 316.06 billed, 158,030 x 0.0025 = 395.075 -> 395.08 due, 79.02 missing. Nothing more was
# used, so the correction's quantity is 0.
# globex: 100,000 calls included, then 0.002; March invoiced on 140,881 calls (40,881 over,
# 81.76); 5,000 more March calls arrive after the invoice: 10.00 more, for 5,000 calls.
CASE8 = {
    "customers.csv": """
        id,name
        initech,Initech
        globex,Globex
    """,
    "contracts/initech-2026.yaml": """
        id: initech-2026
        customer: initech
        currency: USD
        start_date: 2026-03-01
        end_date: 2026-03-31
        components:
          - type: usage
            id: api
            meter: api_calls
            price: {model: per_unit, unit_price: "0.0025"}
    """,
    "contracts/globex-2026.yaml": """
        id: globex-2026
        customer: globex
        currency: USD
        start_date: 2026-03-01
        end_date: 2026-03-31
        components:
          - type: usage
            id: api_overage
            meter: api_calls
            allotment: {quantity: 100000, per: period}
            price: {model: per_unit, unit_price: "0.002"}
    """,
    "usage.jsonl": jsonl(
        ("i1", "initech", "api_calls", 158030, "2026-03-10T12:00:00Z"),
        ("g1", "globex", "api_calls", 140881, "2026-03-10T12:00:00Z"),
    ),
    "invoices.csv": """
        id,customer,contract,currency,status,issued_at,line_id,line_kind,line_component,line_meter,line_quantity,line_unit_price,line_amount,line_service_start,line_service_end
        in_initech_03,initech,initech-2026,USD,open,2026-04-01,api,usage,api,api_calls,158030,0.002,316.06,2026-03-01,2026-03-31
        in_globex_03,globex,globex-2026,USD,open,2026-04-01,api,usage,api_overage,api_calls,40881,0.002,81.76,2026-03-01,2026-03-31
    """,
}
LATE = jsonl(("g2", "globex", "api_calls", 5000, "2026-03-31T23:00:00Z"))


@pytest.fixture(scope="module")
def corrections(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Sync; the late globex calls arrive; sync; approve and apply the corrections; sync."""
    root = tmp_path_factory.mktemp("case8")
    folder = write_folder(root / "data", CASE8)
    cli = Cli(root / "home")
    cli.connect(folder)
    cli("sync")
    with (folder / "usage.jsonl").open("a", encoding="utf-8") as f:
        f.write(LATE)
    cli("sync")
    plan = cli.query("plan", "--json")
    cli("approve", "--all")
    cli("apply")
    written = {d["customer"]: d for d in (json.loads(p.read_text())
                                          for p in sorted((folder / "invoices" / "subledger").glob("*.json")))}
    after = cli.json("sync", "--json")
    findings = cli.query("findings", "list", "--json")
    store = make_engine(f"sqlite:///{root / 'home' / 'subledger.sqlite'}")
    try:
        with Session(store) as s:
            read_back = {
                ln.invoice_id: (ln.kind, ln.component, ln.quantity, ln.amount_minor)
                for ln in s.exec(select(InvoiceLine).where(InvoiceLine.description.contains("correction"))).all()  # type: ignore[union-attr]
            }
    finally:
        store.dispose()
    return {"plan": {a["customer"]: a for a in plan}, "written": written, "after": after, "findings": findings,
            "read_back": sorted(read_back.values())}


def test_case8_a_stale_rate_correction_carries_quantity_zero(corrections: dict[str, Any]) -> None:
    """initech: the create_invoice planned for the 79.02 a stale rate left unbilled has one
    usage line of quantity 0 (the quantity difference), not 158,030; the file ``apply``
    writes says so, names the contract and component, and reads back with quantity 0."""
    action = corrections["plan"]["initech"]
    assert (action["kind"], action["amount_minor"]) == ("create_invoice", 79_02)
    [line] = action["payload"]["lines"]
    assert (line["kind"], line["component"], line["meter"], line["quantity"], line["amount_minor"]) == (
        "usage", "api", "api_calls", "0", 79_02)
    doc = corrections["written"]["initech"]
    assert (doc["contract"], doc["total"]) == ("initech-2026", "79.02")
    [written] = doc["lines"]
    assert (written["component"], Decimal(written["quantity"]), written["amount"]) == ("api", Decimal(0), "79.02")
    assert ("usage", "api", Decimal(0), 79_02) in corrections["read_back"]


def test_case8_a_late_usage_correction_carries_exactly_the_late_quantity(corrections: dict[str, Any]) -> None:
    """globex: 5,000 late calls make 10.00 more; the correction bills 5,000 calls for 10.00,
    and reads back so."""
    action = corrections["plan"]["globex"]
    [line] = action["payload"]["lines"]
    assert (line["component"], line["quantity"], line["amount_minor"]) == ("api_overage", "5000", 10_00)
    doc = corrections["written"]["globex"]
    assert doc["contract"] == "globex-2026"
    assert [(w["quantity"], w["amount"]) for w in doc["lines"]] == [("5000", "10.00")]
    assert ("usage", "api_overage", Decimal(5000), 10_00) in corrections["read_back"]


def test_case8_the_corrections_read_back_close_their_findings(corrections: dict[str, Any]) -> None:
    """The next sync reads both written invoices and resolves both unbilled findings."""
    assert corrections["after"]["findings_resolved"] == 2
    assert [f for f in corrections["findings"] if f["rule"] in LEAK_RULES] == []

