"""A new user follows the README's connect flow against seeded sandboxes (issue 14, "Deliver 8").

The demo company (20 customers, every pricing model, a year from November 2025, seen as of
15 November 2026; ``subledger.demo.company``) is seeded into the Salesforce, HubSpot, Stripe
and NetSuite sandboxes, served on 127.0.0.1 for the whole module. Every step then runs the
*installed* ``subledger`` console script in a subprocess, exactly as "Connect your real
Stripe, Salesforce and NetSuite" in README.md shows it: ``init``, ``connections add`` with
the secrets as ``env:NAME`` references (plus ``api_base``/``base_url`` pointing at the
sandboxes, and NetSuite's invoice item as ``subledger.demo.run.connect`` sets it), HubSpot
as docs/connectors/hubspot.md adds it (the demo keeps every tenth customer's contract
there) with ``identity: {master: [salesforce, hubspot]}`` in ``$SUBLEDGER_CONFIG`` as
docs/sync.md documents, ``connections check``, ``sync``, ``leakage``, ``plan``, ``approve
--all``, ``apply``. No ``usage_start`` is given (the README gives none) and nothing is
auto-approved. Every judging command gets ``--as-of 2026-11-15T00:00:00+00:00``, the
instant the sandboxes' clocks are frozen at.

Scenario 1 (``readme_flow``): the first sync finds exactly the planted leaks and judges
every period; the plan lists their fixes; after apply the fixes are billed (Stripe: draft
invoices, which a person finalizes, since ``finalize_invoices`` is off by default) and the
unbilled findings resolve; revenue recognized per contract equals its contract value.

Scenario 2 (``partial_usage``): a fresh store whose Stripe connection reads usage only from
2026-06-01: nothing is judged before it, the periods not read are reported as not covered,
and the planted leaks from June on are still found.

The reference for every amount is the company's own plan, not the product: the planted
leaks (``Company.leaks``, exact amounts) and, for revenue, ``Plan.month_charge`` of each
month's usage (late usage included) plus the breakage of unused prepaid credit. ``subledger
rate CONTRACT --period`` is checked against the same plan on the three leaky periods.
Findings are compared like tests/demo/test_demo.py's ``_as_found`` (rule, customer, amount,
period), leaving out only housekeeping (``crm_usage_fields``, ``journal_not_in_erp``): every
other rule counts, so an unexpected one (an unmatched invoice line, say) is an extra.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from e2e_support import (
    AS_OF_ARG,
    HOUSEKEEPING,
    SETTINGS,
    Cli,
    connect_as_the_readme_says,
    gaps,
    month,
    months_between,
    open_leaks,
    planted,
    served_company,
)

from subledger.demo.company import CREDIT_EXPIRES, YEAR_START, Company, Customer, month_starts

ALL_STATUSES = ("--status", "open", "--status", "acknowledged", "--status", "resolved", "--status", "ignored")
USAGE_START = "2026-06-01"  # scenario 2
YEAR = [f"{m:%Y-%m}" for m in month_starts()]  # 2025-11 .. 2026-10
LAST_MONTH = YEAR[-1]


def _findings(cli: Cli) -> list[dict[str, Any]]:
    return cli.json("findings", "list", "--json", *ALL_STATUSES)


def _finalize_stripe_drafts(url: str) -> list[dict[str, Any]]:
    """What a person does in Stripe after reviewing subledger's draft invoices: finalize each one.

    Through the Stripe API (the official SDK) on the sandbox, as the Dashboard would."""
    import stripe

    from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY

    client = stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": url}, max_network_retries=0)
    drafts = list(client.v1.invoices.list(params={"status": "draft", "limit": 100}).auto_paging_iter())
    out = []
    for inv in drafts:
        final = client.v1.invoices.finalize_invoice(inv.id)
        out.append({"id": inv.id, "customer": inv.customer, "total": inv.total, "status": final.status,
                    "metadata": inv.metadata.to_dict() if inv.metadata else {}})
    return out


@pytest.fixture(scope="module")
def readme_flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Scenario 1, run once: every CLI step in order, what each printed kept for the tests.

    Only a command's exit code stops the flow here; the tests judge what was printed."""
    tmp = tmp_path_factory.mktemp("readme-flow")
    seen: dict[str, Any] = {}
    with served_company(tmp / "sandboxes") as (company, servers):
        urls = {name: server.url for name, server in servers.items()}
        settings = tmp / "subledger.yaml"
        settings.write_text(SETTINGS)
        cli = Cli.fresh(tmp, settings)
        seen.update(company=company, cli=cli)
        seen["checks"] = connect_as_the_readme_says(cli, urls, tmp)
        # subledger sync; subledger leakage && subledger plan
        seen["sync1"] = cli.json("sync", "--as-of", AS_OF_ARG, "--json")
        seen["leakage1"] = cli.json("leakage", "--json", "--as-of", AS_OF_ARG)
        seen["findings1"] = _findings(cli)
        seen["plan_text"] = cli.run("plan").stdout
        seen["plan1"] = cli.json("plan", "--json")
        # subledger approve --all && subledger apply; then sync again
        cli.run("approve", "--all")
        seen["apply1"] = cli.json("apply", "--json")
        seen["sync2"] = cli.json("sync", "--as-of", AS_OF_ARG, "--json")
        seen["findings2"] = _findings(cli)
        # The Stripe invoices subledger wrote are drafts (finalize_invoices is off by default,
        # docs/connectors/stripe.md); a person reviews and finalizes them in Stripe.
        seen["drafts"] = _finalize_stripe_drafts(urls["stripe"])
        seen["sync3"] = cli.json("sync", "--as-of", AS_OF_ARG, "--json")
        seen["findings3"] = _findings(cli)
        # The finalized invoices are new billing invoices: export them to NetSuite the same way.
        seen["plan3"] = cli.json("plan", "--json")
        cli.run("approve", "--all")
        seen["apply3"] = cli.json("apply", "--json")
        # Revenue: recognize the year, then read it back per contract.
        seen["revrec"] = cli.json("revrec", "run", "--through", LAST_MONTH, "--as-of", AS_OF_ARG, "--json")
        seen["revenue"] = cli.json("revrec", "report", "revenue", "--by", "contract", "--format", "json")
        seen["unbilled"] = cli.json("revrec", "report", "unbilled", "--format", "json")
        seen["waterfall"] = cli.json("revrec", "report", "waterfall", "--by", "contract", "--format", "json")
        seen["rates"] = {(c.canonical_id, period): cli.json("rate", contract_id(c), "--period", period, "--json",
                                                             "--as-of", AS_OF_ARG)
                         for c, period in _rated_samples(company)}
        # The exports reach NetSuite, and the breakage is booked: both resolve on the next sync.
        seen["sync4"] = cli.json("sync", "--as-of", AS_OF_ARG, "--json")
        seen["findings4"] = _findings(cli)
        yield seen


