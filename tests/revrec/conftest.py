"""Fixtures for revenue recognition tests.

Every database test goes through ``engine``; it takes the shared ``engine`` fixture of
``tests/conftest.py`` (SQLite, plus PostgreSQL when ``SUBLEDGER_TEST_POSTGRES_URL`` is
set), so the backend is swapped in one place.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session


@pytest.fixture
def engine(engine: Engine) -> Engine:
    """A store with every table created (the shared fixture, one per backend)."""
    return engine


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on ``engine`` that keeps objects usable after commit."""
    with Session(engine, expire_on_commit=False) as s:
        yield s
