"""Service settings: where API-ingested usage goes, how late it may arrive, webhook secrets, notifiers.

Read from ``$SUBLEDGER_SERVICE_CONFIG``, else ``service.yaml`` in the data directory; every
key has a default. See ``docs/service.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from subledger.core.errors import ConfigError
from subledger.core.paths import data_dir


class ServiceSettings(BaseModel):
    """What ``subledger serve`` can be told."""

    model_config = ConfigDict(extra="forbid")

    usage_source: str = Field(default="api", description="the system name API-ingested usage is stored under")
    max_batch: int = Field(default=1000, ge=1, le=10_000, description="events per POST /v1/usage/events")
    grace_days: int = Field(
        default=3, ge=0, le=60,
        description="days after a calendar month ends during which its usage is still accepted",
    )
    max_future_seconds: int = Field(default=300, ge=0, description="how far ahead of the clock an event may be")
    public_url: str = Field(default="http://127.0.0.1:8000", description="base of evidence links in alerts")
    webhook_secrets: dict[str, list[str]] = Field(
        default_factory=dict,
        description="per connection, its webhook signing secrets (several while rotating); env:NAME reads one "
        "from the environment",
    )
    notifiers: list[dict[str, Any]] = Field(
        default_factory=list, description="notifier configs: [{notifier: slack, name: ..., ...}]"
    )
    notify_min_amount: str = Field(
        default="0", description="findings at or above this amount (major units) are announced"
    )

    def signing_secrets(self, connection: str) -> list[str]:
        """The webhook signing secrets of ``connection`` (also ``$SUBLEDGER_WEBHOOK_SECRETS_<NAME>``)."""
        values = list(self.webhook_secrets.get(connection, []))
        env = os.environ.get(f"SUBLEDGER_WEBHOOK_SECRETS_{connection.upper()}")
        if env:
            values.extend(v.strip() for v in env.split(",") if v.strip())
        out = []
        for value in values:
            if value.startswith("env:"):
                name = value.removeprefix("env:")
                resolved = os.environ.get(name)
                if not resolved:
                    raise ConfigError(
                        f"webhook secret of {connection!r} names ${name}, which is not set",
                        fix=f"export {name}=whsec_...",
                    )
                value = resolved
            out.append(value)
        from subledger.core.secrets import register_secret

        for value in out:
            register_secret(value)
        return out


def service_settings_path() -> Path:
    """Where service settings are read from."""
    env = os.environ.get("SUBLEDGER_SERVICE_CONFIG")
    return Path(env).expanduser() if env else data_dir() / "service.yaml"


def load_service_settings(path: Path | None = None) -> ServiceSettings:
    """Load service settings, naming the file and field of any mistake."""
    path = path or service_settings_path()
    if not path.exists():
        return ServiceSettings()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", fix="fix the YAML syntax") from None
    try:
        return ServiceSettings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}", fix="see docs/service.md for the settings") from None
