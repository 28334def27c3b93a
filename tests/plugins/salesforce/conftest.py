"""Fixtures for the Salesforce connector and sandbox tests: a seeded sandbox org on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sf_testkit import org_fixture

from subledger.core.sandbox import SandboxServer
from subledger.plugins.salesforce.config import SalesforceConfig
from subledger.plugins.salesforce.connector import SalesforceConnector
from subledger.plugins.salesforce.sandbox import (
    DEFAULT_PASSWORD,
    DEFAULT_TOKEN,
    DEFAULT_USERNAME,
    SalesforceSandbox,
)


@pytest.fixture
def sandbox() -> SalesforceSandbox:
    return SalesforceSandbox(fixture=org_fixture(), random_seed=7, max_batch_size=2)


@pytest.fixture
def server(sandbox: SalesforceSandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


@pytest.fixture
def config(server: SandboxServer) -> SalesforceConfig:
    return SalesforceConfig(username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD, security_token=DEFAULT_TOKEN,
                            base_url=server.url)


@pytest.fixture
def connector(config: SalesforceConfig) -> SalesforceConnector:
    return SalesforceConnector(config, connection="salesforce")
