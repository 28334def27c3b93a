"""Helpers for the end-to-end tests: seeded vendor sandboxes, and the installed CLI in real processes.

A test here does what a new user does: it serves the demo company's Salesforce, HubSpot,
Stripe and NetSuite sandboxes on 127.0.0.1 (:func:`served_company`), then runs the
``subledger`` console script installed in the virtualenv, one subprocess per command
(:class:`Cli`), with its own ``SUBLEDGER_HOME``, the secrets in environment variables
and the connections' secret settings given as ``env:NAME`` references, as the README does.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from subledger.demo.company import AS_OF, Company, generate
from subledger.demo.run import ACCOUNT_MAPPING

# The installed console script (``pip install -e .`` put it next to the interpreter).
SUBLEDGER = Path(sys.prefix) / "bin" / "subledger"
# The key tests/conftest.py gives every test: secrets given literally are stored encrypted with it.
SECRET_KEY = "cT5SmvN8qBvdPGxbXW3lwM6pyBf9Hu4U1o2yQ-0s7Lc="
# The instant everything is judged at: the sandboxes' clocks are frozen there.
AS_OF_ARG = AS_OF.isoformat()  # 2026-11-15T00:00:00+00:00
COMMAND_TIMEOUT = 180

# Findings that are not leaks: the CRM's usage-to-date fields are refreshed every round, and
# the journal waits to be posted after `revrec run` (tests/demo/test_demo.py excludes both).
# Every other rule counts, so an unexpected rule (an unmatched invoice line, say) is an extra.
HOUSEKEEPING = frozenset({"crm_usage_fields", "journal_not_in_erp"})

# NetSuite's chart, by role -> the sandbox account's internal id: the file a user writes (docs/connectors/netsuite.md).
NETSUITE_ACCOUNTS = ACCOUNT_MAPPING

# Several CRMs each own part of the customers (docs/sync.md, "Identity").
SETTINGS = """\
identity:
  master: [salesforce, hubspot]
"""


def secrets_env() -> dict[str, str]:
    """The sandboxes' default credentials, as the environment variables the connections name."""
    from subledger.plugins.hubspot.sandbox import DEFAULT_TOKEN
    from subledger.plugins.netsuite import sandbox as ns
    from subledger.plugins.salesforce import sandbox as sf
    from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY

    return {
        "STRIPE_API_KEY": DEFAULT_API_KEY,
        "SF_PASSWORD": sf.DEFAULT_PASSWORD,
        "SF_TOKEN": sf.DEFAULT_TOKEN,
        "HUBSPOT_ACCESS_TOKEN": DEFAULT_TOKEN,
        "NS_CK": ns.DEFAULT_CONSUMER_KEY,
        "NS_CS": ns.DEFAULT_CONSUMER_SECRET,
        "NS_TID": ns.DEFAULT_TOKEN_ID,
        "NS_TS": ns.DEFAULT_TOKEN_SECRET,
    }


