"""The HubSpot connection's configuration."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from subledger.core.connector import ConnectorConfig

DEFAULT_BASE_URL = "https://api.hubapi.com"


class HubSpotConfig(ConnectorConfig):
    """How to reach one HubSpot portal, and which properties carry what.

    ``access_token`` is a private app's access token with the scopes listed in
    ``docs/connectors/hubspot.md``; give it as ``env:HUBSPOT_ACCESS_TOKEN`` to keep it out
    of the config.
    """

    access_token: SecretStr = Field(description="private-app access token (pat-...); env:NAME reads the environment")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="API base URL (a sandbox: http://127.0.0.1:PORT)")
    mapping_file: str | None = Field(default=None, description="YAML file overriding the default property mapping")
    mapping: dict[str, Any] | None = Field(default=None, description="inline mapping overrides (win over the file)")
    page_size: int = Field(default=100, ge=1, le=100, description="objects per search/list page (HubSpot: 100 max)")
    search_result_cap: int = Field(
        default=10_000, ge=1, le=10_000,
        description="results one search can page through (HubSpot: 10,000); past it the read re-queries",
    )
    lookback_seconds: int = Field(
        default=120, ge=0, le=3600,
        description="each incremental read starts this far before its cursor: HubSpot's search sees changes late",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="per-request timeout")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")
