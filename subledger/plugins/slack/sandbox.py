"""A local Slack Web API: ``auth.test``, ``chat.postMessage``, ``conversations.list``, ``conversations.history``.

Answers like Slack: HTTP 200 with ``{"ok": false, "error": ...}`` for API errors, 429 with
``Retry-After`` when rate limited (inject it with ``faults``), Bearer-token auth.
"""

from __future__ import annotations

from typing import Any

from subledger.core.sandbox import Call, Request, Response, Router, Sandbox, SandboxError

TOKEN = "xoxb-subledger-sandbox"


class SlackSandbox(Sandbox):
    """Channels and the messages posted to them."""

    name = "slack"
    title = "Slack Web API"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.store.collection("channels"):
            self.seed({})

    def build_routes(self, router: Router) -> None:
        router.add("POST", "/api/auth.test", self.auth_test)
        router.add("POST", "/api/chat.postMessage", self.post_message)
        router.add("POST", "/api/conversations.list", self.list_channels)
        router.add("POST", "/api/conversations.history", self.history)
        router.add("GET", "/api/conversations.history", self.history)

    def authenticate(self, request: Request) -> str:
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        token = token or str(request.params().get("token", ""))
        if token != TOKEN:
            raise SandboxError(200, "invalid_auth", code="invalid_auth")
        return token

    def render_error(self, error: SandboxError) -> Response:
        body: dict[str, Any] = {"ok": False, "error": error.code or error.message}
        return Response(error.status, body, dict(error.headers))

    def fault_response(self, fault: Any) -> Response:
        response = super().fault_response(fault)
        response.body = {"ok": False, "error": "ratelimited" if fault.kind == "rate_limit" else "internal_error"}
        return response

    def _channel(self, ref: str) -> dict[str, Any]:
        for ch in self.store.ordered("channels", newest_first=False):
            if ref in (ch["id"], ch["name"], "#" + ch["name"]):
                return ch
        raise SandboxError(200, "channel_not_found", code="channel_not_found")

    def auth_test(self, call: Call) -> dict[str, Any]:
        return {"ok": True, "url": "https://subledger-sandbox.slack.com/", "team": "subledger", "user": "subledger",
                "team_id": "T0SANDBOX", "user_id": "U0SANDBOX", "bot_id": "B0SANDBOX"}

    def post_message(self, call: Call) -> dict[str, Any]:
        params = call.params
        channel = self._channel(str(params.get("channel", "")))
        if not params.get("text") and not params.get("blocks"):
            raise SandboxError(200, "no_text", code="no_text")
        with self.store.lock:
            seq = len(self.store.collection("messages"))
        ts = f"{self.clock.time():.6f}"
        message = {"id": f"{channel['id']}:{ts}:{seq}", "channel": channel["id"],
                   "ts": ts, "type": "message", "text": params.get("text", ""), "blocks": params.get("blocks") or [],
                   "bot_id": "B0SANDBOX"}
        self.store.put("messages", message)
        return {"ok": True, "channel": channel["id"], "ts": ts,
                "message": {k: message[k] for k in ("type", "text", "ts", "bot_id", "blocks")}}

    def list_channels(self, call: Call) -> dict[str, Any]:
        return {"ok": True, "channels": self.store.ordered("channels", newest_first=False),
                "response_metadata": {"next_cursor": ""}}

    def history(self, call: Call) -> dict[str, Any]:
        channel = self._channel(str(call.params.get("channel", "")))
        msgs = [m for m in self.store.ordered("messages", newest_first=True) if m["channel"] == channel["id"]]
        return {"ok": True, "messages": msgs, "has_more": False}

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Every message posted (oldest first), optionally in one channel (tests read this)."""
        out = self.store.ordered("messages", newest_first=False)
        return [m for m in out if channel is None or m["channel"] == self._channel(channel)["id"]]

    def seed(self, fixture: dict[str, Any]) -> dict[str, int]:
        channels = fixture.get("channels", [{"id": "C0FINANCE", "name": "finance"}])
        for ch in channels:
            self.store.put("channels", {"id": ch["id"], "name": ch["name"], "is_channel": True})
        return {"channels": len(channels)}

    def connection_hint(self, url: str) -> dict[str, Any]:
        return {"notifier": "slack", "token": TOKEN, "channel": "#finance", "base_url": url + "/api/"}