@dataclass
class Cli:
    """The installed ``subledger`` command, run in a subprocess against one data directory."""

    home: Path
    env: dict[str, str]
    calls: list[tuple[str, int, float]] = field(default_factory=list)  # command, exit code, seconds

    @classmethod
    def fresh(cls, home: Path, settings: Path | None = None) -> Cli:
        if not SUBLEDGER.exists():
            pytest.fail(f"the console script {SUBLEDGER} is not installed: run `pip install -e .` in the venv")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUBLEDGER_")}
        env.update(secrets_env())
        env.update({
            "SUBLEDGER_HOME": str(home),
            "SUBLEDGER_SECRET_KEY": SECRET_KEY,
            "COLUMNS": "200",
            "NO_COLOR": "1",
            # Everything here is on 127.0.0.1: never through a proxy.
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        })
        if settings is not None:
            env["SUBLEDGER_CONFIG"] = str(settings)
        return cls(home, env)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``subledger ARGS``; with ``check``, a non-zero exit fails with the command and its output."""
        t = time.perf_counter()
        proc = subprocess.run([str(SUBLEDGER), *args], env=self.env, cwd=self.home, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT, check=False)
        line = "subledger " + shlex.join(args)
        self.calls.append((line, proc.returncode, time.perf_counter() - t))
        if check and proc.returncode != 0:
            raise AssertionError(f"`{line}` exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
                                 f"--- stderr\n{proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        """Run a ``--json`` command (or ``--format json`` report) and parse what it printed."""
        proc = self.run(*args)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"`subledger {shlex.join(args)}` did not print JSON ({exc}):\n{proc.stdout}\n"
                                 f"--- stderr\n{proc.stderr}") from None


def connect_as_the_readme_says(cli: Cli, urls: dict[str, str], workdir: Path, *,
                               stripe_extra: tuple[str, ...] = (), check: bool = True) -> dict[str, int]:
    """``subledger init``, the four ``connections add`` of the README's connect flow (HubSpot as
    docs/connectors/hubspot.md adds it), each pointed at its sandbox, then ``connections check``
    for each (unless not ``check``). Returns each check's exit code by connection."""
    from subledger.plugins.netsuite.sandbox import DEFAULT_ACCOUNT
    from subledger.plugins.salesforce.sandbox import DEFAULT_USERNAME

    mapping = workdir / "netsuite-accounts.yaml"
    mapping.write_text(NETSUITE_ACCOUNTS)
    cli.run("init")
    cli.run("connections", "add", "stripe", "stripe", "--set", "api_key=env:STRIPE_API_KEY",
            "--set", f"api_base={urls['stripe']}", *stripe_extra)
    cli.run("connections", "add", "salesforce", "salesforce", "--set", f"username={DEFAULT_USERNAME}",
            "--set", "password=env:SF_PASSWORD", "--set", "security_token=env:SF_TOKEN",
            "--set", f"base_url={urls['salesforce']}")
    cli.run("connections", "add", "hubspot", "hubspot", "--set", "access_token=env:HUBSPOT_ACCESS_TOKEN",
            "--set", f"base_url={urls['hubspot']}")
    cli.run("connections", "add", "netsuite", "netsuite", "--set", f"account_id={DEFAULT_ACCOUNT}",
            "--set", "consumer_key=env:NS_CK", "--set", "consumer_secret=env:NS_CS",
            "--set", "token_id=env:NS_TID", "--set", "token_secret=env:NS_TS",
            "--set", f"account_mapping={mapping}",
            # The sandbox's item for invoice lines, as subledger.demo.run.connect sets it.
            "--set", "invoice_item_id=501",
            "--set", f"base_url={urls['netsuite']}")
    if not check:
        return {}
    return {name: cli.run("connections", "check", name, check=False).returncode
            for name in ("stripe", "salesforce", "hubspot", "netsuite")}


@contextmanager
def served_company(workdir: Path, customers: int = 20, seed: int = 2026) -> Iterator[tuple[Company, dict[str, Any]]]:
    """Generate the demo company and serve its seeded sandboxes; yields (company, name -> SandboxServer).

    ``company.leaks`` is complete once this has entered: seeding NetSuite records the ERP leaks.
    """
    from subledger.demo.run import sandboxes

    company = generate(customers, seed=seed)
    workdir.mkdir(parents=True, exist_ok=True)
    with sandboxes(company, workdir) as servers:
        yield company, servers


def month(value: str | None) -> str | None:
    """``2026-02-01`` -> ``2026-02``."""
    return value[:7] if value else None


def open_leaks(findings: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """Open findings as (rule, customer, amount, period), leaving out housekeeping (see HOUSEKEEPING)."""
    return Counter((f["rule"], f["customer"], f["amount_minor"], month(f["period_start"])) for f in findings
                   if f["status"] == "open" and f["rule"] not in HOUSEKEEPING)


def planted(company: Company, *, fixable: bool | None = None) -> Counter[tuple[Any, ...]]:
    """The planted leaks as (rule, customer, amount, period), like tests/demo/test_demo.py compares them."""
    return Counter((leak.rule, leak.customer, leak.amount_minor, leak.period) for leak in company.leaks
                   if fixable is None or leak.fixable == fixable)


def gaps(not_covered: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The (contract, YYYY-MM) periods a `not_covered` JSON list reports as not judged."""
    return {(p["contract"], month(p["period_start"]) or "") for gap in not_covered for p in gap["periods"]}


def months_between(first: date, last: date) -> list[str]:
    """``YYYY-MM`` of every month from ``first``'s to ``last``'s, inclusive."""
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out
