"""Stripe sandbox: billing meters, meter events and adjustments, event summaries, credit grants.

These objects arrived in 2024, after the bundled v1 spec; they are served in their
current shapes (those of Stripe's 2026 fixtures). Meter events are deduplicated by
``identifier`` for 24 hours, must be at most 35 days old and 5 minutes ahead, and are
aggregated per the meter's formula (``sum``, ``count`` or ``last``).
"""

from __future__ import annotations

import bisect
import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from subledger.core.sandbox import Call, Router
from subledger.plugins.stripe import sandbox_credits
from subledger.plugins.stripe.sandbox_support import (
    LIST_PARAMS,
    Params,
    decimal_text,
    error,
    invalid,
    list_object,
    missing,
    not_found,
)

if TYPE_CHECKING:
    from subledger.plugins.stripe.sandbox import StripeSandbox

DAY = 86400
IDENTIFIER_TTL = DAY
MAX_AGE = 35 * DAY
MAX_AHEAD = 300


def routes(sb: StripeSandbox, r: Router) -> None:
    r.add("POST", "/v1/billing/meters", lambda c: create_meter(sb, Params(c.params, (
        "display_name", "event_name", "default_aggregation", "customer_mapping", "value_settings",
        "event_time_window")), c))
    r.add("GET", "/v1/billing/meters", lambda c: list_meters(sb, c))
    r.add("GET", "/v1/billing/meters/{id}", lambda c: sb.respond(
        "meters", sb.require("meters", c["id"], "billing meter"), Params(c.params, ())))
    r.add("POST", "/v1/billing/meters/{id}", lambda c: update_meter(sb, c))
    r.add("POST", "/v1/billing/meters/{id}/deactivate", lambda c: set_meter_status(sb, c, "inactive"))
    r.add("POST", "/v1/billing/meters/{id}/reactivate", lambda c: set_meter_status(sb, c, "active"))
    r.add("GET", "/v1/billing/meters/{id}/event_summaries", lambda c: list_event_summaries(sb, c))
    r.add("POST", "/v1/billing/meter_events", lambda c: create_meter_event(sb, Params(c.params, (
        "event_name", "payload", "identifier", "timestamp")), c))
    r.add("POST", "/v1/billing/meter_event_adjustments", lambda c: create_adjustment(sb, c))
    r.add("POST", "/v1/billing/credit_grants", lambda c: create_credit_grant(sb, Params(c.params, (
        "amount", "applicability_config", "category", "customer", "effective_at", "expires_at", "metadata",
        "name", "priority")), c))
    r.add("GET", "/v1/billing/credit_grants", lambda c: list_credit_grants(sb, c))
    r.add("GET", "/v1/billing/credit_grants/{id}", lambda c: get_credit_grant(sb, c))
    r.add("POST", "/v1/billing/credit_grants/{id}", lambda c: update_credit_grant(sb, c))
    r.add("POST", "/v1/billing/credit_grants/{id}/expire", lambda c: end_credit_grant(sb, c, "expires_at"))
    r.add("POST", "/v1/billing/credit_grants/{id}/void", lambda c: end_credit_grant(sb, c, "voided_at"))


# -- meters -----------------------------------------------------------------------------


def create_meter(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    event_name = p.str("event_name", required=True, max_length=100) or ""
    for other in sb.store.collection("meters").values():
        if other["event_name"] == event_name and other["status"] == "active":
            raise invalid("event_name", f"An active meter with event_name `{event_name}` already exists "
                          f"({other['id']}).")
    aggregation = p.hash("default_aggregation", ("formula",), required=True)
    assert aggregation is not None
    mapping = p.hash("customer_mapping", ("event_payload_key", "type"))
    value_settings = p.hash("value_settings", ("event_payload_key",))
    now = overrides.get("created") or sb.now()
    meter = {
        "id": overrides.get("id") or sb.new_id("mtr_"),
        "object": "billing.meter",
        "created": now,
        "customer_mapping": {
            "event_payload_key": (mapping.str("event_payload_key", required=True) if mapping else None)
            or "stripe_customer_id",
            "type": (mapping.enum("type", ("by_id",), default="by_id") if mapping else None) or "by_id",
        },
        "default_aggregation": {"formula": aggregation.enum("formula", ("count", "last", "sum"), required=True)},
        "display_name": p.str("display_name", required=True, max_length=250),
        "event_name": event_name,
        "event_time_window": p.enum("event_time_window", ("day", "hour")),
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": now,
        "value_settings": {
            "event_payload_key": (value_settings.str("event_payload_key", required=True) if value_settings
                                  else None) or "value",
        },
    }
    sb.store.put("meters", meter)
    sb.emit("billing.meter.created", "meters", meter, request=call.request if call else None, created=now)
    return sb.respond("meters", meter, p)


def list_meters(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "status"))
    status = p.enum("status", ("active", "inactive"))
    return list_object(sb, p, "meters", "/v1/billing/meters", label="billing meter",
                       where=lambda o: status is None or o["status"] == status)


