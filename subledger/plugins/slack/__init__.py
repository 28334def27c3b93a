"""The Slack plugin: a Slack notifier on the official ``slack-sdk``, a signed-webhook notifier,
and a local Slack sandbox to test them against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subledger.core.hookspecs import hookimpl


@hookimpl
def register_notifiers(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.slack.notifier import SlackNotifier
    from subledger.plugins.slack.webhook import SignedWebhookNotifier

    register(SlackNotifier)
    register(SignedWebhookNotifier)


@hookimpl
def register_sandboxes(register: Callable[[type[Any]], None]) -> None:
    from subledger.plugins.slack.sandbox import SlackSandbox

    register(SlackSandbox)
