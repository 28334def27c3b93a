"""Alerts to a Slack channel through ``chat.postMessage`` (official ``slack-sdk``)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import SecretStr

from subledger.core.errors import ConfigError, TransientError
from subledger.core.secrets import register_secret

EMOJI = {"threshold": ":chart_with_upwards_trend:", "finding": ":mag:", "sync_failed": ":rotating_light:"}


def alert_blocks(alert: dict[str, Any]) -> list[dict[str, Any]]:
    """Slack Block Kit for one alert: title, text, amount, and a link to the evidence."""
    lines = [f"{EMOJI.get(alert.get('kind', ''), '')} *{alert.get('title', 'subledger alert')}*".strip(),
             str(alert.get("text", ""))]
    if alert.get("amount"):
        lines.append(f"Amount: *{alert['amount']}*")
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}]
    if alert.get("url"):
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{alert['url']}|Evidence>"}]})
    return blocks


class SlackNotifier:
    """Posts each alert to ``channel``.

    Args:
        token: a bot token (``xoxb-...``) with ``chat:write``, or ``env:NAME``.
        channel: channel id or name (``#finance``).
        base_url: the Slack API base (a local sandbox in tests).
        timeout: seconds per request; retries are the dispatcher's, with backoff.
    """

    name = "slack"

    def __init__(self, token: str, channel: str, base_url: str = "https://slack.com/api/", timeout: int = 10) -> None:
        if token.startswith("env:"):
            value = os.environ.get(token.removeprefix("env:"))
            if not value:
                raise ConfigError(f"the Slack token names ${token[4:]}, which is not set", fix=f"export {token[4:]}")
            token = value
        register_secret(token)
        self._token = SecretStr(token)
        self.channel = channel
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SlackNotifier(channel={self.channel!r}, base_url={self.base_url!r})"

    def send(self, alert: dict[str, Any]) -> None:
        """Post one alert; :class:`TransientError` for rate limits, outages and network errors."""
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError

        client = WebClient(token=self._token.get_secret_value(), base_url=self.base_url, timeout=self.timeout,
                           retry_handlers=[])
        text = f"{alert.get('title', 'subledger alert')}: {alert.get('text', '')}"[:3000]
        try:
            client.chat_postMessage(channel=self.channel, text=text, blocks=alert_blocks(alert), unfurl_links=False)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = exc.response.get("error") if hasattr(exc.response, "get") else None
            if status == 429 or status >= 500:
                retry = exc.response.headers.get("Retry-After") if exc.response.headers else None
                raise TransientError(f"Slack answered {status} ({error})",
                                     retry_after=float(retry) if retry else None) from None
            raise ConfigError(
                f"Slack refused the message: {error}",
                fix="check the bot token, its chat:write scope and that the bot is in the channel",
            ) from None
        except OSError as exc:
            raise TransientError(f"Slack is unreachable: {exc}") from None
