"""Fixtures: a seeded NetSuite sandbox on 127.0.0.1 and connectors on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ns_testkit import seeded_fixture, tba_config

from subledger.core.sandbox import SandboxClock, SandboxServer
from subledger.core.secrets import load_config
from subledger.plugins.netsuite.config import NetSuiteConfig
from subledger.plugins.netsuite.connector import NetSuiteConnector
from subledger.plugins.netsuite.sandbox import NetSuiteSandbox


@pytest.fixture
def sandbox() -> NetSuiteSandbox:
    clock = SandboxClock()
    clock.freeze(0)
    return NetSuiteSandbox(clock=clock, fixture=seeded_fixture())


@pytest.fixture
def server(sandbox: NetSuiteSandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


@pytest.fixture
def connect(server: SandboxServer) -> Iterator[Callable[..., NetSuiteConnector]]:
    """``connect(max_concurrency=2, ...)``: a connector on the sandbox (closed after the test)."""
    made: list[NetSuiteConnector] = []

    def build(**overrides: Any) -> NetSuiteConnector:
        config = load_config(NetSuiteConfig, tba_config(server.url, **overrides))
        connector = NetSuiteConnector(config, connection="netsuite")  # type: ignore[arg-type]
        made.append(connector)
        return connector

    yield build
    for c in made:
        c.close()
