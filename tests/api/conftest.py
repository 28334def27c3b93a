"""An app over the test's store (SQLite and PostgreSQL) and keys of every scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_support import make_known
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from subledger.api import create_app
from subledger.api.keys import create_key
from subledger.api.settings import ServiceSettings
from subledger.sync.settings import SyncSettings


@pytest.fixture
def app(engine: Engine):  # type: ignore[no-untyped-def]
    return create_app(
        engine,
        ServiceSettings(webhook_secrets={"stripe": ["whsec_test_secret"]}),
        sync_settings=SyncSettings(roles={"crm": ["crm"], "billing": ["billing"], "api": ["metering"]}),
    )


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def keys(engine: Engine) -> dict[str, str]:
    """A token per scope (``ingest``, ``read``, ``write``, ``admin``)."""
    return {s: create_key(engine, name=f"test {s}", scopes=[s], actor="user:test").token
            for s in ("ingest", "read", "write", "admin")}


@pytest.fixture
def known(engine: Engine) -> None:
    """Customers acme and globex and meters api_calls and storage are known to ingest."""
    make_known(engine)
