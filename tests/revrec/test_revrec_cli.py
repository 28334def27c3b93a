"""``subledger revrec run|report|close`` and ``subledger journal export``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import typer
from revrec_data import seed_annual
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from subledger.commands import journal as journal_cmd
from subledger.commands import revrec as revrec_cmd
from subledger.core.errors import ConfigError


@pytest.fixture
def cli(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """A root app with the revrec and journal commands, on the test store."""
    monkeypatch.setattr(revrec_cmd, "open_store", lambda: engine)
    monkeypatch.setattr(journal_cmd, "open_store", lambda: engine)
    app = typer.Typer()
    revrec_cmd.register(app)
    journal_cmd.register(app)
    with Session(engine) as s:
        seed_annual(s)
    return app


def invoke(app: typer.Typer, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_run_then_run_again_posts_nothing(cli: typer.Typer) -> None:
    first = json.loads(invoke(cli, "revrec", "run", "--through", "2019-03", "--json"))
    assert first["entries_posted"] == 5 and first["through"] == "2019-03-31"
    again = json.loads(invoke(cli, "revrec", "run", "--through", "2019-03", "--json"))
    assert again["entries_posted"] == 0
    assert "recognized through 2019-03-31" in invoke(cli, "revrec", "run", "--through", "2019-03")


def test_reports_in_every_format(cli: typer.Typer, tmp_path: Path) -> None:
    invoke(cli, "revrec", "run", "--through", "2019-03")
    table = invoke(cli, "revrec", "report", "waterfall")
    assert "Revenue waterfall" in table and "365.00" in table
    csv_text = invoke(cli, "revrec", "report", "rollforward", "--format", "csv")
    assert csv_text.splitlines()[0] == "account,currency,period,opening,billed,recognized,credited,other,closing"
    data = json.loads(invoke(cli, "revrec", "report", "unbilled", "--json"))
    assert data["rows"][0]["net_contract_liability"] == "275.00"
    rev = json.loads(invoke(cli, "revrec", "report", "revenue", "--by", "customer", "--format", "json"))
    assert rev["rows"][0]["total"] == "90.00"
    svg = tmp_path / "waterfall.svg"
    out = tmp_path / "waterfall.csv"
    invoke(cli, "revrec", "report", "waterfall", "--chart", str(svg), "--format", "csv", "-o", str(out))
    assert svg.read_text().startswith("<svg") and out.read_text().startswith("contract,currency")


def test_close_and_journal_export(cli: typer.Typer, tmp_path: Path) -> None:
    invoke(cli, "revrec", "run", "--through", "2019-03")
    closed = json.loads(invoke(cli, "revrec", "close", "2019-02", "--json"))
    assert closed == {"closed": ["2019-01", "2019-02"], "closed_through": "2019-02"}
    assert "already closed" in invoke(cli, "revrec", "close", "2019-01")
    exported = json.loads(invoke(cli, "journal", "export", "--format", "json"))
    ids = [e["external_id"] for e in exported["entries"]]
    assert len(ids) == len(set(ids)) == 5
    again = json.loads(invoke(cli, "journal", "export", "--format", "json"))
    assert [e["external_id"] for e in again["entries"]] == ids  # stable for an ERP upsert
    csv_file = tmp_path / "journal.csv"
    invoke(cli, "journal", "export", "--format", "csv", "--period", "2019-01", "-o", str(csv_file))
    rows = csv_file.read_text().splitlines()
    assert rows[0].startswith("external_id,entry_date,period") and all(",2019-01," in r for r in rows[1:])


def test_user_errors_name_the_fix(cli: typer.Typer) -> None:
    with pytest.raises(ConfigError, match="not a month or a date"):
        CliRunner().invoke(cli, ["revrec", "run", "--through", "March"], catch_exceptions=False)
    with pytest.raises(ConfigError, match="unknown report"):
        CliRunner().invoke(cli, ["revrec", "report", "pnl"], catch_exceptions=False)
    with pytest.raises(ConfigError, match="--format csv or --format json"):
        CliRunner().invoke(cli, ["journal", "export", "--format", "xml"], catch_exceptions=False)
    assert revrec_cmd.parse_through("2024-02") == date(2024, 2, 29)
