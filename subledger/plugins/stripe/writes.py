"""Writing to Stripe exactly once.

Every request carries an ``Idempotency-Key`` derived from the action's key, so a retry
after a dropped connection replays Stripe's saved answer instead of acting twice. Stripe
forgets keys after 24 hours, so each created object also carries
``metadata.subledger_action_id``, and a write first *finds* what an earlier attempt made
(listing the customer's invoices), then completes it rather than starting over.

``create_invoice`` payload (amounts in minor units of ``currency``)::

    {"customer_external_id": "cus_...", "currency": "USD", "description": "...",
     "contract_external_id": "sub_...",
     "lines": [{"description": "API calls overage", "amount_minor": 12500,
                "quantity": "250000", "service_start": "2026-01-01", "service_end": "2026-01-31",
                "component": "api_calls", "meter": "api_calls", "kind": "usage"}],
     "metadata": {...}}

What the invoice fixes travels with it, so a re-read maps it back: the contract as the
invoice's ``metadata.subledger_contract`` (when given), and each line's ``component``,
``meter``, ``kind`` and ``quantity`` (the quantity difference) as its invoice item's
``metadata.subledger_<name>`` (see :func:`subledger.plugins.stripe.mapping.invoice`).

``update_customer_metadata``: ``{"metadata": {"subledger_id": "acme"}}`` on
``target_external_id``; ``base_version`` ``{"metadata": {"subledger_id": null}}`` is what the
engine last saw, and a different current value is a conflict, never overwritten.

``push_meter_events``: ``{"events": [{"identifier": "...", "meter": "api_calls",
"customer_external_id": "cus_...", "quantity": "25", "occurred_at": "2026-01-05T10:00:00+00:00"}]}``;
Stripe deduplicates by ``identifier`` for 24 hours.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from subledger.core.connector import WriteAction, WriteConflict, WriteResult
from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError, SystemFailure
from subledger.core.money import exponent, normalize_currency
from subledger.plugins.stripe.mapping import CONTRACT_LINK_KEY, STRIPE_EXPONENT_OVERRIDES

if TYPE_CHECKING:
    from subledger.plugins.stripe.connector import StripeConnector

ACTION_KEY = "subledger_action_id"
FINDING_KEY = "subledger_finding"
LINE_KEY = "subledger_line"
MAX_KEY = 255


def _key(base: str, suffix: str) -> str:
    """A Stripe idempotency key (at most 255 characters) for one request of an action."""
    key = f"{base}:{suffix}"
    if len(key) <= MAX_KEY:
        return key
    return f"{hashlib.sha256(base.encode()).hexdigest()}:{suffix}"


def _metadata_value(value: str) -> str:
    return value if len(value) <= 500 else hashlib.sha256(value.encode()).hexdigest()


def write(connector: StripeConnector, action: WriteAction) -> WriteResult:
    if action.kind == "create_invoice":
        return _create_invoice(connector, action)
    if action.kind == "update_customer_metadata":
        return _update_customer_metadata(connector, action)
    return _push_meter_events(connector, action)


def find(connector: StripeConnector, action: WriteAction) -> WriteResult | None:
    if action.kind == "create_invoice":
        return _find_invoice(connector, action, complete_only=True)
    if action.kind == "update_customer_metadata":
        return _find_metadata(connector, action)
    return _find_meter_events(connector, action)


# -- create_invoice -----------------------------------------------------------------------


def _stripe_amount(amount_minor: int, currency: str) -> int:
    code = normalize_currency(currency)
    shift = STRIPE_EXPONENT_OVERRIDES.get(code, exponent(code)) - exponent(code)
    return int(amount_minor) * 10**shift


def _epoch(day: str) -> int:
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _invoice_payload(action: WriteAction) -> tuple[str, str, list[dict[str, Any]]]:
    p = action.payload
    customer = p.get("customer_external_id") or p.get("customer")
    if not customer or not str(customer).startswith("cus_"):
        raise ConfigError(
            f"create_invoice action {action.idempotency_key!r} names customer {customer!r}, not a Stripe customer id",
            fix="link the customer to its Stripe record (customer_external_id: cus_...) before planning the invoice",
        )
    currency = normalize_currency(p.get("currency") or "")
    lines = p.get("lines") or []
    if not lines:
        raise ConfigError(f"create_invoice action {action.idempotency_key!r} has no lines",
                          fix="give at least one line with description and amount_minor")
    for n, line in enumerate(lines):
        if not isinstance(line.get("amount_minor"), int) or isinstance(line.get("amount_minor"), bool):
            raise ConfigError(f"create_invoice line {n} amount_minor {line.get('amount_minor')!r} is not an integer",
                              fix="give every line its amount in integer minor units")
    return str(customer), currency, lines


def _invoices_of(connector: StripeConnector, customer: str) -> list[dict[str, Any]]:
    api = connector.api
    return [inv for inv in api.list_all(f"list invoices of {customer}", lambda q: api.v1.invoices.list(params=q),
                                        {"customer": customer}) if inv.get("id")]


def _lines_of(connector: StripeConnector, invoice: dict[str, Any]) -> list[dict[str, Any]]:
    api = connector.api
    return list(api.list_all(f"list lines of {invoice['id']}",
                             lambda q: api.v1.invoices.line_items.list(invoice["id"], params=q), {}))


def _finding(action: WriteAction) -> str | None:
    """The finding a correction invoice fixes (``metadata.subledger_finding``), if it names one."""
    value = (action.payload.get("metadata") or {}).get(FINDING_KEY)
    return _metadata_value(str(value)) if value else None


def _same_fix(connector: StripeConnector, action: WriteAction, invoice: dict[str, Any]) -> bool:
    """Whether ``invoice``, made by another action for the same finding, is exactly this action's invoice.

    The same finding alone is not enough: a finding can rightly need a second correction
    (late usage after the first was counted), and that one differs in amount or quantity. So
    the invoice must also carry exactly the lines this action would write (amount, currency,
    service period, description, component, meter, kind, quantity) and the same contract: a
    second planning of the same fix under another action key.
    """
    _, currency, lines = _invoice_payload(action)
    metadata = invoice.get("metadata") or {}
    contract = action.payload.get("contract_external_id")
    if (metadata.get(CONTRACT_LINK_KEY) or None) != (_metadata_value(str(contract)) if contract else None):
        return False
    if str(invoice.get("currency") or "").lower() != currency.lower():
        return False

    def shape(item: dict[str, Any]) -> tuple[Any, ...]:
        period = item.get("period") or {}
        meta = {k: v for k, v in (item.get("metadata") or {}).items() if k != ACTION_KEY}
        return (item.get("amount"), str(item.get("currency") or "").lower(), item.get("description"),
                period.get("start"), period.get("end"), tuple(sorted(meta.items())))

    wanted = sorted(shape(_item_params(currency, n, line, "")) for n, line in enumerate(lines))
    have = sorted(shape(ln) for ln in _lines_of(connector, invoice))
    return have == wanted


def _find_invoice(connector: StripeConnector, action: WriteAction, *, complete_only: bool
                  ) -> WriteResult | None:
    customer, _, lines = _invoice_payload(action)
    marker = _metadata_value(action.idempotency_key)
    invoices = _invoices_of(connector, customer)
    found = _find_own_invoice(connector, action, invoices, marker, lines, complete_only=complete_only)
    if found is not None:
        return found
    finding = _finding(action)
    if finding is None:
        return None
    for invoice in invoices:
        metadata = invoice.get("metadata") or {}
        if metadata.get(FINDING_KEY) != finding or metadata.get(ACTION_KEY) == marker:
            continue
        if invoice.get("status") not in ("void", "deleted") and _same_fix(connector, action, invoice):
            # Another action of the same finding already wrote exactly this invoice: this one is done.
            return WriteResult(invoice["id"], created=False, record=invoice)
    return None


def _find_own_invoice(connector: StripeConnector, action: WriteAction, invoices: list[dict[str, Any]], marker: str,
                      lines: list[dict[str, Any]], *, complete_only: bool) -> WriteResult | None:
    for invoice in invoices:
        if (invoice.get("metadata") or {}).get(ACTION_KEY) != marker:
            continue
        if invoice.get("status") == "void":
            # Someone voided what this action created: it was done, and undone on purpose.
            return WriteResult(invoice["id"], created=False, record=invoice)
        have = {(ln.get("metadata") or {}).get(LINE_KEY) for ln in _lines_of(connector, invoice)}
        done = all(str(n) in have for n in range(len(lines)))
        if connector.config.finalize_invoices and invoice.get("status") == "draft":
            done = False
        if complete_only and not done:
            return None
        return WriteResult(invoice["id"], created=False, record=invoice)
    return None


def _create_invoice(connector: StripeConnector, action: WriteAction) -> WriteResult:
    api = connector.api
    config = connector.config
    customer, currency, lines = _invoice_payload(action)
    key = action.idempotency_key
    marker = _metadata_value(key)
    existing = _find_invoice(connector, action, complete_only=False)
    if existing is not None:
        invoice = existing.record
        present = {(ln.get("metadata") or {}).get(LINE_KEY) for ln in _lines_of(connector, invoice)}
        if invoice.get("status") != "draft" and not all(str(n) in present for n in range(len(lines))):
            raise SystemFailure(
                f"invoice {invoice['id']} of action {key!r} was finalized without all its lines",
                fix="void the invoice in Stripe and re-plan the action",
            )
    else:
        params: dict[str, Any] = {
            "customer": customer,
            "currency": currency.lower(),
            "auto_advance": False,  # a draft stays a draft until subledger (or a person) finalizes it
            "collection_method": config.collection_method,
            "pending_invoice_items_behavior": "exclude",
            "metadata": {**{str(k): str(v) for k, v in (action.payload.get("metadata") or {}).items()},
                         ACTION_KEY: marker},
        }
        contract = action.payload.get("contract_external_id")
        if contract:
            params["metadata"][CONTRACT_LINK_KEY] = _metadata_value(str(contract))
        if config.collection_method == "send_invoice":
            params["days_until_due"] = config.days_until_due
        if action.payload.get("description"):
            params["description"] = str(action.payload["description"])[:1500]
        created = api.call(f"create invoice for {customer}", lambda: api.v1.invoices.create(
            params=params, options={"idempotency_key": _key(key, "invoice")}))
        invoice = _with_id(created.to_dict(), f"the invoice Stripe created for {customer}", key)
        present = set()
    for n, line in enumerate(lines):
        if str(n) in present:
            continue
        item = {"customer": customer, "invoice": invoice["id"], **_item_params(currency, n, line, marker)}
        api.call(f"add line {n} to invoice {invoice['id']}", lambda item=item, n=n: api.v1.invoice_items.create(
            params=item, options={"idempotency_key": _key(key, f"line:{n}")}))
    if config.finalize_invoices and invoice.get("status") == "draft":
        api.call(f"finalize invoice {invoice['id']}", lambda: api.v1.invoices.finalize_invoice(
            invoice["id"], params={"auto_advance": False}, options={"idempotency_key": _key(key, "finalize")}))
    after = api.call(f"retrieve invoice {invoice['id']}", lambda: api.v1.invoices.retrieve(invoice["id"])).to_dict()
    return WriteResult(str(after.get("id") or invoice["id"]), created=existing is None, record=after)


def _with_id(obj: dict[str, Any], what: str, key: str) -> dict[str, Any]:
    """``obj`` if it has an id; else a SystemFailure (Stripe's spec makes some ids optional)."""
    if obj.get("id"):
        return obj
    raise SystemFailure(
        f"{what} (action {key!r}) came back without an id, so its lines cannot be added",
        fix="apply again: subledger finds the invoice by its metadata subledger_action_id and completes it; "
        "report the answer to subledger's maintainers if it recurs",
    )


def _item_params(currency: str, n: int, line: dict[str, Any], marker: str) -> dict[str, Any]:
    """The invoice item that writes line ``n`` (without its customer and invoice)."""
    item: dict[str, Any] = {
        "currency": currency.lower(),
        "amount": _stripe_amount(line["amount_minor"], currency),
        "description": _line_description(line)[:5000],
        "metadata": {ACTION_KEY: marker, LINE_KEY: str(n), **_line_metadata(line)},
    }
    if line.get("service_start"):
        end_day = line.get("service_end") or line["service_start"]
        item["period"] = {"start": _epoch(line["service_start"]),
                          "end": _epoch((date.fromisoformat(end_day) + timedelta(days=1)).isoformat())}
    return item


def _line_metadata(line: dict[str, Any]) -> dict[str, str]:
    """``subledger_component``/``_meter``/``_kind``/``_quantity`` of a line, for the mapping to read back."""
    out = {f"subledger_{k}": str(line[k])[:500] for k in ("component", "meter", "kind") if line.get(k)}
    quantity = line.get("quantity")
    if quantity not in (None, ""):
        with contextlib.suppress(InvalidOperation):  # a quantity that is not a number is left out
            value = Decimal(str(quantity))
            if value.is_finite():
                out["subledger_quantity"] = decimal_text(value)
    return out


def _line_description(line: dict[str, Any]) -> str:
    text = str(line.get("description") or line.get("component") or "subledger adjustment")
    quantity = line.get("quantity")
    if quantity not in (None, ""):
        with contextlib.suppress(InvalidOperation):  # a quantity that is not a number is left out
            text = f"{text} ({decimal_text(Decimal(str(quantity)))} units)"
    return text


# -- update_customer_metadata ---------------------------------------------------------------


def _metadata_change(action: WriteAction) -> tuple[str, dict[str, str]]:
    target = action.target_external_id
    wanted = (action.payload or {}).get("metadata")
    if not target or not isinstance(wanted, dict) or not wanted:
        raise ConfigError(
            f"update_customer_metadata action {action.idempotency_key!r} needs target_external_id and a "
            "non-empty payload.metadata",
            fix="give the Stripe customer id and the metadata keys to set",
        )
    return target, {str(k): "" if v is None else str(v) for k, v in wanted.items()}


def _customer(connector: StripeConnector, cid: str) -> dict[str, Any]:
    api = connector.api
    return api.call(f"retrieve customer {cid}", lambda: api.v1.customers.retrieve(cid)).to_dict()


def _find_metadata(connector: StripeConnector, action: WriteAction) -> WriteResult | None:
    target, wanted = _metadata_change(action)
    customer = _customer(connector, target)
    current = customer.get("metadata") or {}
    if all((current.get(k) or "") == v for k, v in wanted.items()):
        return WriteResult(target, created=False, record=customer)
    return None


def _update_customer_metadata(connector: StripeConnector, action: WriteAction) -> WriteResult:
    api = connector.api
    target, wanted = _metadata_change(action)
    customer = _customer(connector, target)
    current = customer.get("metadata") or {}
    if all((current.get(k) or "") == v for k, v in wanted.items()):
        return WriteResult(target, created=False, record=customer)
    expected = ((action.base_version or {}).get("metadata") or {})
    stale = {k: (v, current.get(k)) for k, v in expected.items() if (current.get(k) or None) != (v or None)}
    if stale:
        described = ", ".join(f"{k}: expected {old!r}, found {now!r}" for k, (old, now) in sorted(stale.items()))
        raise WriteConflict(
            f"Stripe customer {target} changed since subledger read it ({described})",
            fix="pull again and re-plan; subledger never overwrites a value someone else changed",
        )
    updated = api.call(f"update customer {target} metadata", lambda: api.v1.customers.update(
        target, params={"metadata": wanted}, options={"idempotency_key": _key(action.idempotency_key, "metadata")}))
    return WriteResult(target, created=True, record=updated.to_dict())


# -- push_meter_events ------------------------------------------------------------------------


def _events(action: WriteAction) -> list[dict[str, Any]]:
    events = (action.payload or {}).get("events") or []
    if not events:
        raise ConfigError(f"push_meter_events action {action.idempotency_key!r} has no events",
                          fix="give events with identifier, meter, customer_external_id, quantity, occurred_at")
    for n, event in enumerate(events):
        for name in ("identifier", "meter", "customer_external_id", "quantity", "occurred_at"):
            if event.get(name) in (None, ""):
                raise ConfigError(f"push_meter_events event {n} has no {name}", fix=f"give every event its {name}")
    return events


def _occurred(event: dict[str, Any]) -> int:
    value = event["occurred_at"]
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ConfigError(f"meter event {event['identifier']} occurred_at {value!r} has no timezone",
                          fix="give occurred_at as an ISO time with an offset, e.g. 2026-01-05T10:00:00+00:00")
    return int(moment.timestamp())


def _meters_by_key(connector: StripeConnector) -> dict[str, dict[str, Any]]:
    api = connector.api
    meters = api.list_all("list billing meters", lambda q: api.v1.billing.meters.list(params=q), {})
    return {m["event_name"]: m for m in meters if m.get("status") == "active"}


def _push_meter_events(connector: StripeConnector, action: WriteAction) -> WriteResult:
    api = connector.api
    events = _events(action)
    meters = _meters_by_key(connector)
    sent = 0
    for event in events:
        meter = meters.get(event["meter"])
        if meter is None:
            raise ConfigError(f"no active Stripe billing meter has event_name {event['meter']!r}",
                              fix="create the meter in Stripe, or map the usage to an existing meter's event name")
        payload = {
            meter["customer_mapping"]["event_payload_key"]: event["customer_external_id"],
            meter["value_settings"]["event_payload_key"]: decimal_text(Decimal(str(event["quantity"]))),
        }
        params = {"event_name": event["meter"], "identifier": str(event["identifier"])[:100],
                  "timestamp": _occurred(event), "payload": payload}
        try:
            created = api.call(f"send meter event {event['identifier']}",
                               lambda params=params, event=event: api.v1.billing.meter_events.create(
                                   params=params,
                                   options={"idempotency_key": _key(action.idempotency_key, str(event["identifier"]))}))
        except ConfigError as err:
            if getattr(err, "http_status", None) == 400 and "identifier" in str(err) and "exists" in str(err):
                continue  # Stripe already has this event: the identifier deduplicated it
            raise
        if _replayed(created):
            continue  # Stripe answered from its idempotency cache: sent by an earlier attempt
        sent += 1
    # Nothing new reached Stripe when every identifier was already there: a replay.
    return WriteResult(action.idempotency_key, created=sent > 0, record={"events": len(events), "sent": sent})


def _replayed(obj: Any) -> bool:
    response = getattr(obj, "last_response", None)
    headers = getattr(response, "headers", None) or {}
    return any(k.lower() == "idempotent-replayed" and str(v).lower() == "true" for k, v in dict(headers).items())


def _find_meter_events(connector: StripeConnector, action: WriteAction) -> WriteResult | None:
    """Never "found": a push is recovered by sending it again.

    Stripe cannot list meter events, and a summary of the events' minute holds everyone's
    usage, so it cannot prove these events landed (a busy minute would pass for them and
    lose them). Re-sending is safe: Stripe refuses a repeated identifier for 24 hours and
    :func:`_push_meter_events` counts that refusal as sent. A push left in flight for a day
    or more needs a person (docs/connectors/stripe.md).
    """
    _events(action)  # a malformed action still says what is wrong
    return None
