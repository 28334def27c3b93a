"""Vendor sandboxes: stateful local HTTP servers that emulate a vendor's API.

Connectors are tested (and ``subledger demo`` runs) against these, with the vendor's
official SDK pointed at ``http://127.0.0.1:<port>``. See ``docs/sandboxes.md``.

    from subledger.core.sandbox import SandboxServer
    with SandboxServer(MySandbox(fixture="seed.yaml")) as server:
        ...  # server.url; server.sandbox.faults.inject("drop", method="POST", path="/v1/invoices")
"""

from subledger.core.sandbox.app import Call, Exchange, Outcome, Sandbox, load_fixture
from subledger.core.sandbox.clock import SandboxClock
from subledger.core.sandbox.faults import Fault, FaultPlan
from subledger.core.sandbox.forms import FormError, parse_form, parse_pairs
from subledger.core.sandbox.idempotency import IdempotencyCache, SavedResponse, fingerprint
from subledger.core.sandbox.routing import Route, Router
from subledger.core.sandbox.server import LOCALHOST, SandboxServer
from subledger.core.sandbox.store import (
    ObjectStore,
    Page,
    cursor_page,
    decode_token,
    encode_token,
    offset_page,
    token_page,
)
from subledger.core.sandbox.wire import Headers, Request, Response, SandboxError

__all__ = [
    "LOCALHOST",
    "Call",
    "Exchange",
    "Fault",
    "FaultPlan",
    "FormError",
    "Headers",
    "IdempotencyCache",
    "ObjectStore",
    "Outcome",
    "Page",
    "Request",
    "Response",
    "Route",
    "Router",
    "Sandbox",
    "SandboxClock",
    "SandboxError",
    "SandboxServer",
    "SavedResponse",
    "cursor_page",
    "decode_token",
    "encode_token",
    "fingerprint",
    "load_fixture",
    "offset_page",
    "parse_form",
    "parse_pairs",
    "token_page",
]
