"""Stripe sandbox: payment intents, charges and refunds.

Test payment methods behave like Stripe's: ``pm_card_visa`` (and any other ``pm_``)
succeeds, ``pm_card_chargeDeclined`` is declined with a 402 ``card_error``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from subledger.core.sandbox import Call, Router
from subledger.plugins.stripe.sandbox_support import (
    LIST_PARAMS,
    Params,
    created_filter,
    error,
    invalid,
    list_object,
    list_of,
    missing,
    not_found,
)

if TYPE_CHECKING:
    from subledger.plugins.stripe.sandbox import StripeSandbox

DECLINED = "pm_card_chargeDeclined"
PI_PARAMS = (
    "amount", "currency", "customer", "description", "metadata", "payment_method", "payment_method_types",
    "confirm", "capture_method", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
    "off_session", "setup_future_usage", "automatic_payment_methods", "return_url",
)
CHARGE_PARAMS = ("amount", "currency", "customer", "source", "description", "metadata", "capture", "receipt_email",
                 "statement_descriptor")
REFUND_PARAMS = ("charge", "payment_intent", "amount", "reason", "metadata", "instructions_email")


def routes(sb: StripeSandbox, r: Router) -> None:
    r.add("POST", "/v1/payment_intents", lambda c: create_payment_intent(sb, Params(c.params, PI_PARAMS), c))
    r.add("GET", "/v1/payment_intents", lambda c: list_payment_intents(sb, c))
    r.add("GET", "/v1/payment_intents/{id}", lambda c: sb.respond(
        "payment_intents", sb.require("payment_intents", c["id"], "payment_intent"), Params(c.params, ())))
    r.add("POST", "/v1/payment_intents/{id}", lambda c: update_metadata(sb, c, "payment_intents", "payment_intent"))
    r.add("POST", "/v1/payment_intents/{id}/confirm", lambda c: confirm_endpoint(sb, c))
    r.add("POST", "/v1/payment_intents/{id}/cancel", lambda c: cancel_payment_intent(sb, c))
    r.add("POST", "/v1/charges", lambda c: create_charge(sb, Params(c.params, CHARGE_PARAMS), c))
    r.add("GET", "/v1/charges", lambda c: list_charges(sb, c))
    r.add("GET", "/v1/charges/{id}", lambda c: sb.respond(
        "charges", sb.require("charges", c["id"], "charge"), Params(c.params, ())))
    r.add("POST", "/v1/charges/{id}", lambda c: update_metadata(sb, c, "charges", "charge"))
    r.add("POST", "/v1/refunds", lambda c: create_refund(sb, Params(c.params, REFUND_PARAMS), c))
    r.add("GET", "/v1/refunds", lambda c: list_refunds(sb, c))
    r.add("GET", "/v1/refunds/{id}", lambda c: sb.respond(
        "refunds", sb.require("refunds", c["id"], "refund"), Params(c.params, ())))
    r.add("POST", "/v1/refunds/{id}", lambda c: update_metadata(sb, c, "refunds", "refund"))


def _card_details() -> dict[str, Any]:
    return {
        "card": {
            "brand": "visa", "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                        "cvc_check": "pass"},
            "country": "US", "exp_month": 12, "exp_year": 2034, "fingerprint": "sbxFingerprint01",
            "funding": "credit", "installments": None, "last4": "4242", "mandate": None, "network": "visa",
            "network_token": {"used": False}, "three_d_secure": None, "wallet": None,
        },
        "type": "card",
    }


def render_charge(sb: StripeSandbox, charge: dict[str, Any]) -> dict[str, Any]:
    body = {k: copy.deepcopy(v) for k, v in charge.items() if not k.startswith("_")}
    refunds = [r for r in sb.store.ordered("refunds") if r["charge"] == charge["id"]]
    body["refunds"] = list_of(sb, "refunds", refunds, f"/v1/charges/{charge['id']}/refunds")
    body["refunds"].pop("total_count", None)
    return body


def _charge(
    sb: StripeSandbox, *, amount: int, currency: str, customer: str | None, description: str | None,
    metadata: dict[str, str], payment_method: str, intent: str | None, invoice: str | None, now: int,
    request: Any = None,
) -> dict[str, Any]:
    declined = payment_method == DECLINED
    charge = {
        "id": sb.new_id("ch_"),
        "object": "charge",
        "amount": amount,
        "amount_captured": 0 if declined else amount,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None if declined else sb.new_id("txn_"),
        "billing_details": {
            "address": {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None,
                        "state": None},
            "email": None, "name": None, "phone": None,
        },
        "calculated_statement_descriptor": "SUBLEDGER SANDBOX",
        "captured": not declined,
        "created": now,
        "currency": currency,
        "customer": customer,
        "description": description,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": "card_declined" if declined else None,
        "failure_message": "Your card was declined." if declined else None,
        "fraud_details": {},
        "invoice": invoice,
        "livemode": False,
        "metadata": metadata,
        "on_behalf_of": None,
        "outcome": {
            "network_status": "declined_by_network" if declined else "approved_by_network",
            "reason": "generic_decline" if declined else None, "risk_level": "normal", "risk_score": 20,
            "seller_message": "The bank did not return any further details with this decline." if declined
            else "Payment complete.",
            "type": "issuer_declined" if declined else "authorized",
        },
        "paid": not declined,
        "payment_intent": intent,
        "payment_method": payment_method,
        "payment_method_details": _card_details(),
        "radar_options": {},
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/sandbox/{amount}",
        "refunded": False,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "failed" if declined else "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    sb.store.put("charges", charge)
    sb.emit("charge.failed" if declined else "charge.succeeded", "charges", charge, request=request, created=now)
    return charge


def _intent(sb: StripeSandbox, *, amount: int, currency: str, customer: str | None, description: str | None,
            metadata: dict[str, str], payment_method: str | None, invoice: str | None, now: int,
            capture_method: str = "automatic") -> dict[str, Any]:
    pid = sb.new_id("pi_")
    intent = {
        "id": pid,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": capture_method,
        "client_secret": f"{pid}_secret_{sb.new_id('', 20)}",
        "confirmation_method": "automatic",
        "created": now,
        "currency": currency,
        "customer": customer,
        "description": description,
        "invoice": invoice,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_confirmation" if payment_method else "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }
    sb.store.put("payment_intents", intent)
    sb.emit("payment_intent.created", "payment_intents", intent, created=now)
    return intent


def _confirm(sb: StripeSandbox, intent: dict[str, Any], now: int, request: Any = None) -> dict[str, Any]:
    if not intent["payment_method"]:
        raise error(400, "You cannot confirm this PaymentIntent because it's missing a payment method.",
                    code="payment_intent_unexpected_state", param="payment_method")
    charge = _charge(
        sb, amount=intent["amount"], currency=intent["currency"], customer=intent["customer"],
        description=intent["description"], metadata=dict(intent["metadata"]), payment_method=intent["payment_method"],
        intent=intent["id"], invoice=intent["invoice"], now=now, request=request,
    )
    intent["latest_charge"] = charge["id"]
    if charge["status"] == "failed":
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {
            "charge": charge["id"], "code": "card_declined", "decline_code": "generic_decline",
            "message": "Your card was declined.", "type": "card_error",
        }
        sb.emit("payment_intent.payment_failed", "payment_intents", intent, request=request, created=now)
        raise error(402, "Your card was declined.", code="card_declined", kind="card_error")
    intent["status"] = "succeeded"
    intent["amount_received"] = intent["amount"]
    sb.emit("payment_intent.succeeded", "payment_intents", intent, request=request, created=now)
    return intent


def charge_for_invoice(sb: StripeSandbox, inv: dict[str, Any], now: int, *, request: Any = None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The succeeded payment intent and charge that pay an invoice automatically."""
    intent = _intent(
        sb, amount=inv["amount_remaining"], currency=inv["currency"], customer=inv["customer"],
        description=f"Payment for Invoice {inv['number']}", metadata={}, payment_method="pm_card_visa",
        invoice=inv["id"], now=now,
    )
    _confirm(sb, intent, now, request)
    return intent, sb.store.get("charges", intent["latest_charge"]) or {}


