"""The core CLI end to end, in a real process: init, plugins, connections, pull, rejects, status.

Each command runs as ``python -m subledger`` with its own data directory, exactly as a user
runs it, so the one-line errors, exit codes and ``--json`` output are what users get.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "SUBLEDGER_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("SUBLEDGER_DATABASE_URL", None)

    def call(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "subledger", *args], capture_output=True, text=True, env=env,
                              timeout=120)
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    return call


def test_plugins_json_lists_the_built_in_plugins(run) -> None:  # type: ignore[no-untyped-def]
    plugins = {p["name"]: p for p in json.loads(run("plugins", "--json").stdout)}
    assert plugins["files"]["status"] == "loaded" and plugins["files"]["connectors"] == ["files"]
    assert "unbilled_usage" in plugins["rules"]["rules"]
    assert plugins["stripe"]["connectors"] == ["stripe"]


def test_a_store_that_is_not_initialised_is_one_line_naming_the_fix(run) -> None:  # type: ignore[no-untyped-def]
    done = run("status", ok=False)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "there is no store at" in done.stderr and "run `subledger init`" in done.stderr
    debug = run("--debug", "status", ok=False)
    assert "Traceback" in debug.stderr


def test_init_pull_rejects_status_on_the_examples(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder)
    assert "store created" in run("init").stdout
    assert "already current" in run("init").stdout  # re-running is safe
    run("connections", "add", "skyline", "files", "--set", f"path={folder}")
    run("connections", "add", "bad", "files", "--set", f"path={folder / 'bad'}")
    dup = run("connections", "add", "skyline", "files", "--set", f"path={folder}", ok=False)
    assert dup.returncode == 2 and "already exists" in dup.stderr and "--replace" in dup.stderr
    assert json.loads(run("connections", "check", "skyline", "--json").stdout)["ok"] is True
    listed = json.loads(run("connections", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["bad", "skyline"]

    first = json.loads(run("pull", "--json").stdout)
    streams = {(r["connection"], s["stream"]): s for r in first for s in r["streams"]}
    assert streams[("skyline", "usage_events")]["usage_inserted"] == 1052
    assert sum(s["rejected"] for s in streams.values()) > 0  # only the bad folder has rejects
    again = json.loads(run("pull", "--json").stdout)
    assert sum(s["records"] for r in again for s in r["streams"]) == 0  # nothing loaded twice

    rejects = json.loads(run("rejects", "--json").stdout)
    assert rejects and {r["connection"] for r in rejects} == {"bad"}
    assert all(r["location"] and r["reason"] and r["fix"] for r in rejects)

    status = json.loads(run("status", "--json").stdout)
    assert status["counts"]["usage events"] >= 1052 and status["counts"]["customers"] >= 6
    run("connections", "remove", "bad")
    missing = run("connections", "check", "bad", ok=False)
    assert missing.returncode == 2 and "no connection named 'bad'" in missing.stderr
