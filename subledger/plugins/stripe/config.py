"""The Stripe connection's configuration."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from subledger.core.connector import ConnectorConfig

DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_METER_EVENTS_BASE = "https://meter-events.stripe.com"
PINNED_API_VERSION = "2023-08-16"


class StripeConfig(ConnectorConfig):
    """How to reach one Stripe account, and how to read and write it.

    ``api_key`` is a secret key (``sk_...``) or, better, a restricted key (``rk_...``) with
    the permissions listed in ``docs/connectors/stripe.md``. Give it as ``env:STRIPE_API_KEY``
    to keep it out of the config entirely.
    """

    api_key: SecretStr = Field(
        description="secret or restricted API key (sk_/rk_); env:NAME reads it from the environment"
    )
    api_base: str = Field(default=DEFAULT_API_BASE, description="API base URL (a sandbox: http://127.0.0.1:PORT)")
    meter_events_base: str | None = Field(
        default=None,
        description="meter-events base URL; defaults to Stripe's, or to api_base when that is not Stripe's",
    )
    api_version: str = Field(
        default=PINNED_API_VERSION,
        description="Stripe-Version sent with every request; the mapping is tested against this version "
        "and reads the newer (2025+) shapes too",
    )
    account: str | None = Field(default=None, description="connected account id (acct_...) for Stripe Connect")
    timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="per-request timeout")
    max_concurrency: int = Field(default=4, ge=1, le=32, description="requests in flight at once for this account")
    page_size: int = Field(default=100, ge=1, le=100, description="objects per list page")
    lookback_seconds: int = Field(
        default=600, ge=0, le=86400,
        description="incremental reads re-scan events this far behind the cursor (events can surface late)",
    )
    events_retention_days: int = Field(
        default=29, ge=1, le=30,
        description="a cursor older than this re-reads everything, since Stripe keeps events for 30 days",
    )
    usage_start: date | None = Field(
        default=None,
        description="first day of meter usage to read (default: the earliest start_date of any subscription in "
        "the account, so every billed period can be reconciled; 35 days before the first read when there is none)",
    )
    usage_lookback_days: int = Field(
        default=2, ge=0, le=35, description="closed days of usage re-checked on each read to catch late events"
    )
    finalize_invoices: bool = Field(default=False, description="finalize invoices subledger creates (default: draft)")
    collection_method: Literal["send_invoice", "charge_automatically"] = Field(
        default="send_invoice", description="collection method of invoices subledger creates"
    )
    days_until_due: int = Field(default=30, ge=0, le=365, description="payment terms of send_invoice invoices")

    @field_validator("api_base", "meter_events_base")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def meter_events_url(self) -> str:
        if self.meter_events_base:
            return self.meter_events_base
        return DEFAULT_METER_EVENTS_BASE if self.api_base == DEFAULT_API_BASE else self.api_base
