"""Fixtures for the Stripe connector and sandbox tests.

Every test that talks to the sandbox can check the traffic against Stripe's own
contract: the 2023-08-16 OpenAPI spec for the v1 endpoints it has, and Stripe's 2026
example objects for billing meters, meter event summaries and credit grants, which the
spec predates. Both live outside the repository (``$SUBLEDGER_VENDOR_SPECS``); without
them those checks skip and say why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from stripe_testkit import TrafficCheck, load_contract, load_examples_2026

from subledger.core.sandbox import SandboxClock, SandboxServer
from subledger.core.sandbox.validation import OpenAPIContract
from subledger.plugins.stripe.config import StripeConfig
from subledger.plugins.stripe.connector import StripeConnector
from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox


@pytest.fixture(scope="session")
def stripe_spec() -> OpenAPIContract:
    """Stripe's v1 OpenAPI spec (2023-08-16), or skip with where it was looked for."""
    contract = load_contract()
    if isinstance(contract, str):
        pytest.skip(contract)
    return contract


@pytest.fixture(scope="session")
def stripe_examples_2026() -> dict[str, Any]:
    """Stripe's 2026 example objects by resource name, or skip."""
    fixtures = load_examples_2026()
    if isinstance(fixtures, str):
        pytest.skip(fixtures)
    return fixtures


@pytest.fixture
def traffic() -> TrafficCheck:
    """Checks a sandbox's traffic against Stripe's contract (skips at the end without the specs)."""
    contract, examples = load_contract(), load_examples_2026()
    reason = next((r for r in (contract, examples) if isinstance(r, str)), "")
    if reason:
        return TrafficCheck(None, None, reason)
    return TrafficCheck(contract, examples)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> SandboxClock:
    """The sandbox clock, running from real time (usage reads compare days with today)."""
    return SandboxClock()


@pytest.fixture
def sandbox(clock: SandboxClock) -> StripeSandbox:
    return StripeSandbox(clock=clock, random_seed=42)


@pytest.fixture
def server(sandbox: StripeSandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running


@pytest.fixture
def connect(server: SandboxServer) -> Callable[..., StripeConnector]:
    """A connector on the sandbox: ``connect(page_size=2, finalize_invoices=True)``."""

    def build(**overrides: Any) -> StripeConnector:
        config = StripeConfig(api_key=DEFAULT_API_KEY, api_base=server.url, **overrides)
        return StripeConnector(config, connection=overrides.pop("connection", "stripe"))

    return build