@pytest.fixture(scope="module")
def partial_usage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Scenario 2: its own sandboxes and a fresh store; Stripe usage read only from 2026-06-01."""
    tmp = tmp_path_factory.mktemp("partial-usage")
    seen: dict[str, Any] = {}
    with served_company(tmp / "sandboxes") as (company, servers):
        urls = {name: server.url for name, server in servers.items()}
        settings = tmp / "subledger.yaml"
        settings.write_text(SETTINGS)
        cli = Cli.fresh(tmp, settings)
        seen.update(company=company, cli=cli)
        # Scenario 1 checks the connections; this one saves the four `connections check` runs.
        connect_as_the_readme_says(cli, urls, tmp, stripe_extra=("--set", f"usage_start={USAGE_START}"),
                                   check=False)
        seen["sync"] = cli.json("sync", "--as-of", AS_OF_ARG, "--json")
        seen["leakage"] = cli.json("leakage", "--json", "--as-of", AS_OF_ARG)
        seen["findings"] = _findings(cli)
        yield seen


# -- the company's own numbers ---------------------------------------------------------------


def contract_id(c: Customer) -> str:
    """The canonical contract's external id: the Opportunity Id (Salesforce) or the deal id (HubSpot)."""
    from subledger.demo.seed_hubspot import deal_id

    return deal_id(c) if c.crm == "hubspot" else c.opportunity_id


def expected_by_month(company: Company, c: Customer) -> dict[str, Decimal]:
    """What the contract earns each month of the year, from the plan itself: ``Plan.month_charge``
    (fee, usage and the minimum's true-up) of all the month's usage, late usage included; for
    prepaid credit, the unused balance is breakage in the month the credit expires."""
    late = Counter()
    for lu in company.late_usage:
        late[(lu.customer.canonical_id, lu.month)] += lu.quantity
    usage = {m: c.usage[m] + late[(c.canonical_id, m)] for m in month_starts()}
    out = {f"{m:%Y-%m}": c.plan.month_charge(q) for m, q in usage.items()}
    if c.plan.prepaid_credit is not None:
        redeemable = sum((c.plan.usage_charge(q) for m, q in usage.items() if m < CREDIT_EXPIRES), Decimal(0))
        out[f"{CREDIT_EXPIRES:%Y-%m}"] += max(Decimal(0), c.plan.prepaid_credit - redeemable)
    return out


