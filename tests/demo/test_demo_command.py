"""`subledger demo --json` on the smallest company: a summary for scripts and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from subledger.commands.demo import register


def test_demo_command_prints_a_json_summary_and_writes_the_report(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # a group, as in the real CLI, so the command is addressed by name
        pass

    report = tmp_path / "demo.html"
    result = CliRunner().invoke(app, ["demo", "--customers", "14", "--report", str(report), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["customers"] == 14
    rules = {f["rule"] for f in summary["findings"]}
    assert {"unbilled_usage", "terms_drift", "invoice_missing_from_erp", "unapplied_payment", "identity"} <= rules
    assert summary["unbilled_minor"] == sum(f["amount_minor"] for f in summary["findings"]
                                            if f["rule"] == "unbilled_usage") > 0
    assert [r["step"] for r in summary["rounds"]] == ["find and fix", "verify", "post journal", "after the close"]
    assert all(r["failed"] == 0 for r in summary["rounds"])
    assert summary["journal_posted"] > 0 and summary["closed"][-1] == "2026-10"
    assert summary["report"] == str(report.resolve()) and "Revenue waterfall" in report.read_text()


def test_too_few_customers_is_refused_before_anything_starts() -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        pass

    result = CliRunner().invoke(app, ["demo", "--customers", "3"])
    assert result.exit_code == 2 and "--customers" in result.output
