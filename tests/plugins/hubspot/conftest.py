"""Fixtures for the HubSpot connector and sandbox tests: a seeded sandbox and the official SDK on it."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator
from typing import Any

import hubspot
import pytest
from hubspot_testkit import portal
from urllib3.util.retry import Retry

import subledger.plugins.hubspot as hubspot_plugin
from subledger.core.plugins import register_plugin, unregister_plugin
from subledger.core.sandbox import SandboxServer
from subledger.plugins.hubspot.config import HubSpotConfig
from subledger.plugins.hubspot.connector import HubSpotConnector
from subledger.plugins.hubspot.sandbox import DEFAULT_TOKEN, HubSpotSandbox


@pytest.fixture
def sandbox() -> HubSpotSandbox:
    return HubSpotSandbox(fixture=portal())


@pytest.fixture
def server(sandbox: HubSpotSandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


@pytest.fixture
def sdk(server: SandboxServer) -> hubspot.HubSpot:
    """The official SDK pointed at the sandbox (its own retries off)."""
    return hubspot.HubSpot(access_token=DEFAULT_TOKEN, host=server.url, retry=Retry(total=0))


@pytest.fixture
def connect(server: SandboxServer) -> Callable[..., HubSpotConnector]:
    """A connector on the sandbox: ``connect(page_size=2, search_result_cap=4)``."""

    def build(**overrides: Any) -> HubSpotConnector:
        name = overrides.pop("connection", "hubspot")
        config = HubSpotConfig(access_token=DEFAULT_TOKEN, base_url=server.url, **overrides)
        return HubSpotConnector(config, connection=name)

    return build


@pytest.fixture
def hubspot_registered() -> Iterator[None]:
    """The plugin registered in-process when its entry point is not installed."""
    installed = any(ep.name == "hubspot" for ep in importlib.metadata.entry_points(group="subledger"))
    if not installed:
        register_plugin(hubspot_plugin, name="hubspot")
    yield
    if not installed:
        unregister_plugin("hubspot")
