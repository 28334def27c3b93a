"""Seeding the Stripe sandbox from a fixture document (JSON or YAML).

Each kind holds a list of the create call's parameters, written as nested JSON the way
the SDK takes them (``recurring: {interval: month}``, amounts as integers), plus an
optional ``id`` and ``created`` (Unix seconds) to pin identities and history. Objects are
created through the same code as API calls, so they are complete and emit events.

Order (so references resolve and history bills correctly): customers, products, meters,
prices, meter_events, credit_grants, subscriptions, invoiceitems, invoices, credit_notes,
payment_intents, refunds, webhook_endpoints. Subscriptions created in the past are billed
period by period up to the sandbox clock, metered items from the seeded meter events, and
the seeded credit grants pay their metered lines (grants come before subscriptions for
that). Meter events in a seed may be older than Stripe's 35-day window. An invoice's
``lines`` carry ``metadata`` (e.g. ``subledger_credit_grant`` on the line that sells a
grant) and ``period``; ``pay: true`` pays it (``paid: true`` is accepted as the same).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from subledger.core.errors import ConfigError
from subledger.core.sandbox import SandboxError
from subledger.plugins.stripe import (
    sandbox_billing,
    sandbox_catalog,
    sandbox_credits,
    sandbox_metering,
    sandbox_payments,
    sandbox_webhooks,
)
from subledger.plugins.stripe.sandbox_support import Params

if TYPE_CHECKING:
    from subledger.plugins.stripe.sandbox import StripeSandbox

KINDS = (
    "customers", "products", "meters", "prices", "meter_events", "credit_grants", "subscriptions", "invoiceitems",
    "invoices", "credit_notes", "payment_intents", "refunds", "webhook_endpoints",
)
_PINNED = ("id", "created")


def _plain(value: Any) -> Any:
    """Fixture values as the wire would carry them (floats to exact decimal text)."""
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def seed(sb: StripeSandbox, fixture: dict[str, Any]) -> dict[str, int]:
    """Create the fixture's objects; returns how many of each kind were created.

    Raises:
        ConfigError: an unknown kind, or an entry Stripe would refuse (naming kind, index
            and the vendor's message).
    """
    unknown = set(fixture) - set(KINDS) - {"clock"}
    if unknown:
        raise ConfigError(
            f"sandbox fixture has unknown kinds: {', '.join(sorted(unknown))}",
            fix=f"use only: clock, {', '.join(KINDS)}",
        )
    counts: dict[str, int] = {}
    with sb.store.lock:
        sb.seeding_history = True
        try:
            _seed_kinds(sb, fixture, counts)
            sandbox_billing.bill_due_subscriptions(sb)
        finally:
            sb.seeding_history = False
        sandbox_credits.settle(sb)
    return counts


def _seed_kinds(sb: StripeSandbox, fixture: dict[str, Any], counts: dict[str, int]) -> None:
    if "clock" in fixture:
        sb.clock.set(int(fixture["clock"]))
    for kind in KINDS:
        if kind not in fixture:
            continue
        entries = fixture.get(kind) or []
        if not isinstance(entries, list):
            raise ConfigError(f"sandbox fixture: {kind} must be a list", fix=f"write {kind}: [ ... ]")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ConfigError(f"sandbox fixture: {kind}[{index}] must be a mapping",
                                  fix="write key: value pairs")
            try:
                _create(sb, kind, _plain(entry))
            except SandboxError as err:
                raise ConfigError(
                    f"sandbox fixture: {kind}[{index}] was refused: {err.message}"
                    + (f" (param {err.param})" if err.param else ""),
                    fix="correct the entry as the message says; entries take the Stripe API's create parameters",
                ) from None
        counts[kind] = len(entries)


def _create(sb: StripeSandbox, kind: str, entry: dict[str, Any]) -> None:
    pinned = {k: entry.pop(k) for k in _PINNED if k in entry}
    if kind == "customers":
        sandbox_catalog.create_customer(sb, Params(entry, sandbox_catalog.CUSTOMER_PARAMS), **pinned)
    elif kind == "products":
        if "id" in pinned:
            entry["id"] = pinned.pop("id")
        sandbox_catalog.create_product(sb, Params(entry, sandbox_catalog.PRODUCT_PARAMS), **pinned)
    elif kind == "meters":
        sandbox_metering.create_meter(sb, Params(entry, (
            "display_name", "event_name", "default_aggregation", "customer_mapping", "value_settings",
            "event_time_window")), **pinned)
    elif kind == "prices":
        sandbox_catalog.create_price(sb, Params(entry, sandbox_catalog.PRICE_PARAMS), **pinned)
    elif kind == "meter_events":
        _meter_event(sb, entry, pinned)
    elif kind == "subscriptions":
        if "created" in pinned:
            entry.setdefault("backdate_start_date", pinned["created"])
        sandbox_billing.create_subscription(sb, Params(entry, sandbox_billing.SUBSCRIPTION_PARAMS), **pinned)
    elif kind == "invoiceitems":
        sandbox_billing.create_invoiceitem(sb, Params(entry, sandbox_billing.INVOICEITEM_PARAMS), **pinned)
    elif kind == "invoices":
        _invoice(sb, entry, pinned)
    elif kind == "credit_notes":
        sandbox_billing.create_credit_note(sb, Params(entry, sandbox_billing.CREDIT_NOTE_PARAMS), **pinned)
    elif kind == "payment_intents":
        sandbox_payments.create_payment_intent(sb, Params(entry, sandbox_payments.PI_PARAMS), **pinned)
    elif kind == "refunds":
        sandbox_payments.create_refund(sb, Params(entry, sandbox_payments.REFUND_PARAMS), **pinned)
    elif kind == "credit_grants":
        sandbox_metering.create_credit_grant(sb, Params(entry, (
            "amount", "applicability_config", "category", "customer", "effective_at", "expires_at", "metadata",
            "name", "priority")), **pinned)
    elif kind == "webhook_endpoints":
        sandbox_webhooks.create_webhook_endpoint(sb, Params(entry, (*sandbox_webhooks.ENDPOINT_PARAMS, "secret")))


def _meter_event(sb: StripeSandbox, entry: dict[str, Any], pinned: dict[str, Any]) -> None:
    params = Params(entry, ("event_name", "payload", "identifier", "timestamp"))
    sandbox_metering.create_meter_event(sb, params, enforce_window=False)


def _invoice(sb: StripeSandbox, entry: dict[str, Any], pinned: dict[str, Any]) -> None:
    if "paid" in entry:  # ``paid: true`` reads naturally for a settled purchase
        entry.setdefault("pay", entry.pop("paid"))
    flags = {k: bool(entry.pop(k)) for k in ("finalize", "pay", "void", "paid_out_of_band") if k in entry}
    lines = entry.pop("lines", None) or entry.pop("items", [])
    body = sandbox_billing.create_invoice(sb, Params(entry, sandbox_billing.INVOICE_PARAMS), **pinned)
    inv = sb.store.get("invoices", body["id"])
    assert inv is not None
    for line in lines:
        line = dict(line)
        line_pinned = {k: line.pop(k) for k in _PINNED if k in line}
        line.setdefault("created", pinned.get("created"))
        line_pinned.setdefault("created", line.pop("created"))
        sandbox_billing.create_invoiceitem(
            sb, Params({**line, "customer": inv["customer"], "invoice": inv["id"]}, sandbox_billing.INVOICEITEM_PARAMS),
            **{k: v for k, v in line_pinned.items() if v is not None},
        )
    at = pinned.get("created")
    if flags.get("finalize") or flags.get("pay") or flags.get("void"):
        sandbox_billing.finalize(sb, inv, at=at)
    if flags.get("pay") and inv["status"] == "open":
        sandbox_billing.pay(sb, inv, out_of_band=flags.get("paid_out_of_band", False), at=at)
    if flags.get("void") and inv["status"] == "open":
        sandbox_billing.void(sb, inv, at or sb.now())