def create_payment_intent(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any
                          ) -> dict[str, Any]:
    amount = p.int("amount", required=True, minimum=1) or 0
    currency = (p.str("currency", required=True) or "").lower()
    customer = p.str("customer")
    if customer and sb.store.get("customers", customer) is None:
        raise not_found("customer", customer, "customer")
    now = overrides.get("created") or sb.now()
    intent = _intent(
        sb, amount=amount, currency=currency, customer=customer, description=p.str("description"),
        metadata=p.metadata(), payment_method=p.str("payment_method"), invoice=None, now=now,
        capture_method=p.enum("capture_method", ("automatic", "automatic_async", "manual"), default="automatic")
        or "automatic",
    )
    if p.bool("confirm"):
        _confirm(sb, intent, now, call.request if call else None)
    return sb.respond("payment_intents", intent, p)


def confirm_endpoint(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("payment_method", "return_url", "off_session", "receipt_email"))
    intent = sb.require("payment_intents", call["id"], "payment_intent")
    if intent["status"] not in ("requires_confirmation", "requires_payment_method"):
        raise error(400, f"You cannot confirm this PaymentIntent because it has a status of {intent['status']}.",
                    code="payment_intent_unexpected_state")
    if p.has("payment_method"):
        intent["payment_method"] = p.str("payment_method")
    _confirm(sb, intent, sb.now(), call.request)
    return sb.respond("payment_intents", intent, p)


