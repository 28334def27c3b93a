"""Fixtures for revenue recognition tests.

Every database test goes through ``engine``; it takes the shared ``engine`` fixture of
``tests/conftest.py`` (SQLite, plus PostgreSQL when ``SUBLEDGER_TEST_POSTGRES_URL`` is
set), so the backend is swapped in one place, and installs the ledger's database
invariants on it (as the migrations do), so recognition runs, closes and reports under
the same guards as a real store.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from subledger.core.store.migrate import install_ledger_invariants


@pytest.fixture
def engine(engine: Engine) -> Engine:
    """A store with every table created and the ledger invariants installed (one per backend)."""
    install_ledger_invariants(engine)
    return engine


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on ``engine`` that keeps objects usable after commit."""
    with Session(engine, expire_on_commit=False) as s:
        yield s