def update_meter(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("display_name",))
    meter = sb.require("meters", call["id"], "billing meter")
    if p.has("display_name"):
        meter["display_name"] = p.str("display_name", max_length=250)
        meter["updated"] = sb.now()
        sb.emit("billing.meter.updated", "meters", meter, request=call.request)
    return sb.respond("meters", meter, p)


def set_meter_status(sb: StripeSandbox, call: Call, status: str) -> dict[str, Any]:
    p = Params(call.params, ())
    meter = sb.require("meters", call["id"], "billing meter")
    if meter["status"] == status:
        raise error(400, f"The meter is already {status}.")
    meter["status"] = status
    meter["status_transitions"]["deactivated_at"] = sb.now() if status == "inactive" else None
    meter["updated"] = sb.now()
    sb.emit("billing.meter.deactivated" if status == "inactive" else "billing.meter.reactivated", "meters", meter,
            request=call.request)
    return sb.respond("meters", meter, p)


# -- meter events -----------------------------------------------------------------------


def create_meter_event(
    sb: StripeSandbox, p: Params, call: Call | None = None, *, enforce_window: bool = True
) -> dict[str, Any]:
    """Record one meter event; ``enforce_window=False`` lets a seed load older history."""
    now = sb.now()
    event_name = p.str("event_name", required=True, max_length=100) or ""
    meter = next((m for m in sb.store.collection("meters").values()
                  if m["event_name"] == event_name and m["status"] == "active"), None)
    if meter is None:
        raise invalid("event_name", f"No active meter was found for event_name `{event_name}`.")
    payload = p.raw("payload")
    if not isinstance(payload, dict):
        raise missing("payload")
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    if not payload.get(customer_key):
        raise missing(f"payload[{customer_key}]")
    value_text = payload.get(value_key)
    if meter["default_aggregation"]["formula"] != "count":
        if value_text is None:
            raise missing(f"payload[{value_key}]")
        try:
            value = Decimal(str(value_text))
        except ArithmeticError:
            raise invalid(f"payload[{value_key}]", f"Invalid value: {value_text!r} is not a number") from None
        if not value.is_finite():
            raise invalid(f"payload[{value_key}]", f"Invalid value: {value_text!r} is not a number")
    timestamp = p.int("timestamp")
    if timestamp is None:
        timestamp = now
    if enforce_window and (timestamp < now - MAX_AGE or timestamp > now + MAX_AHEAD):
        raise invalid("timestamp", "Meter event timestamps must be within the past 35 calendar days and no more "
                      "than 5 minutes in the future.")
    identifier = p.str("identifier", max_length=100) or sb.new_id("", 24)
    previous = sb.store.get("meter_events", identifier)
    if previous is not None and now - previous["created"] < IDENTIFIER_TTL:
        raise error(400, f"An event with identifier `{identifier}` already exists.", param="identifier",
                    code="resource_already_exists")
    event = {
        "created": now,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "object": "billing.meter_event",
        "payload": {str(k): str(v) for k, v in payload.items()},
        "timestamp": timestamp,
        "_meter": meter["id"],
        "_canceled": False,
    }
    sb.store.put("meter_events", event, key="identifier")
    _index(sb, meter, event)
    return {k: v for k, v in event.items() if not k.startswith("_")}


def _index(sb: StripeSandbox, meter: dict[str, Any], event: dict[str, Any]) -> None:
    """Keep each (meter, customer)'s events sorted by time, so billing a period is a bisect."""
    key = (meter["id"], event["payload"].get(meter["customer_mapping"]["event_payload_key"]))
    events = sb.meter_index.setdefault(key, [])
    bisect.insort(events, event, key=lambda e: (e["timestamp"], sb.store.seq("meter_events", e["identifier"])))