def _rated_samples(company: Company) -> list[tuple[Customer, str]]:
    """The contract-periods the leaks are planted in: late usage, a missed true-up, the drifted rate."""
    samples = [(lu.customer, f"{lu.month:%Y-%m}") for lu in company.late_usage[:1]]
    samples += [(company.by_id(cid), f"{m:%Y-%m}") for cid, m in company.short_minimum[:1]]
    samples += [(company.by_id(cid), LAST_MONTH) for cid in company.drifted[:1]]
    return samples


def _minor(major: str) -> int:
    return int(Decimal(major) * 100)


# -- scenario 1: the README's connect flow, every period read ----------------------------------


def test_every_connection_checks_out(readme_flow: dict[str, Any]) -> None:
    assert readme_flow["checks"] == {"stripe": 0, "salesforce": 0, "hubspot": 0, "netsuite": 0}


def test_every_sync_succeeds(readme_flow: dict[str, Any]) -> None:
    for run in ("sync1", "sync2", "sync3", "sync4"):
        assert (readme_flow[run]["status"], readme_flow[run]["errors"]) == ("succeeded", []), run
        assert readme_flow[run]["not_covered"] == [], run


def test_the_first_sync_finds_exactly_the_planted_leaks(readme_flow: dict[str, Any]) -> None:
    company: Company = readme_flow["company"]
    sync = readme_flow["sync1"]
    assert sync["status"] == "succeeded" and sync["errors"] == []
    found = open_leaks(readme_flow["findings1"])
    expected = planted(company)
    assert found == expected, {"extra": sorted((found - expected).elements(), key=str),
                               "missing": sorted((expected - found).elements(), key=str)}
    # The HubSpot customers' contracts were read and judged too (every tenth customer).
    assert any(c.crm == "hubspot" for c in company.customers)
    assert {f["rule"] for f in readme_flow["findings1"]} - set(k[0] for k in expected) <= HOUSEKEEPING


def test_every_period_was_read_so_nothing_is_reported_not_covered(readme_flow: dict[str, Any]) -> None:
    # Stripe's usage_start defaults to the earliest subscription start (2025-11-01).
    assert readme_flow["sync1"]["not_covered"] == []
    assert readme_flow["leakage1"]["not_covered"] == []


def test_leakage_is_the_planted_unbilled_amounts(readme_flow: dict[str, Any]) -> None:
    company: Company = readme_flow["company"]
    leakage = readme_flow["leakage1"]
    unbilled = Counter({(leak.customer, leak.period): leak.amount_minor for leak in company.leaks
                        if leak.rule == "unbilled_usage"})
    assert leakage["totals"]["USD"]["unbilled_minor"] == sum(unbilled.values())
    assert leakage["totals"]["USD"]["over_billed_minor"] == 0
    assert Counter({(r["customer"], r["period"]): r["unbilled_minor"] for r in leakage["rows"]}) == unbilled


def test_the_plan_lists_a_fix_for_each_fixable_leak(readme_flow: dict[str, Any]) -> None:
    findings = {f["id"]: f for f in readme_flow["findings1"]}
    actions = readme_flow["plan1"]
    fixes = [a for a in actions if a["rule"] not in HOUSEKEEPING]
    # Unbilled charges are invoiced in Stripe; the invoice NetSuite lacks is created there.
    fixable = {fid: f for fid, f in findings.items() if f["rule"] in ("unbilled_usage", "invoice_missing_from_erp")}
    assert Counter(a["finding_id"] for a in fixes) == Counter(fixable.keys())
    for a in fixes:
        f = findings[a["finding_id"]]
        target = "stripe" if f["rule"] == "unbilled_usage" else "netsuite"
        assert (a["connection"], a["kind"], a["amount_minor"], a["status"]) == (
            target, "create_invoice", f["amount_minor"], "planned"), a
    # Nothing is planned for what people must decide (terms drift, unapplied cash, identity).
    assert {findings[a["finding_id"]]["rule"] for a in actions} <= {*HOUSEKEEPING, *{f["rule"] for f in
                                                                                  fixable.values()}}
    # `subledger plan` (the table a person reads) shows every one of them.
    for a in actions:
        assert a["id"] in readme_flow["plan_text"]


