"""Service settings: where API-ingested usage goes, how late and how large it may be, webhook secrets, notifiers.

Read from ``$SUBLEDGER_SERVICE_CONFIG``, else ``service.yaml`` in the data directory; every
key has a default. See ``docs/service.md``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from subledger.core.config_files import load_settings_file, unknown_key_fix
from subledger.core.errors import ConfigError
from subledger.core.paths import data_dir


class ServiceSettings(BaseModel):
    """What ``subledger serve`` can be told."""

    model_config = ConfigDict(extra="forbid")

    usage_source: str = Field(default="api", description="the system name API-ingested usage is stored under")
    max_batch: int = Field(default=1000, ge=1, le=10_000, description="events per POST /v1/usage/events (413 beyond)")
    max_body_bytes: int = Field(
        default=5_242_880, ge=1024, le=100_000_000,
        description="bytes in one request body (413 beyond); webhook deliveries are capped at 1 MB",
    )
    max_properties_bytes: int = Field(
        default=4096, ge=2, le=1_000_000,
        description="bytes of one event's properties, as compact JSON (the event is rejected beyond)",
    )
    correction_meters: list[str] = Field(
        default_factory=list,
        description="meters whose events may carry a negative quantity (a correction); on every other meter a "
        "negative quantity is rejected",
    )
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

    @field_validator("notifiers")
    @classmethod
    def _known_notifier_keys(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # A misspelt key of a notifier (webhok_url) must not silently disable its alerts.
        for i, config in enumerate(value):
            kind = config.get("notifier")
            if not isinstance(kind, str) or not kind:
                raise ValueError(f"notifiers[{i}] names no notifier: add notifier: slack (or another registered "
                                 "notifier)")
            keys = _notifier_keys(kind)
            if keys is None:
                continue  # an unknown notifier is reported, with the registered ones, when they are built
            for key in config:
                if key not in keys | {"notifier", "name"}:
                    fix = unknown_key_fix(str(key), sorted(keys | {"notifier", "name"}), "docs/service.md")
                    raise ValueError(f"notifiers[{i}]: unknown key {key!r} for notifier {kind!r}: {fix}")
        return value

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
    """Load service settings, naming the file, line, key and fix of any mistake.

    Read through the one settings loader (:func:`subledger.core.config_files.load_settings_file`):
    an unknown key (``notifers:``) is refused with the closest known key, never ignored.
    """
    path = path or service_settings_path()
    if not path.exists():
        return ServiceSettings()
    return load_settings_file(path, ServiceSettings, what="service settings file", docs="docs/service.md",
                              missing_fix="create it, or unset SUBLEDGER_SERVICE_CONFIG")


def _notifier_keys(kind: str) -> set[str] | None:
    """The config keys notifier ``kind`` takes, or None when unknown (not registered, or ``**kwargs``)."""
    try:
        from subledger.core.plugins import notifier_classes

        found = notifier_classes().get(kind)
        if found is None:
            return None
        params = inspect.signature(found.__init__).parameters.values()
    except Exception:  # a broken plugin is reported when the notifiers are built
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL}
