"""Shared fixtures: every store test runs on SQLite and, when configured, on PostgreSQL.

Set ``SUBLEDGER_TEST_POSTGRES_URL`` (``.ci/run`` sets it to the server on
127.0.0.1:5432) to add the PostgreSQL variant; each test then gets its own schema.
"""

from __future__ import annotations

import os
import uuid

# CLI output is rich tables; give them a wide, fixed terminal so assertions do not depend
# on where the tests run (xdist workers have no terminal and would get 80 columns).
os.environ["COLUMNS"] = "200"

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

import subledger.core.model  # noqa: F401  (registers every table)
from subledger.core.store.engine import make_engine

PG_URL = os.environ.get("SUBLEDGER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if PG_URL else [])]

SPECS = os.environ.get("SUBLEDGER_VENDOR_SPECS")
if os.environ.get("CI") and not (SPECS and os.path.isdir(SPECS)):
    # Tests skip the vendor-spec checks when the specs are absent; CI must run them.
    raise pytest.UsageError(
        "CI must validate against the vendors' specs: set SUBLEDGER_VENDOR_SPECS to shared/vendor-specs "
        f"(got {SPECS!r}); .ci/run does this"
    )

if os.environ.get("CI") and not PG_URL:
    raise pytest.UsageError(
        "CI must run the store tests on PostgreSQL: set SUBLEDGER_TEST_POSTGRES_URL "
        "(e.g. postgresql://postgres@127.0.0.1:5432/test)"
    )


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's real data directory or database."""
    home = tmp_path_factory.mktemp("subledger-home")
    monkeypatch.setenv("SUBLEDGER_HOME", str(home))
    monkeypatch.setenv("SUBLEDGER_SECRET_KEY", "cT5SmvN8qBvdPGxbXW3lwM6pyBf9Hu4U1o2yQ-0s7Lc=")
    monkeypatch.delenv("SUBLEDGER_DATABASE_URL", raising=False)


def _pg_engine(schema: str) -> Engine:
    return make_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})


@pytest.fixture
def empty_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    """An engine on an empty database of the test's backend (no tables)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'test.sqlite'}")
        yield engine
        engine.dispose()
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = _pg_engine(schema)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    """An engine on a database with every table created."""
    SQLModel.metadata.create_all(empty_engine)
    return empty_engine


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Any test that uses the database runs once per backend.
    if "empty_engine" in metafunc.fixturenames:
        metafunc.parametrize("empty_engine", BACKENDS, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("empty_engine") == "postgresql":
            item.add_marker(pytest.mark.postgres)
