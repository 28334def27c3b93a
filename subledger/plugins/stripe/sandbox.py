"""The Stripe sandbox: a stateful local Stripe API for the official SDK to talk to.

Serves Stripe's v1 API shapes of version ``2023-08-16`` (the bundled spec) for customers,
products, prices, subscriptions and items, invoices and lines, invoice items, credit
notes, payment intents, charges, refunds, events and webhook endpoints, plus the billing
meters, meter events, meter event summaries and credit grants Stripe added in 2024 (in
their current shapes). It keeps state, paginates and filters like Stripe, replays
``Idempotency-Key`` responses for 24 hours, bills subscriptions period by period as its
clock moves (metered items from meter events), emits events and delivers signed
webhooks, and accepts restricted keys with per-resource permissions.

    from subledger.core.sandbox import SandboxServer
    from subledger.plugins.stripe.sandbox import StripeSandbox, DEFAULT_API_KEY

    with SandboxServer(StripeSandbox(fixture="seed.yaml")) as server:
        client = stripe.StripeClient(DEFAULT_API_KEY, base_addresses={"api": server.url})

No Stripe SDK is needed to run it (``subledger sandbox serve stripe``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import json
import logging
import queue
import threading
import urllib.request
from collections.abc import Iterable
from typing import Any, ClassVar

from subledger.core.sandbox import (
    Call,
    Fault,
    Request,
    Response,
    Router,
    Sandbox,
    SandboxClock,
    SandboxError,
)
from subledger.core.sandbox.faults import shaped_response
from subledger.plugins.stripe import (
    sandbox_billing,
    sandbox_catalog,
    sandbox_credits,
    sandbox_metering,
    sandbox_payments,
    sandbox_webhooks,
)
from subledger.plugins.stripe.sandbox_support import (
    API_VERSION,
    EXPANDABLE,
    PREFIXES,
    Params,
    collection_of,
    created_filter,
    error,
    expand,
    list_object,
    not_found,
)

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "sk_test_subledger_sandbox"
"""The secret key a sandbox accepts unless given others (it is not a secret)."""

ACCOUNT_ID = "acct_1SubledgerSandbox"

# Restricted-key resources, by path prefix (longest first), as Stripe's dashboard groups them.
RESOURCES: list[tuple[str, str]] = sorted(
    [
        ("/v1/customers", "customers"),
        ("/v1/products", "products"),
        ("/v1/prices", "prices"),
        ("/v1/subscriptions", "subscriptions"),
        ("/v1/subscription_items", "subscriptions"),
        ("/v1/invoices", "invoices"),
        ("/v1/invoiceitems", "invoices"),
        ("/v1/credit_notes", "credit_notes"),
        ("/v1/charges", "charges"),
        ("/v1/refunds", "charges"),
        ("/v1/payment_intents", "payment_intents"),
        ("/v1/events", "events"),
        ("/v1/webhook_endpoints", "webhook_endpoints"),
        ("/v1/billing/meters", "billing_meters"),
        ("/v1/billing/meter_events", "billing_meters"),
        ("/v1/billing/meter_event_adjustments", "billing_meters"),
        ("/v1/billing/credit_grants", "billing_credit_grants"),
        ("/v1/billing/credit_balance_transactions", "billing_credit_grants"),
        ("/v1/billing/credit_balance_summary", "billing_credit_grants"),
    ],
    key=lambda item: -len(item[0]),
)

ERROR_DOCS = "https://stripe.com/docs/error-codes"


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``payload``: ``t=...,v1=...``."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class StripeSandbox(Sandbox):
    """A local Stripe.

    Args:
        api_keys: secret keys accepted with full access (default: :data:`DEFAULT_API_KEY`).
        restricted_keys: restricted keys and their permissions, e.g.
            ``{"rk_test_x": {"customers": "read", "invoices": "write"}}`` (write implies read).
        deliver_webhooks: POST signed events to registered webhook endpoints.
        clock, fixture, random_seed, log_size: see :class:`~subledger.core.sandbox.Sandbox`.
    """

    name: ClassVar[str] = "stripe"
    # True while a fixture seeds history: expiries settle only at the times being billed.
    seeding_history: bool = False
    title: ClassVar[str] = "Stripe (API 2023-08-16 shapes, plus billing meters and credit grants)"

    def __init__(
        self,
        *,
        api_keys: Iterable[str] | None = None,
        restricted_keys: dict[str, dict[str, str]] | None = None,
        deliver_webhooks: bool = True,
        clock: SandboxClock | None = None,
        fixture: Any = None,
        random_seed: int | None = None,
        log_size: int = 10_000,
    ) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_API_KEY}
        self.restricted_keys = dict(restricted_keys or {})
        self.deliver_webhooks = deliver_webhooks
        self._deliveries: queue.Queue[tuple[str, bytes, str] | None] = queue.Queue()
        self._deliverer: threading.Thread | None = None
        self.deliveries: list[dict[str, Any]] = []
        self.meter_index: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        super().__init__(clock=clock, fixture=fixture, random_seed=random_seed, log_size=log_size)

    # -- Sandbox conventions --------------------------------------------------------------

    def build_routes(self, router: Router) -> None:
        sandbox_catalog.routes(self, router)
        sandbox_billing.routes(self, router)
        sandbox_payments.routes(self, router)
        sandbox_metering.routes(self, router)
        sandbox_credits.routes(self, router)
        sandbox_webhooks.routes(self, router)
        router.add("GET", "/v1/events", self._list_events)
        router.add("GET", "/v1/events/{id}", self._get_event)

    def authenticate(self, request: Request) -> str:
        auth = request.headers.get("authorization") or ""
        key = ""
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        elif auth.lower().startswith("basic "):
            try:
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        if not key:
            raise error(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if key in self.api_keys:
            return key
        if key in self.restricted_keys:
            self._check_permission(key, request)
            return key
        raise error(401, f"Invalid API Key provided: {_mask(key)}")

    def _check_permission(self, key: str, request: Request) -> None:
        resource = next((name for prefix, name in RESOURCES if request.path.startswith(prefix)), None)
        granted = self.restricted_keys[key].get(resource or "", "none")
        needed = "read" if request.method == "GET" else "write"
        if granted == "write" or (granted == "read" and needed == "read"):
            return
        raise error(
            403,
            f"The provided key '{_mask(key)}' does not have the required permissions for this endpoint on "
            f"account '{ACCOUNT_ID}'. Having the '{resource}: {needed}' permission would allow this request "
            "to continue.",
            code="secret_key_required" if resource is None else None,
        )

    def render_error(self, err: SandboxError) -> Response:
        kind = err.kind or {
            401: "invalid_request_error", 402: "card_error", 429: "invalid_request_error",
        }.get(err.status) or ("api_error" if err.status >= 500 else "invalid_request_error")
        body: dict[str, Any] = {"type": kind, "message": err.message}
        if err.code:
            body["code"] = err.code
            body["doc_url"] = f"{ERROR_DOCS}#{err.code.replace('_', '-')}"
        if err.param:
            body["param"] = err.param
        headers = {"Request-Id": self._request_id(), **err.headers}
        return Response(err.status, {"error": body}, headers)

    def idempotency_key(self, request: Request) -> str | None:
        if request.method != "POST":
            return None
        key = request.headers.get("idempotency-key")
        if key is not None and len(key) > 255:
            raise error(400, "Idempotency keys must be at most 255 characters long.", param="Idempotency-Key")
        return key

    def idempotency_conflict(self, key: str, request: Request) -> SandboxError:
        return error(
            400,
            "Keys for idempotent requests can only be used with the same parameters they were first used "
            f"with. Try using a key other than '{key}' if you meant to execute a different request.",
            kind="idempotency_error",
        )

    def fault_response(self, fault: Fault) -> Response:
        # A rule with its own body answers like a proxy in front of the vendor would.
        return shaped_response(fault, self._vendor_fault_response(fault))

    def _vendor_fault_response(self, fault: Fault) -> Response:
        if fault.kind == "rate_limit":
            response = self.render_error(
                error(
                    429,
                    "Request rate limit exceeded. Learn more about rate limits here "
                    "https://stripe.com/docs/rate-limits.",
                    code="rate_limit",
                )
            )
            if fault.retry_after is not None:
                value = fault.retry_after
                response.headers["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
        else:
            response = self.render_error(
                error(fault.status, "An unknown error occurred", kind="api_error")
            )
        response.headers.update(fault.headers)
        return response

    def dispatch(self, request: Request) -> tuple[Response, bool]:
        response, replayed = super().dispatch(request)
        headers = dict(response.headers)
        headers.setdefault("Request-Id", self._request_id())
        headers["Stripe-Version"] = request.headers.get("stripe-version") or API_VERSION
        return Response(response.status, response.body, headers), replayed

    def reset(self) -> None:
        super().reset()
        self.deliveries.clear()
        self.meter_index.clear()

    def connection_hint(self, url: str) -> dict[str, Any]:
        key = DEFAULT_API_KEY if DEFAULT_API_KEY in self.api_keys else sorted(self.api_keys)[0]
        return {"api_key": key, "api_base": url}

    # -- objects ---------------------------------------------------------------------------

    def now(self) -> int:
        return self.clock.now()

    def new_id(self, prefix: str, length: int = 24) -> str:
        return self.store.new_id(prefix, length)

    def _request_id(self) -> str:
        return self.store.new_id("req_", 14)

    def lookup(self, oid: str) -> tuple[str, dict[str, Any]] | None:
        """(collection, object) for an id, by its prefix."""
        name = collection_of(oid)
        if name is None:
            return None
        obj = self.store.get(name, oid)
        return None if obj is None else (name, obj)

    def require(self, collection: str, oid: str, label: str, param: str = "id") -> dict[str, Any]:
        obj = self.store.get(collection, oid)
        if obj is None:
            raise not_found(label, oid, param)
        return obj

    def render(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The API representation of a stored object (embedded lists and prices filled in)."""
        renderer = _RENDERERS.get(collection)
        if renderer is None:
            return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}
        return renderer(self, obj)

    def expand(self, body: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        return expand(self, body, paths)

    def respond(self, collection: str, obj: dict[str, Any], p: Params) -> dict[str, Any]:
        """The rendered object with the request's ``expand[]`` applied."""
        return self.expand(self.render(collection, obj), p.expand())

    # -- events and webhooks ---------------------------------------------------------------

    def emit(
        self,
        event_type: str,
        collection: str,
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
        *,
        request: Request | None = None,
        created: int | None = None,
    ) -> dict[str, Any]:
        """Record an event (``customer.created``...) with a snapshot of the object.

        ``created`` backdates the event (billing the clock caught up on happened then).
        """
        snapshot = expand(self, self.render(collection, obj), [])  # render copies; expand trims
        event = {
            "id": self.new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": created or self.now(),
            "data": {"object": snapshot, **({"previous_attributes": previous} if previous else {})},
            "livemode": False,
            "pending_webhooks": 0,
            "request": {
                "id": self._request_id() if request is not None else None,
                "idempotency_key": request.headers.get("idempotency-key") if request is not None else None,
            },
            "type": event_type,
        }
        self.store.put("events", event)
        self._queue_webhooks(event)
        return event

    def _queue_webhooks(self, event: dict[str, Any]) -> None:
        if not self.deliver_webhooks:
            return
        for endpoint in self.store.collection("webhook_endpoints").values():
            if endpoint["status"] != "enabled":
                continue
            wanted = endpoint["enabled_events"]
            if "*" not in wanted and event["type"] not in wanted:
                continue
            event["pending_webhooks"] += 1
            payload = json.dumps(event, separators=(",", ":")).encode()
            header = sign_payload(payload, endpoint["_secret"], self.now())
            self._start_deliverer()
            self._deliveries.put((endpoint["url"], payload, header))

    def _start_deliverer(self) -> None:
        if self._deliverer is None or not self._deliverer.is_alive():
            self._deliverer = threading.Thread(target=self._deliver_loop, name="stripe-sandbox-webhooks", daemon=True)
            self._deliverer.start()

    def _deliver_loop(self) -> None:
        while True:
            item = self._deliveries.get()
            if item is None:
                return
            url, payload, header = item
            req = urllib.request.Request(
                url, data=payload, method="POST",
                headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    status = resp.status
            except Exception as exc:  # a receiver that is down must not stop the sandbox
                status = getattr(exc, "code", None) or 0
                log.info("webhook delivery to %s failed: %s", url, exc)
            self.deliveries.append({"url": url, "status": status, "event": json.loads(payload)["id"]})
            self._deliveries.task_done()

    def wait_for_deliveries(self, timeout: float = 5.0) -> None:
        """Block until queued webhooks were attempted (tests)."""
        done = threading.Event()

        def join() -> None:
            self._deliveries.join()
            done.set()

        threading.Thread(target=join, daemon=True).start()
        done.wait(timeout)

    def _list_events(self, call: Call) -> dict[str, Any]:
        p = Params(call.params, ("created", "type", "types", "delivery_success", "limit", "starting_after",
                                 "ending_before"))
        etype = p.str("type")
        types = p.array("types")
        if etype and types:
            raise error(400, "You may only specify one of these parameters: type, types.", param="types")
        created = created_filter(p)
        sandbox_credits.settle(self)  # expiries due by now have happened (and have their events)

        def where(evt: dict[str, Any]) -> bool:
            if not created(evt):
                return False
            if etype:
                if etype.endswith(".*"):
                    return evt["type"].startswith(etype[:-1])
                return evt["type"] == etype
            return not types or evt["type"] in types

        return list_object(self, p, "events", "/v1/events", where=where, label="event")

    def _get_event(self, call: Call) -> dict[str, Any]:
        p = Params(call.params, ())
        return self.respond("events", self.require("events", call["id"], "event"), p)

    # -- seeding ---------------------------------------------------------------------------

    def seed(self, fixture: dict[str, Any]) -> dict[str, int]:
        """Create objects from a fixture (see ``docs/sandboxes.md``); returns counts per kind.

        Kinds, created in this order: customers, products, meters, prices, meter_events,
        credit_grants, subscriptions, invoiceitems, invoices, credit_notes, payment_intents,
        refunds, webhook_endpoints. Each entry is the create call's parameters (as
        nested JSON, amounts as integers), plus optional ``id`` and ``created``; invoices
        also take ``finalize`` / ``pay`` (or ``paid``) / ``void`` flags and ``lines`` (or
        ``items``: invoice items).
        A ``clock`` key (Unix seconds) sets the sandbox time first.
        """
        from subledger.plugins.stripe import sandbox_seed

        return sandbox_seed.seed(self, fixture)

    def advance(self, seconds: float) -> None:
        """Move the clock and bill every subscription period that ended (like a test clock)."""
        with self.store.lock:
            self.clock.advance(seconds)
            sandbox_billing.bill_due_subscriptions(self)
            sandbox_credits.settle(self)

    def catch_up(self) -> None:
        """Bill every subscription period that ended at the current clock time."""
        with self.store.lock:
            sandbox_billing.bill_due_subscriptions(self)
            sandbox_credits.settle(self)

    def _build_control_routes(self, r: Router) -> None:
        super()._build_control_routes(r)

        def clock(call: Any) -> dict[str, Any]:
            result = self._control_clock(call)
            self.catch_up()
            return result

        r.routes = [route for route in r.routes if route.template != "/_sandbox/clock"]
        r.add("POST", "/_sandbox/clock", clock)
        r.add("POST", "/_sandbox/webhook_endpoints", self._control_webhook_endpoint)

    def _control_webhook_endpoint(self, call: Any) -> dict[str, Any]:
        body = call.request.json or {}
        with self.store.lock:
            endpoint = sandbox_webhooks.create_webhook_endpoint(
                self, Params(body, ("url", "enabled_events", "description", "metadata", "api_version", "secret"))
            )
        return {"id": endpoint["id"], "secret": endpoint["_secret"]}


def _mask(key: str) -> str:
    prefix = key[:8] if len(key) > 12 else key[:3]
    return f"{prefix}{'*' * 12}{key[-4:]}" if len(key) > 12 else f"{prefix}****"


_RENDERERS: dict[str, Any] = {
    "subscriptions": sandbox_billing.render_subscription,
    "subscription_items": sandbox_billing.render_subscription_item,
    "invoices": sandbox_billing.render_invoice,
    "invoice_lines": sandbox_billing.render_line,
    "invoiceitems": sandbox_billing.render_invoiceitem,
    "credit_notes": sandbox_billing.render_credit_note,
    "charges": sandbox_payments.render_charge,
    "webhook_endpoints": sandbox_webhooks.render_webhook_endpoint,
    "credit_grants": sandbox_metering.render_credit_grant,
}

__all__ = ["ACCOUNT_ID", "DEFAULT_API_KEY", "EXPANDABLE", "PREFIXES", "StripeSandbox", "sign_payload"]
