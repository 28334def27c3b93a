#!/usr/bin/env bash
# Install subledger into .venv and run the main job on the embedded default store
# (SQLite in your user data directory): init, then sync the shipped examples/ folder
# (pull, identity, reconciliation, plan), then show what leaked and the store's status.
# Safe to re-run: nothing is loaded twice and nothing is written back without approval.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]'
SL=.venv/bin/subledger
$SL init
$SL connections add examples files --set path=examples --replace
$SL sync examples
$SL findings list
$SL leakage
$SL plan
$SL status