def create_adjustment(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("event_name", "type", "cancel"))
    event_name = p.str("event_name", required=True) or ""
    p.enum("type", ("cancel",), default="cancel")
    cancel = p.hash("cancel", ("identifier",), required=True)
    assert cancel is not None
    identifier = cancel.str("identifier", required=True) or ""
    event = sb.store.get("meter_events", identifier)
    if event is not None and event["event_name"] == event_name:
        event["_canceled"] = True
    return {
        "object": "billing.meter_event_adjustment", "livemode": False, "status": "pending",
        "event_name": event_name, "type": "cancel", "cancel": {"identifier": identifier},
    }


def _events_for(sb: StripeSandbox, meter: dict[str, Any], customer: str, start: int, end: int) -> list[dict[str, Any]]:
    """The meter's live events for ``customer`` in ``[start, end)``, oldest first."""
    events = sb.meter_index.get((meter["id"], customer), [])
    lo = bisect.bisect_left(events, start, key=lambda e: e["timestamp"])
    hi = bisect.bisect_left(events, end, key=lambda e: e["timestamp"])
    return [e for e in events[lo:hi] if not e["_canceled"]]


def aggregate(meter: dict[str, Any], events: list[dict[str, Any]]) -> Decimal:
    """The meter's formula over events: sum of values, count, or the last value."""
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return Decimal(len(events))
    key = meter["value_settings"]["event_payload_key"]
    values = [Decimal(e["payload"].get(key, "0")) for e in events]
    if formula == "last":
        return values[-1] if values else Decimal(0)
    return sum(values, Decimal(0))


def aggregate_usage(sb: StripeSandbox, price: dict[str, Any], customer: str, start: int, end: int) -> Decimal:
    """The usage a metered price bills for ``customer`` over ``[start, end)``."""
    meter_id = price["recurring"].get("meter")
    if not meter_id:
        return Decimal(0)
    meter = sb.store.get("meters", meter_id)
    if meter is None:
        return Decimal(0)
    return aggregate(meter, _events_for(sb, meter, customer, start, end))


def _number(value: Decimal) -> int | float:
    """JSON number of an aggregated value (Stripe sends a float)."""
    return int(value) if value == value.to_integral_value() else float(decimal_text(value))


