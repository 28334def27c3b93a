"""The Salesforce connection's configuration: which org, how to log in, how to read it."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from subledger.core.connector import ConnectorConfig

DEFAULT_API_VERSION = "59.0"

AuthFlow = Literal["password", "oauth_password", "jwt"]


class SalesforceConfig(ConnectorConfig):
    """How to reach one Salesforce org, and how to read and write it.

    Log in with one of (see ``docs/connectors/salesforce.md``):

    * ``username`` + ``password`` + ``security_token`` (SOAP login, the default);
    * ``username`` + ``password`` + ``consumer_key`` + ``consumer_secret`` (OAuth
      username-password flow of a connected app);
    * ``username`` + ``consumer_key`` + ``private_key`` or ``private_key_file`` (OAuth
      2.0 JWT bearer flow; the connected app holds the matching certificate).
    """

    username: str = Field(description="the integration user's username")
    password: SecretStr | None = Field(default=None, description="the user's password")
    security_token: SecretStr | None = Field(default=None, description="the user's security token (SOAP login)")
    consumer_key: str | None = Field(default=None, description="the connected app's consumer key (client id)")
    consumer_secret: SecretStr | None = Field(default=None, description="the connected app's consumer secret")
    private_key: SecretStr | None = Field(default=None, description="PEM private key signing JWT bearer assertions")
    private_key_file: str | None = Field(default=None, description="path of that PEM private key instead")
    domain: str = Field(
        default="login",
        description="login (production), test (a Salesforce sandbox org) or your My Domain prefix (acme.my)",
    )
    base_url: str | None = Field(
        default=None,
        description="send every request to this URL instead of *.salesforce.com (a local sandbox: "
        "http://127.0.0.1:PORT); plain http only to a loopback address",
    )
    api_version: str = Field(default=DEFAULT_API_VERSION, pattern=r"^\d{2,3}\.0$", description="REST API version")
    mapping: str | None = Field(
        default=None, description="YAML mapping file: which objects and fields hold the terms (default: built in)"
    )
    lookback_seconds: int = Field(
        default=300, ge=0, le=86400,
        description="incremental reads re-scan SystemModstamp this far behind the cursor (late commits)",
    )
    bulk_threshold: int = Field(
        default=10000, ge=1, description="a read matching at least this many records uses a Bulk API 2.0 query job"
    )
    batch_size: int = Field(default=2000, ge=200, le=2000, description="records per REST query page")
    bulk_page_records: int = Field(default=50000, ge=1, le=1_000_000, description="records per Bulk result page")
    bulk_poll_seconds: float = Field(default=2.0, gt=0, le=60, description="wait between Bulk job status polls")
    bulk_timeout_seconds: float = Field(default=1800, gt=0, description="give up on a Bulk query job after this")
    api_usage_stop_percent: int = Field(
        default=95, ge=1, le=100,
        description="stop (and come back later) when Sforce-Limit-Info shows this share of the org's daily "
        "API requests used, leaving the rest to other integrations",
    )
    timeout_seconds: float = Field(default=60.0, gt=0, le=600, description="per-request timeout")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:8000")
        if parts.scheme == "http":
            try:
                loopback = ipaddress.ip_address(parts.hostname).is_loopback
            except ValueError:
                loopback = parts.hostname == "localhost"
            if not loopback:
                raise ValueError("plain http is only allowed to a loopback address; use https")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_login(self) -> SalesforceConfig:
        self.auth_flow  # noqa: B018 - raises when no login flow is complete
        return self

    @property
    def auth_flow(self) -> AuthFlow:
        """The login flow the given credentials select."""
        if self.private_key is not None or self.private_key_file:
            if not self.consumer_key:
                raise ValueError("the JWT bearer flow needs consumer_key (the connected app's consumer key)")
            return "jwt"
        if self.password is None:
            raise ValueError("give password with security_token (or with consumer_key and consumer_secret), "
                             "or private_key for the JWT bearer flow")
        if self.consumer_key or self.consumer_secret is not None:
            if not (self.consumer_key and self.consumer_secret is not None):
                raise ValueError("the OAuth username-password flow needs both consumer_key and consumer_secret")
            return "oauth_password"
        if self.security_token is None:
            raise ValueError("give security_token with password (Setup > Reset My Security Token), "
                             "or use a connected app (consumer_key, consumer_secret)")
        return "password"
