"""``subledger sandbox list`` and ``subledger sandbox serve`` (the command module, on its own app)."""

from __future__ import annotations

import importlib.metadata
import json
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import subledger.plugins.stripe as stripe_plugin
from subledger.commands import sandbox as sandbox_commands
from subledger.core.errors import ConfigError
from subledger.core.plugins import register_plugin

INSTALLED = any(ep.name == "stripe" for ep in importlib.metadata.entry_points(group="subledger"))


@pytest.fixture
def app(isolated_plugins: None) -> typer.Typer:
    if not INSTALLED:
        register_plugin(stripe_plugin, name="stripe")
    root = typer.Typer()
    root.command("noop")(lambda: None)  # typer needs two commands to keep sub-app names
    sandbox_commands.register(root)
    return root


def test_list_shows_the_stripe_sandbox(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["sandbox", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["stripe"]["class"] == "subledger.plugins.stripe.sandbox.StripeSandbox"


def test_an_unknown_sandbox_names_the_ones_there_are(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["sandbox", "serve", "strip"])
    assert isinstance(result.exception, ConfigError)
    assert "no sandbox named 'strip'" in str(result.exception) and "stripe" in (result.exception.fix or "")


SERVE = textwrap.dedent("""
    import sys, typer
    import subledger.plugins.stripe as plugin
    from subledger.commands import sandbox
    from subledger.core.plugins import register_plugin
    if sys.argv[1] == "register":
        register_plugin(plugin, name="stripe")
    app = typer.Typer()
    app.command("noop")(lambda: None)
    sandbox.register(app)
    app(sys.argv[2:])
""")


def _get(url: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
        return json.loads(resp.read())


def test_serve_runs_a_seeded_sandbox_until_terminated(tmp_path: Path) -> None:
    (tmp_path / "seed.yaml").write_text("customers:\n  - {id: cus_cli, name: From the CLI}\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "skip" if INSTALLED else "register", "sandbox", "serve", "stripe",
         "--port", "0", "--json", "--seed", str(tmp_path / "seed.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        url, key = started["url"], started["connection"]["api_key"]
        assert url.startswith("http://127.0.0.1:") and started["connection"]["api_base"] == url
        assert _get(f"{url}/_sandbox/health")["sandbox"] == "stripe"
        assert [c["id"] for c in _get(f"{url}/v1/customers", key)["data"]] == ["cus_cli"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