def test_apply_writes_every_approved_fix_exactly_once(readme_flow: dict[str, Any]) -> None:
    applied = readme_flow["apply1"]
    assert applied["failed"] == [] and applied["conflicts"] == []
    assert sorted(applied["done"] + applied["found_existing"]) == sorted(a["id"] for a in readme_flow["plan1"])
    # Each unbilled finding became exactly one Stripe invoice for exactly its amount.
    company: Company = readme_flow["company"]
    unbilled = [f for f in readme_flow["findings1"] if f["rule"] == "unbilled_usage"]
    written = Counter((d["customer"], d["total"]) for d in readme_flow["drafts"])
    assert written == Counter((company.by_id(f["customer"]).stripe_id, f["amount_minor"]) for f in unbilled)


def test_the_missing_netsuite_invoice_resolves_after_apply(readme_flow: dict[str, Any]) -> None:
    missing = [f for f in readme_flow["findings1"] if f["rule"] == "invoice_missing_from_erp"]
    assert missing
    after = {f["id"]: f["status"] for f in readme_flow["findings2"]}
    assert {after[f["id"]] for f in missing} == {"resolved"}
    assert readme_flow["sync2"]["findings_opened"] == 0


def test_the_unbilled_findings_resolve_once_their_invoices_are_billed(readme_flow: dict[str, Any]) -> None:
    unbilled = [f["id"] for f in readme_flow["findings1"] if f["rule"] == "unbilled_usage"]
    assert unbilled
    # While the invoices are Stripe drafts nothing is billed yet (docs/connectors/stripe.md:
    # finalize_invoices is off by default; docs/sync.md: open, paid and uncollectible invoices count).
    draft_time = {f["id"]: f["status"] for f in readme_flow["findings2"]}
    assert {draft_time[i] for i in unbilled} == {"open"}
    assert readme_flow["drafts"] and {d["status"] for d in readme_flow["drafts"]} == {"open"}
    billed = {f["id"]: f["status"] for f in readme_flow["findings3"]}
    assert {billed[i] for i in unbilled} == {"resolved"}
    assert [f for f in readme_flow["findings3"] if f["status"] == "open" and f["rule"] in (
        "unbilled_usage", "over_billing", "unmatched_invoice_line")] == []


def test_the_corrections_are_exported_to_netsuite_too(readme_flow: dict[str, Any]) -> None:
    drafts = {d["id"] for d in readme_flow["drafts"]}
    opened = [f for f in readme_flow["findings3"] if f["rule"] == "invoice_missing_from_erp" and f["status"] == "open"]
    assert {f["key"].split(":", 1)[1] for f in opened} == drafts
    exports = [a for a in readme_flow["plan3"] if a["rule"] == "invoice_missing_from_erp"]
    assert Counter(a["finding_id"] for a in exports) == Counter(f["id"] for f in opened)
    assert {(a["connection"], a["kind"]) for a in exports} == {("netsuite", "create_invoice")}
    applied = readme_flow["apply3"]
    assert applied["failed"] == [] and applied["conflicts"] == []
    assert [f for f in readme_flow["findings4"] if f["rule"] == "invoice_missing_from_erp"
            and f["status"] == "open"] == []


def test_rate_on_the_store_agrees_with_the_plan(readme_flow: dict[str, Any]) -> None:
    """`subledger rate CONTRACT --period` (the read model) prices the leaky periods as the plan does."""
    company: Company = readme_flow["company"]
    rates = readme_flow["rates"]
    assert len(rates) == 3
    for (customer, period), rated in rates.items():
        assert rated["covered"] and rated["ended"], rated
        assert rated["total_minor"] == _minor(str(expected_by_month(company, company.by_id(customer))[period])), (
            customer, period, rated["total"])


def test_recognized_revenue_per_contract_is_its_contract_value(readme_flow: dict[str, Any]) -> None:
    """Revenue recognized over the year, per CRM contract, equals what the contract is worth
    (the plan's monthly charges of all the usage, late usage included, plus breakage of unused
    prepaid credit), month by month, with the corrections billed: nothing counted twice."""
    company: Company = readme_flow["company"]
    assert readme_flow["revrec"]["through"] == "2026-10-31"
    assert readme_flow["revrec"]["warnings"] == []
    customer_of = {r["contract"]: r["customer"] for r in readme_flow["unbilled"]["rows"]}
    rows = readme_flow["revenue"]["rows"]
    months = [c for c in readme_flow["revenue"]["columns"] if c[:2] == "20"]
    assert set(months) <= set(YEAR)
    got: dict[str, dict[str, int]] = {}
    for row in rows:
        assert row["currency"] == "USD"
        owner = customer_of.get(row["contract"], row["contract"])
        assert owner not in got, f"{owner} has revenue under more than one contract"
        got[owner] = {m: _minor(row.get(m, "0")) for m in YEAR} | {"total": _minor(row["total"])}
    want: dict[str, dict[str, int]] = {}
    for c in company.customers:
        by_month = {m: _minor(str(v)) for m, v in expected_by_month(company, c).items()}
        want[c.canonical_id] = by_month | {"total": sum(by_month.values())}
    assert {k: v["total"] for k, v in got.items()} == {k: v["total"] for k, v in want.items()}
    assert got == want


