#!/usr/bin/env bash
# Install subledger into .venv and run the main job on the embedded default (SQLite and the
# built-in vendor sandboxes on 127.0.0.1, no accounts, no network): `subledger demo` seeds a
# company into the Stripe, Salesforce, HubSpot and NetSuite sandboxes, syncs, finds and fixes
# the planted leaks, recognizes the year's revenue, posts the journal and closes the books.
# Extra arguments go to `subledger demo` (e.g. --customers 50, --keep). Safe to re-run: the
# demo always starts from a fresh company.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]'
SL=.venv/bin/subledger
$SL init
$SL demo "$@"
