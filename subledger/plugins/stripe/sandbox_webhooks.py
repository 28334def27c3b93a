"""Stripe sandbox: webhook endpoints (events are delivered signed, like Stripe's)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from subledger.core.sandbox import Call, Router
from subledger.plugins.stripe.sandbox_support import LIST_PARAMS, Params, invalid, list_object

if TYPE_CHECKING:
    from subledger.plugins.stripe.sandbox import StripeSandbox

ENDPOINT_PARAMS = ("url", "enabled_events", "description", "metadata", "api_version", "connect")


def routes(sb: StripeSandbox, r: Router) -> None:
    r.add("POST", "/v1/webhook_endpoints", lambda c: create_endpoint(sb, c))
    r.add("GET", "/v1/webhook_endpoints", lambda c: list_object(
        sb, Params(c.params, LIST_PARAMS), "webhook_endpoints", "/v1/webhook_endpoints", label="webhook endpoint"))
    r.add("GET", "/v1/webhook_endpoints/{id}", lambda c: sb.respond(
        "webhook_endpoints", sb.require("webhook_endpoints", c["id"], "webhook endpoint"), Params(c.params, ())))
    r.add("POST", "/v1/webhook_endpoints/{id}", lambda c: update_webhook_endpoint(sb, c))
    r.add("DELETE", "/v1/webhook_endpoints/{id}", lambda c: delete_webhook_endpoint(sb, c))


def create_endpoint(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ENDPOINT_PARAMS)
    endpoint = create_webhook_endpoint(sb, p)
    # The signing secret is only ever shown in the response that creates the endpoint.
    return {**sb.respond("webhook_endpoints", endpoint, p), "secret": endpoint["_secret"]}


def render_webhook_endpoint(sb: StripeSandbox, endpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if not k.startswith("_")}


def create_webhook_endpoint(sb: StripeSandbox, p: Params) -> dict[str, Any]:
    url = p.str("url", required=True) or ""
    if not url.startswith(("http://", "https://")):
        raise invalid("url", f"Invalid URL: {url}")
    events = [str(e) for e in p.array("enabled_events", required=True) or []]
    if not events:
        raise invalid("enabled_events", "enabled_events must list at least one event type (or '*').")
    endpoint = {
        "id": sb.new_id("we_"),
        "object": "webhook_endpoint",
        "api_version": p.str("api_version"),
        "application": None,
        "created": sb.now(),
        "description": p.str("description"),
        "enabled_events": events,
        "livemode": False,
        "metadata": p.metadata(),
        "status": "enabled",
        "url": url,
        "_secret": p.str("secret") or f"whsec_{secrets.token_hex(24)}",
    }
    sb.store.put("webhook_endpoints", endpoint)
    return endpoint


def update_webhook_endpoint(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("url", "enabled_events", "description", "metadata", "disabled"))
    endpoint = sb.require("webhook_endpoints", call["id"], "webhook endpoint")
    if p.has("url"):
        endpoint["url"] = p.str("url")
    if p.has("enabled_events"):
        endpoint["enabled_events"] = [str(e) for e in p.array("enabled_events") or []]
    if p.has("disabled"):
        endpoint["status"] = "disabled" if p.bool("disabled") else "enabled"
    endpoint["metadata"] = p.metadata(endpoint["metadata"])
    return sb.respond("webhook_endpoints", endpoint, p)


def delete_webhook_endpoint(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    endpoint = sb.require("webhook_endpoints", call["id"], "webhook endpoint")
    sb.store.delete("webhook_endpoints", endpoint["id"])
    return {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