def test_every_billed_line_is_scheduled_under_its_crm_contract(readme_flow: dict[str, Any]) -> None:
    """Issue 14, Deliver 3: every invoice line attaches to the obligation it bills, a Salesforce
    contract's line billed through Stripe included. The waterfall (recognized months, then the
    months still scheduled) therefore shows no revenue outside the customers' CRM contracts:
    Stripe bills November 2026's platform fee in advance, on 1 November, and that fee belongs to
    the hybrid customers' contracts like every earlier month's."""
    contracts = {r["contract"] for r in readme_flow["unbilled"]["rows"]}
    outside = {row["contract"]: row["total"] for row in readme_flow["waterfall"]["rows"]
               if row["contract"] not in contracts and _minor(row["total"]) != 0}
    assert outside == {}


def test_after_recognition_only_what_people_must_fix_is_left(readme_flow: dict[str, Any]) -> None:
    company: Company = readme_flow["company"]
    breakage = [f["id"] for f in readme_flow["findings1"] if f["rule"] == "expired_credit_unrecognized"]
    assert breakage
    final = {f["id"]: f for f in readme_flow["findings4"]}
    assert {final[i]["status"] for i in breakage} == {"resolved"}
    left = open_leaks(readme_flow["findings4"])
    expected = planted(company, fixable=False)
    assert left == expected, {"extra": sorted((left - expected).elements(), key=str),
                              "missing": sorted((expected - left).elements(), key=str)}


# -- scenario 2: usage read only from 2026-06-01 ------------------------------------------------


def test_the_partial_usage_sync_succeeds(partial_usage: dict[str, Any]) -> None:
    assert partial_usage["sync"]["status"] == "succeeded" and partial_usage["sync"]["errors"] == []


def test_nothing_is_judged_in_a_period_whose_usage_was_not_read(partial_usage: dict[str, Any]) -> None:
    judged = [f for f in partial_usage["findings"] if f["rule"] in ("unbilled_usage", "over_billing",
                                                                    "unmatched_invoice_line")]
    early = [(f["rule"], f["customer"], f["amount_minor"], month(f["period_start"])) for f in judged
             if (month(f["period_start"]) or "") < USAGE_START[:7]]
    assert early == []
    # terms_drift's amount is what billing under-charges in the last ended period (October, read).
    company: Company = partial_usage["company"]
    drift = Counter((f["customer"], f["amount_minor"]) for f in partial_usage["findings"]
                    if f["rule"] == "terms_drift" and f["status"] == "open")
    assert drift == Counter((leak.customer, leak.amount_minor) for leak in company.leaks if leak.rule == "terms_drift")


def test_the_periods_not_read_are_reported_not_covered(partial_usage: dict[str, Any]) -> None:
    """Every contract's months before 2026-06 are not covered, and every period from June on is
    judged. docs/sync.md: a period that carries state from earlier periods needs them read too;
    the prepaid contracts' credit expired on 1 May 2026, so from June nothing carries over."""
    company: Company = partial_usage["company"]
    before = months_between(YEAR_START, date(2026, 5, 1))
    want = {(contract_id(c), m) for c in company.customers for m in before}
    sync_gaps = partial_usage["sync"]["not_covered"]
    leakage_gaps = partial_usage["leakage"]["not_covered"]
    assert gaps(sync_gaps) == want
    assert gaps(leakage_gaps) == want
    for gap in sync_gaps + leakage_gaps:
        assert gap["system"] == "stripe"
        assert gap["message"].startswith(f"not covered: pull usage from {gap['pull_usage_from'][:10]}"), gap
        assert gap["pull_usage_from"][:10] < USAGE_START


def test_the_planted_leaks_from_june_on_are_still_found(partial_usage: dict[str, Any]) -> None:
    company: Company = partial_usage["company"]
    unread = {"unbilled_usage", "over_billing"}
    expected = Counter({k: n for k, n in planted(company).items()
                        if not (k[0] in unread and k[3] is not None and k[3] < USAGE_START[:7])})
    assert any(k[0] == "unbilled_usage" for k in expected)  # the drifted rate, June to October
    found = open_leaks(partial_usage["findings"])
    assert found == expected, {"extra": sorted((found - expected).elements(), key=str),
                               "missing": sorted((expected - found).elements(), key=str)}

