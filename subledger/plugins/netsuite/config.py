"""The NetSuite connection's configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from subledger.core.connector import ConnectorConfig


class NetSuiteConfig(ConnectorConfig):
    """How to reach one NetSuite account, and how to read and write it.

    Two ways to authenticate (``docs/connectors/netsuite.md`` walks through both):

    * ``auth: tba`` — token-based authentication (OAuth 1.0a, HMAC-SHA256): the integration
      record's consumer key and secret, and an access token id and secret.
    * ``auth: oauth2`` — OAuth 2.0 client credentials: the integration record's client id,
      the certificate id NetSuite assigned to your uploaded public key, and the private key.
    """

    account_id: str = Field(description="NetSuite account id, e.g. 1234567 or 1234567_SB1 for a sandbox account")
    base_url: str | None = Field(
        default=None,
        description="REST base URL; default https://<account>.suitetalk.api.netsuite.com (a sandbox: http://127.0.0.1:PORT)",
    )
    auth: Literal["tba", "oauth2"] = "tba"
    consumer_key: SecretStr | None = Field(default=None, description="TBA: the integration record's consumer key")
    consumer_secret: SecretStr | None = Field(default=None, description="TBA: the integration record's consumer secret")
    token_id: SecretStr | None = Field(default=None, description="TBA: the access token id")
    token_secret: SecretStr | None = Field(default=None, description="TBA: the access token secret")
    client_id: SecretStr | None = Field(default=None, description="OAuth 2.0: the integration record's client id")
    certificate_id: str | None = Field(default=None, description="OAuth 2.0: the certificate id of the uploaded key")
    private_key: SecretStr | None = Field(default=None, description="OAuth 2.0: the PEM private key that signs the JWT")
    jwt_algorithm: Literal["PS256", "RS256", "ES256"] = Field(default="PS256")
    timeout_seconds: float = Field(default=60.0, gt=0, le=600, description="per-request timeout")
    max_concurrency: int = Field(
        default=4, ge=1, le=50,
        description="requests in flight at once; keep it below the account's concurrency limit "
        "(shared by every integration on the account)",
    )
    page_size: int = Field(default=1000, ge=1, le=1000, description="SuiteQL rows per page")
    lookback_seconds: int = Field(
        default=900, ge=0, le=86400,
        description="incremental reads re-scan this far behind the cursor: a transaction saved in a long "
        "commit can become visible with an older lastModifiedDate",
    )
    start_date: str | None = Field(default=None, description="first lastModifiedDate to read (YYYY-MM-DD)")
    customer_link_field: Literal["externalId", "entityId", "none"] = Field(
        default="externalId", description="customer field holding the canonical customer id subledger links on",
    )
    invoice_item_id: str | None = Field(
        default=None, description="internal id of the non-inventory item used on invoice and credit memo lines",
    )
    source_system_field: str = Field(
        default="custbody_subledger_source_system", description="transaction body field: the billing system",
    )
    source_id_field: str = Field(
        default="custbody_subledger_source_id", description="transaction body field: the billing record's id",
    )
    account_mapping: Path | None = Field(
        default=None, description="YAML or JSON file mapping the chart of accounts to NetSuite (journal entries)",
    )
    currencies: dict[str, str] = Field(
        default_factory=lambda: {"USD": "1", "GBP": "2", "CAD": "3", "EUR": "4"},
        description="ISO code -> NetSuite currency internal id",
    )
    subsidiary_id: str = Field(default="1", description="subsidiary of customers subledger creates")
    undeposited_funds: bool = Field(default=True, description="customer payments go to Undeposited Funds")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("account_id")
    @classmethod
    def _account(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "_-" for c in value):
            raise ValueError("must be the NetSuite account id (letters, digits, _ and -), e.g. 1234567_SB1")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> NetSuiteConfig:
        if self.auth == "tba":
            missing = [n for n in ("consumer_key", "consumer_secret", "token_id", "token_secret")
                       if getattr(self, n) is None]
        else:
            missing = [n for n in ("client_id", "certificate_id", "private_key") if getattr(self, n) is None]
        if missing:
            raise ValueError(f"auth {self.auth} needs {', '.join(missing)}")
        return self

    @property
    def realm(self) -> str:
        """The OAuth realm: the account id in upper case (``1234567_SB1``)."""
        return self.account_id.upper().replace("-", "_")

    @property
    def api_base(self) -> str:
        """Where the REST services live."""
        if self.base_url:
            return self.base_url
        host = self.account_id.lower().replace("_", "-")
        return f"https://{host}.suitetalk.api.netsuite.com"

    def currency_code(self, currency_id: str | None, ref_name: str | None) -> str | None:
        """The ISO code for a NetSuite currency reference."""
        for code, cid in self.currencies.items():
            if cid == currency_id:
                return code
        if ref_name and len(ref_name) == 3 and ref_name.isalpha():
            return ref_name.upper()
        return None
