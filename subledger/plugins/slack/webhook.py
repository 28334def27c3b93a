"""Alerts as signed JSON POSTs to any URL (the receiver checks ``Subledger-Signature``).

The signature follows Stripe's scheme, so receivers can reuse their code:
``Subledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
Receivers should refuse a timestamp older than five minutes and deduplicate on the
``Subledger-Alert`` header (the alert key), since a delivery whose answer was lost is
retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any

import httpx
from pydantic import SecretStr

from subledger.core.errors import ConfigError, TransientError
from subledger.core.secrets import register_secret


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Subledger-Signature`` header value for ``body`` at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class SignedWebhookNotifier:
    """POSTs each alert as JSON to ``url``, signed with ``secret`` (or ``env:NAME``)."""

    name = "webhook"

    def __init__(self, url: str, secret: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook notifier url {url!r} is not http(s)", fix="give a full https:// URL")
        if secret.startswith("env:"):
            value = os.environ.get(secret.removeprefix("env:"))
            if not value:
                raise ConfigError(
                    f"the webhook secret names ${secret[4:]}, which is not set", fix=f"export {secret[4:]}"
                )
            secret = value
        register_secret(secret)
        self.url = url
        self._secret = SecretStr(secret)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SignedWebhookNotifier(url={self.url!r})"

    def send(self, alert: dict[str, Any]) -> None:
        body = json.dumps(alert, sort_keys=True, default=str).encode()
        headers = {
            "Content-Type": "application/json",
            "Subledger-Signature": sign(self._secret.get_secret_value(), body, int(time.time())),
            "Subledger-Alert": str(alert.get("key", "")),
        }
        try:
            r = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TransientError(f"webhook {self.url} unreachable: {exc}") from None
        if r.status_code == 429 or r.status_code >= 500:
            raise TransientError(f"webhook {self.url} answered {r.status_code}")
        if r.status_code >= 300:
            raise ConfigError(f"webhook {self.url} refused the alert with {r.status_code}", fix="check the receiver")
