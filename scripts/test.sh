#!/usr/bin/env bash
# Install subledger with every extra into .venv, then run ruff and the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check subledger tests bench
# Store tests also run on PostgreSQL when this is set (CI sets it; see .ci/run).
if [ -n "${SUBLEDGER_TEST_POSTGRES_URL:-}" ]; then
  echo "store tests: SQLite and PostgreSQL ($SUBLEDGER_TEST_POSTGRES_URL)"
else
  echo "store tests: SQLite only (set SUBLEDGER_TEST_POSTGRES_URL to add PostgreSQL)"
fi
exec .venv/bin/python -m pytest -n 2 -q "$@"