def list_event_summaries(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer", "start_time", "end_time", "value_grouping_window"))
    meter = sb.require("meters", call["id"], "billing meter")
    customer = p.str("customer", required=True) or ""
    start = p.int("start_time", required=True) or 0
    end = p.int("end_time", required=True) or 0
    window = p.enum("value_grouping_window", ("day", "hour"))
    for name, value in (("start_time", start), ("end_time", end)):
        if value % 60:
            raise invalid(name, f"{name} must be aligned with minute boundaries.")
        if window and value % (DAY if window == "day" else 3600):
            raise invalid(name, f"{name} must be aligned with {window} boundaries when value_grouping_window is "
                          f"{window}.")
    if end <= start:
        raise invalid("end_time", "end_time must be after start_time.")
    step = {"day": DAY, "hour": 3600}.get(window or "", end - start)
    summaries = []
    for bucket_start in range(start, end, step):
        bucket_end = min(bucket_start + step, end)
        events = _events_for(sb, meter, customer, bucket_start, bucket_end)
        if window and not events:
            continue
        digest = hashlib.sha256(f"{meter['id']}|{customer}|{bucket_start}|{bucket_end}".encode()).hexdigest()[:40]
        summaries.append({
            "id": f"mtrusg_test_{digest}",
            "object": "billing.meter_event_summary",
            "aggregated_value": _number(aggregate(meter, events)),
            "end_time": bucket_end,
            "livemode": False,
            "meter": meter["id"],
            "start_time": bucket_start,
        })
    summaries.reverse()  # newest window first, as Stripe lists them
    url = f"/v1/billing/meters/{meter['id']}/event_summaries"
    return list_object(sb, p, "meter_event_summaries", url, items=summaries, label="billing meter event summary")


# -- credit grants ----------------------------------------------------------------------


def render_credit_grant(sb: StripeSandbox, grant: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in grant.items() if not k.startswith("_")}


def create_credit_grant(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any
                        ) -> dict[str, Any]:
    customer = p.str("customer", required=True) or ""
    if sb.store.get("customers", customer) is None:
        raise not_found("customer", customer, "customer")
    amount = p.hash("amount", ("type", "monetary"), required=True)
    assert amount is not None
    amount.enum("type", ("monetary",), required=True)
    monetary = amount.hash("monetary", ("currency", "value"), required=True)
    assert monetary is not None
    applicability = p.hash("applicability_config", ("scope",), required=True)
    assert applicability is not None
    scope = applicability.hash("scope", ("price_type", "prices"), required=True)
    assert scope is not None
    price_type = scope.enum("price_type", ("metered",))
    prices = scope.array("prices")
    if price_type is None and not prices:
        raise missing("applicability_config[scope][price_type]")
    now = overrides.get("created") or sb.now()
    effective = p.int("effective_at") or now
    expires = p.int("expires_at")
    if expires is not None and expires <= effective:
        raise invalid("expires_at", "expires_at must be after effective_at.")
    scope_doc: dict[str, Any] = {"price_type": price_type}
    if prices:
        scope_doc["prices"] = [{"id": str((pr or {}).get("id"))} for pr in prices if isinstance(pr, dict)]
    grant = {
        "id": overrides.get("id") or sb.new_id("credgr_test_"),
        "object": "billing.credit_grant",
        "amount": {
            "monetary": {
                "currency": (monetary.str("currency", required=True) or "").lower(),
                "value": monetary.int("value", required=True, minimum=1),
            },
            "type": "monetary",
        },
        "applicability_config": {"scope": scope_doc},
        "category": p.enum("category", ("paid", "promotional"), required=True),
        "created": now,
        "customer": customer,
        "customer_account": None,
        "effective_at": effective,
        "expires_at": expires,
        "livemode": False,
        "metadata": p.metadata(),
        "name": p.str("name", max_length=100),
        "priority": p.int("priority", minimum=0) if p.has("priority") else 50,
        "test_clock": None,
        "updated": now,
        "voided_at": None,
    }
    sb.store.put("credit_grants", grant)
    sb.emit("billing.credit_grant.created", "credit_grants", grant, request=call.request if call else None,
            created=now)
    sandbox_credits.grant_created(sb, grant, request=call.request if call else None)
    return sb.respond("credit_grants", grant, p)


def list_credit_grants(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "customer"))
    sandbox_credits.settle(sb)
    customer = p.str("customer")
    return list_object(sb, p, "credit_grants", "/v1/billing/credit_grants", label="credit grant",
                       where=lambda o: customer is None or o["customer"] == customer)


def get_credit_grant(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    sandbox_credits.settle(sb)
    return sb.respond("credit_grants", sb.require("credit_grants", call["id"], "credit grant"), Params(call.params, ()))


def update_credit_grant(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("expires_at", "metadata"))
    grant = sb.require("credit_grants", call["id"], "credit grant")
    before = {"expires_at": grant["expires_at"], "metadata": dict(grant["metadata"])}
    if p.has("expires_at"):
        grant["expires_at"] = p.int("expires_at")
    grant["metadata"] = p.metadata(grant["metadata"])
    grant["updated"] = sb.now()
    previous = {k: v for k, v in before.items() if grant[k] != v}
    if previous:
        sb.emit("billing.credit_grant.updated", "credit_grants", grant, previous, request=call.request)
    return sb.respond("credit_grants", grant, p)


def end_credit_grant(sb: StripeSandbox, call: Call, field: str) -> dict[str, Any]:
    p = Params(call.params, ())
    grant = sb.require("credit_grants", call["id"], "credit grant")
    if grant["voided_at"] is not None:
        raise error(400, "This credit grant has been voided.")
    now = sb.now()
    if field == "expires_at" and grant["expires_at"] is not None and grant["expires_at"] <= now:
        raise error(400, "This credit grant has already expired.")
    previous = grant[field]
    grant[field] = now
    grant["updated"] = now
    sb.emit("billing.credit_grant.updated", "credit_grants", grant, {field: previous}, request=call.request)
    if field == "voided_at":
        sandbox_credits.grant_voided(sb, grant, request=call.request)
    else:
        sandbox_credits.settle(sb, now)
    return sb.respond("credit_grants", grant, p)