def cancel_payment_intent(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("cancellation_reason",))
    intent = sb.require("payment_intents", call["id"], "payment_intent")
    if intent["status"] in ("succeeded", "canceled"):
        raise error(400, f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
                    code="payment_intent_unexpected_state")
    intent["status"] = "canceled"
    intent["canceled_at"] = sb.now()
    intent["cancellation_reason"] = p.enum("cancellation_reason", ("abandoned", "duplicate", "fraudulent",
                                                                    "requested_by_customer"))
    sb.emit("payment_intent.canceled", "payment_intents", intent, request=call.request)
    return sb.respond("payment_intents", intent, p)


def list_payment_intents(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer", "created"))
    customer = p.str("customer")
    created = created_filter(p)
    return list_object(sb, p, "payment_intents", "/v1/payment_intents", label="payment_intent",
                       where=lambda o: created(o) and (customer is None or o["customer"] == customer))


def create_charge(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    amount = p.int("amount", required=True, minimum=1) or 0
    currency = (p.str("currency", required=True) or "").lower()
    customer = p.str("customer")
    source = p.str("source")
    if customer is None and source is None:
        raise missing("source")
    charge = _charge(
        sb, amount=amount, currency=currency, customer=customer, description=p.str("description"),
        metadata=p.metadata(), payment_method=source or "card_sandbox", intent=None, invoice=None,
        now=overrides.get("created") or sb.now(), request=call.request if call else None,
    )
    if charge["status"] == "failed":
        raise error(402, "Your card was declined.", code="card_declined", kind="card_error")
    return sb.respond("charges", charge, p)


def list_charges(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer", "created", "payment_intent", "transfer_group"))
    customer = p.str("customer")
    intent = p.str("payment_intent")
    created = created_filter(p)
    return list_object(sb, p, "charges", "/v1/charges", label="charge", where=lambda o: (
        created(o) and (customer is None or o["customer"] == customer)
        and (intent is None or o["payment_intent"] == intent)))


def refund_charge(sb: StripeSandbox, charge_id: str, amount: int | None, reason: str | None, now: int, *,
                  metadata: dict[str, str] | None = None, request: Any = None) -> dict[str, Any]:
    charge = sb.store.get("charges", charge_id)
    if charge is None:
        raise not_found("charge", charge_id, "charge")
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    if charge["status"] != "succeeded":
        raise error(400, f"Charge {charge_id} has not succeeded; it cannot be refunded.", param="charge")
    if remaining <= 0:
        raise error(400, f"Charge {charge_id} has already been refunded.", code="charge_already_refunded")
    value = remaining if amount is None else amount
    if value > remaining:
        raise invalid("amount", f"Refund amount ({value}) is greater than unrefunded amount on charge ({remaining})")
    refund = {
        "id": sb.new_id("re_"),
        "object": "refund",
        "amount": value,
        "balance_transaction": sb.new_id("txn_"),
        "charge": charge_id,
        "created": now,
        "currency": charge["currency"],
        "metadata": metadata or {},
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    sb.store.put("refunds", refund)
    charge["amount_refunded"] += value
    charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
    sb.emit("charge.refunded", "charges", charge, {"amount_refunded": charge["amount_refunded"] - value},
            request=request, created=now)
    sb.emit("refund.created", "refunds", refund, request=request, created=now)
    return refund


def create_refund(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    charge_id = p.str("charge")
    intent_id = p.str("payment_intent")
    if charge_id is None and intent_id is None:
        raise error(400, "One of the following params should be provided for this request: payment_intent or "
                    "charge.", code="parameter_missing")
    if charge_id is None:
        intent = sb.require("payment_intents", intent_id or "", "payment_intent", "payment_intent")
        if not intent["latest_charge"]:
            raise error(400, "This PaymentIntent does not have a successful charge to refund.",
                        param="payment_intent")
        charge_id = intent["latest_charge"]
    refund = refund_charge(
        sb, charge_id, p.int("amount", minimum=1),
        p.enum("reason", ("duplicate", "fraudulent", "requested_by_customer")),
        overrides.get("created") or sb.now(), metadata=p.metadata(), request=call.request if call else None,
    )
    return sb.respond("refunds", refund, p)


def list_refunds(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "charge", "payment_intent", "created"))
    charge = p.str("charge")
    intent = p.str("payment_intent")
    created = created_filter(p)
    return list_object(sb, p, "refunds", "/v1/refunds", label="refund", where=lambda o: (
        created(o) and (charge is None or o["charge"] == charge)
        and (intent is None or o["payment_intent"] == intent)))


def update_metadata(sb: StripeSandbox, call: Call, collection: str, label: str) -> dict[str, Any]:
    p = Params(call.params, ("metadata", "description"))
    obj = sb.require(collection, call["id"], label)
    before = dict(obj.get("metadata") or {})
    obj["metadata"] = p.metadata(obj.get("metadata"))
    if p.has("description") and "description" in obj:
        obj["description"] = p.str("description") or None
    if obj["metadata"] != before:
        sb.emit(f"{obj['object']}.updated", collection, obj, {"metadata": before}, request=call.request)
    return sb.respond(collection, obj, p)
