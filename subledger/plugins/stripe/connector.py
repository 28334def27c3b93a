"""The Stripe connector: reads a Stripe account into the canonical model, and writes back.

Streams (all incremental through the Events API, see :mod:`.incremental`; usage by
closed UTC day, see :mod:`.usage`):

=============  ============  ==================================================
stream         record type   Stripe objects
=============  ============  ==================================================
customers      customer      customers
meters         meter         billing meters
contracts      contract      subscriptions + items, priced from prices/products
invoices       invoice       invoices + every line (service period, proration)
credit_notes   credit_note   credit notes + lines
payments       payment       charges (applied to their invoice) and refunds
credit_grants  credit_grant  billing credit grants
usage          usage_event   meter event summaries, one per meter, customer, day
=============  ============  ==================================================

Writes: ``create_invoice`` (invoice items on a new invoice, draft unless
``finalize_invoices``), ``update_customer_metadata`` (links), ``push_meter_events``.
See ``docs/connectors/stripe.md``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from subledger.core.connector import (
    Capabilities,
    Checkpoint,
    CheckResult,
    Connector,
    RecordGroup,
    Rejected,
    StreamSpec,
    WriteAction,
    WriteResult,
)
from subledger.core.errors import ConfigError, SubledgerError, TransientError
from subledger.core.secrets import redact
from subledger.plugins.stripe import incremental, mapping, usage, writes
from subledger.plugins.stripe.client import StripeApi, page_cursor
from subledger.plugins.stripe.config import StripeConfig
from subledger.plugins.stripe.incremental import Change, EventFeed
from subledger.plugins.stripe.mapping import UnmappableError, ref_id
from subledger.plugins.stripe.prices import subscription_contract

log = logging.getLogger(__name__)

CUSTOMER_LINK_KEY = "subledger_id"
WRITE_KINDS = frozenset({"create_invoice", "update_customer_metadata", "push_meter_events"})


def _missing_field(exc: BaseException) -> str | None:
    """The field a mapping found missing: ``KeyError('currency')`` -> ``currency``; else None."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    if isinstance(exc, TypeError | AttributeError) and "NoneType" in str(exc):
        return "a nested object (null)"
    return None


def _invoiceitem_invoice(event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    if obj.get("object") == "invoiceitem":
        return ref_id(obj.get("invoice"))
    return obj.get("id")


def _payment_object(event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    return obj.get("id") if obj.get("object") in ("charge", "refund") else None


def _grant_object(event: dict[str, Any]) -> str | None:
    """The grant an event changed: the grant itself, or the grant of a new credit balance transaction."""
    obj = event["data"]["object"]
    if obj.get("object") == "billing.credit_balance_transaction":
        return ref_id(obj.get("credit_grant"))
    return obj.get("id")


FEEDS = {
    "customers": EventFeed(("customer.created", "customer.updated", "customer.deleted")),
    "meters": EventFeed(("billing.meter.created", "billing.meter.updated", "billing.meter.deactivated",
                         "billing.meter.reactivated")),
    "contracts": EventFeed((
        "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
        "customer.subscription.paused", "customer.subscription.resumed",
        "customer.subscription.pending_update_applied", "customer.subscription.pending_update_expired",
        "customer.subscription.trial_will_end",
    )),
    "invoices": EventFeed((
        "invoice.created", "invoice.updated", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded",
        "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible", "invoice.deleted",
        "invoice.sent", "invoice.finalization_failed", "invoiceitem.created", "invoiceitem.updated",
        "invoiceitem.deleted",
    ), object_id=_invoiceitem_invoice),
    "credit_notes": EventFeed(("credit_note.created", "credit_note.updated", "credit_note.voided")),
    "payments": EventFeed((
        "charge.succeeded", "charge.failed", "charge.pending", "charge.captured", "charge.refunded",
        "charge.updated", "charge.expired", "charge.refund.updated", "refund.created", "refund.updated",
        "refund.failed",
    ), object_id=_payment_object),
    "credit_grants": EventFeed(("billing.credit_grant.created", "billing.credit_grant.updated",
                                "billing.credit_balance_transaction.created"), object_id=_grant_object),
}


@dataclass
class _Catalog:
    """Prices (with tiers), products and meters, fetched once per connector and reused."""

    api: StripeApi
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, dict[str, Any]] = field(default_factory=dict)
    complete: bool = False

    def load(self) -> None:
        """Prefetch every price (with tiers) and product: one list each instead of a call per object."""
        if self.complete:
            return
        v1 = self.api.v1
        expand = {"expand": ["data.tiers", "data.currency_options"]}
        # An object without an id cannot be referred to: nothing looks it up, so it is left out.
        self.prices.update({p["id"]: p for p in self.api.list_all("list prices", lambda q: v1.prices.list(params=q),
                                                                   expand) if p.get("id")})
        self.products.update({p["id"]: p for p in self.api.list_all("list products",
                                                                     lambda q: v1.products.list(params=q), {})
                              if p.get("id")})
        self.complete = True

    def meter(self, mid: str) -> dict[str, Any] | None:
        """A billing meter by id (fetched once); None when Stripe has no such meter."""
        if mid not in self.meters:
            try:
                obj = self.api.call(f"retrieve billing meter {mid}", lambda: self.api.v1.billing.meters.retrieve(mid))
            except ConfigError as err:
                if getattr(err, "http_status", None) == 404:
                    return None
                raise
            self.meters[mid] = obj.to_dict()
        return self.meters[mid]

    def meters_for(self, prices: Any) -> dict[str, dict[str, Any]]:
        """The meters the given prices bill from, by id."""
        found = {}
        for price in prices:
            mid = ((price or {}).get("recurring") or {}).get("meter")
            if mid and (meter := self.meter(mid)) is not None:
                found[mid] = meter
        return found

    def price(self, pid: str) -> dict[str, Any] | None:
        if pid not in self.prices:
            obj = self.api.call(f"retrieve price {pid}", lambda: self.api.v1.prices.retrieve(
                pid, params={"expand": ["tiers", "currency_options"]}))
            self.prices[pid] = obj.to_dict()
        return self.prices[pid]

    def product(self, pid: str | None) -> dict[str, Any]:
        if not pid:
            return {}
        if pid not in self.products:
            obj = self.api.call(f"retrieve product {pid}", lambda: self.api.v1.products.retrieve(pid))
            self.products[pid] = obj.to_dict()
        return self.products[pid]


class StripeConnector(Connector):
    """Reads and writes one Stripe account through the official SDK."""

    name: ClassVar[str] = "stripe"
    title: ClassVar[str] = "Stripe"
    config_model: ClassVar[type[StripeConfig]] = StripeConfig
    # Meter events cannot be listed, so a push is recovered by resending it (identifiers dedupe).
    capabilities: ClassVar[Capabilities] = Capabilities(read=True, incremental=True, write=WRITE_KINDS,
                                                        webhooks=True, resend_safe=frozenset({"push_meter_events"}))

    config: StripeConfig

    def __init__(self, config: StripeConfig, *, connection: str | None = None, http_client: Any = None) -> None:
        """``http_client``: an SDK HTTP client to use (proxies, instrumentation, contract tests)."""
        super().__init__(config, connection=connection)
        self._http_client = http_client
        self._api: StripeApi | None = None
        self._catalog: _Catalog | None = None
        self._txn_grants: dict[str, str] = {}  # credit balance transaction -> its grant (immutable)

    @property
    def api(self) -> StripeApi:
        if self._api is None:
            self._api = StripeApi(self.config, name=self.connection, http_client=self._http_client)
        return self._api

    @property
    def catalog(self) -> _Catalog:
        if self._catalog is None:
            self._catalog = _Catalog(self.api)
        return self._catalog

    # -- declarations -----------------------------------------------------------------------

    def streams(self) -> list[StreamSpec]:
        cursor = "stripe_event_created"
        return [
            StreamSpec("customers", "customer", cursor_field=cursor),
            StreamSpec("meters", "meter", cursor_field=cursor),
            StreamSpec("contracts", "contract", cursor_field=cursor),
            StreamSpec("invoices", "invoice", cursor_field=cursor),
            StreamSpec("credit_notes", "credit_note", cursor_field=cursor),
            StreamSpec("payments", "payment", cursor_field=cursor),
            StreamSpec("credit_grants", "credit_grant", cursor_field=cursor),
            StreamSpec("usage", "usage_event", primary_key=("event_id",), cursor_field="occurred_at"),
        ]

    def check(self) -> CheckResult:
        """List one customer: proves the URL, the key, and the read permission subledger needs first."""
        try:
            self.api.call("check credentials", lambda: self.api.v1.customers.list(params={"limit": 1}))
        except SubledgerError as err:
            return CheckResult(False, redact(str(err)), {"kind": str(err.kind)})
        return CheckResult(True, f"connected to Stripe at {self.config.api_base}")

    # -- reading ------------------------------------------------------------------------------

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        self.stream(stream)
        if stream == "usage":
            yield from usage.read_usage(self, state)
            return
        yield from self._read_objects(stream, dict(state or {}))

    def _read_objects(self, stream: str, state: dict[str, Any]) -> Iterator[Any]:
        feed = FEEDS[stream]
        lookback = self.config.lookback_seconds
        if "since" not in state or incremental.expired(state, self.config.events_retention_days):
            if state:
                log.info("%s: stream %s restarts with a full read (cursor missing or older than Stripe's "
                         "event retention)", self.connection, stream)
            yield from self._backfill(stream, incremental.start_state(self.api, feed, lookback), 0, None)
            return
        if "backfill" in state:
            cursor = {k: v for k, v in state.items() if k != "backfill"}
            yield from self._backfill(stream, cursor, int(state["backfill"]["source"]), state["backfill"]["after"])
            return
        changed, after = incremental.changes(self.api, feed, state, lookback)
        for change in changed:
            yield from self._changed(stream, change)
        yield Checkpoint(after)

    def _sources(self, stream: str) -> list[tuple[str, Callable[[dict[str, Any]], Any], dict[str, Any]]]:
        v1 = self.api.v1
        return {
            "customers": [("customers", lambda q: v1.customers.list(params=q), {})],
            "meters": [("billing meters", lambda q: v1.billing.meters.list(params=q), {})],
            "contracts": [("subscriptions", lambda q: v1.subscriptions.list(params=q), {"status": "all"})],
            "invoices": [("invoices", lambda q: v1.invoices.list(params=q), {})],
            "credit_notes": [("credit notes", lambda q: v1.credit_notes.list(params=q), {})],
            "payments": [
                ("charges", lambda q: v1.charges.list(params=q), {}),
                ("refunds", lambda q: v1.refunds.list(params=q), {"expand": ["data.charge"]}),
            ],
            "credit_grants": [("credit grants", lambda q: v1.billing.credit_grants.list(params=q), {})],
        }[stream]

    def _backfill(self, stream: str, cursor: dict[str, Any], source: int, after: str | None) -> Iterator[Any]:
        """List every object, newest first; a checkpoint after each page carries the page cursor."""
        if stream in ("contracts", "invoices"):
            self.catalog.load()
        sources = self._sources(stream)
        for index in range(source, len(sources)):
            label, list_fn, params = sources[index]
            query = dict(params)
            if index == source and after:
                query["starting_after"] = after
            restarted = False
            while True:
                try:
                    for page, has_more in self.api.pages(f"list {label}", list_fn, query):
                        for obj in page:
                            yield from self._map(stream, obj)
                        if has_more or index < len(sources) - 1:
                            yield Checkpoint({**cursor, "backfill": {
                                "source": index if has_more else index + 1,
                                "after": page_cursor(page) if has_more else None}})
                    break
                except ConfigError as err:
                    # The page cursor was deleted since (Stripe answers 404): list this source again
                    # from the top. Records re-read unchanged are not rewritten.
                    if restarted or getattr(err, "http_status", None) != 404:
                        raise
                    log.info("%s: %s cursor is gone; listing %s again from the start", self.connection, stream, label)
                    query, restarted = dict(params), True
        yield Checkpoint(cursor)

    def _changed(self, stream: str, change: Change) -> Iterator[Any]:
        obj = None if change.deleted else self._retrieve(stream, change.object_id)
        if obj is None:
            snapshot = dict(change.event["data"]["object"])
            if stream == "invoices" and snapshot.get("object") != "invoice":
                return  # an invoice item's invoice that is gone
            snapshot["deleted"] = True
            if stream == "invoices":
                snapshot["status"] = "deleted"
            yield from self._map(stream, snapshot)
            return
        yield from self._map(stream, obj)

    def _retrieve(self, stream: str, oid: str) -> dict[str, Any] | None:
        v1 = self.api.v1
        fetch: dict[str, Callable[[], Any]] = {
            "customers": lambda: v1.customers.retrieve(oid),
            "meters": lambda: v1.billing.meters.retrieve(oid),
            "contracts": lambda: v1.subscriptions.retrieve(oid),
            "invoices": lambda: v1.invoices.retrieve(oid),
            "credit_notes": lambda: v1.credit_notes.retrieve(oid),
            "payments": (lambda: v1.refunds.retrieve(oid, params={"expand": ["charge"]})) if oid.startswith("re_")
            else (lambda: v1.charges.retrieve(oid)),
            "credit_grants": lambda: v1.billing.credit_grants.retrieve(oid),
        }
        try:
            obj = self.api.call(f"retrieve {oid}", fetch[stream])
        except ConfigError as err:
            if getattr(err, "http_status", None) == 404:
                return None
            raise
        data = obj.to_dict()
        if data.get("deleted"):
            return None
        return data

    # -- mapping ------------------------------------------------------------------------------

    def _map(self, stream: str, obj: dict[str, Any]) -> Iterator[Any]:
        for item in self._map_checked(stream, obj):
            problems = mapping.record_problems(item) if not isinstance(item, Rejected) else []
            if not problems:
                yield item
                continue
            yield Rejected(
                stream=stream,
                reason=f"Stripe {obj.get('object', 'object')} {str(obj.get('id'))[:64]} does not fit the canonical "
                f"model: {'; '.join(problems)}",
                fix="check the object in Stripe; report it to subledger's maintainers if it looks valid",
                location=f"stripe:{obj.get('object', '')}/{str(obj.get('id', ''))[:64]}",
                field=problems[0].split(":", 1)[0],
                raw=json.dumps(obj, default=str)[:10000],
            )

    def _map_checked(self, stream: str, obj: dict[str, Any]) -> Iterator[Any]:
        if not obj.get("id"):
            yield Rejected(
                stream=stream,
                reason=f"Stripe returned a {obj.get('object', 'object')} without an id",
                fix="nothing can refer to it; report the answer to subledger's maintainers if it recurs",
                location=f"stripe:{obj.get('object', '')}",
                field="id",
                raw=json.dumps(obj, default=str)[:10000],
            )
            return
        try:
            yield from self._map_one(stream, obj)
        except TransientError:
            raise  # a call made while mapping (a page of lines, a price) still failing: the stream stops, retried later
        except Exception as exc:  # one odd object must not stop the stream: it is kept for review
            field = getattr(exc, "field", None)
            if isinstance(exc, (UnmappableError, ConfigError)):
                why = getattr(exc, "message", None) or str(exc)  # the fix goes in the reject's own field
            elif isinstance(exc, KeyError | TypeError | AttributeError) and (missing := _missing_field(exc)):
                # The object lacks something the mapping needs (a field Stripe's spec makes optional).
                field, why = field or missing, f"it has no {missing!r}"
            else:
                log.warning("%s: could not map Stripe %s %s", self.connection, obj.get("object"), obj.get("id"),
                            exc_info=True)
                why = f"{type(exc).__name__}: {exc}"
            fix = getattr(exc, "fix", None) or "check the object in Stripe; report it if it looks valid"
            yield Rejected(
                stream=stream,
                reason=f"Stripe {obj.get('object', 'object')} {str(obj.get('id'))[:64]} cannot be mapped: {why}",
                fix=fix,
                location=f"stripe:{obj.get('object', '')}/{str(obj.get('id', ''))[:64]}",
                field=field,
                raw=json.dumps(obj, default=str)[:10000],
            )

    def _map_one(self, stream: str, obj: dict[str, Any]) -> Iterator[Any]:
        system = self.connection
        if stream == "customers":
            yield mapping.customer(obj, system, link_key=CUSTOMER_LINK_KEY)
        elif stream == "meters":
            yield mapping.meter(obj, system)
        elif stream == "contracts":
            yield from self._contract(obj)
        elif stream == "invoices":
            lines = self._all_lines(obj, "invoice")
            prices: dict[str, dict[str, Any]] = {}
            for line in lines:
                price = mapping.line_price(line)
                pid = price.get("id") if isinstance(price, dict) else price
                if pid and pid not in prices:
                    prices[pid] = (self.catalog.price(pid) or {}) if isinstance(price, str) else price
            meters = self.catalog.meters_for(prices.values())
            record, children = mapping.invoice(obj, lines, system, prices=prices,
                                               meter_keys={mid: m.get("event_name") or mid
                                                           for mid, m in meters.items()},
                                               credit_grants=self._credit_grants_of(obj, lines))
            yield RecordGroup(record, children)
        elif stream == "credit_notes":
            yield mapping.credit_note(obj, self._all_lines(obj, "credit_note"), system)
        elif stream == "payments":
            if obj.get("object") == "refund":
                charge = obj.get("charge")
                if isinstance(charge, str):
                    charge = self.api.call(f"retrieve charge {charge}",
                                           lambda: self.api.v1.charges.retrieve(charge)).to_dict()
                record, apps = mapping.refund(obj, system, charge_obj=charge)
            else:
                record, apps = mapping.charge(obj, system)
            yield RecordGroup(record, apps)
        elif stream == "credit_grants":
            transactions = list(self.api.list_all(
                f"list credit balance transactions of {obj['id']}",
                lambda q: self.api.v1.billing.credit_balance_transactions.list(params=q),
                {"customer": ref_id(obj["customer"]), "credit_grant": obj["id"]},
            ))
            grant = mapping.credit_grant(obj, system, transactions)
            yield RecordGroup(grant, mapping.credit_ledger(obj, transactions, system, grant.id))

    def _credit_grants_of(self, obj: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, str]:
        """The grant of every credit balance transaction applied to the invoice's lines.

        Transactions never change, so they are remembered: the first invoice of a customer
        with credits applied lists that customer's transactions once (a page holds 100);
        a transaction newer than that list lists them again.
        """
        wanted = {txn for line in lines for txn, _, grant in mapping.credits_applied(line) if grant is None}
        customer = ref_id(obj.get("customer"))
        missing = wanted - self._txn_grants.keys()
        if missing and customer:
            self._txn_grants.update({
                t["id"]: ref_id(t["credit_grant"]) for t in self.api.list_all(
                    f"list credit balance transactions of {customer}",
                    lambda q: self.api.v1.billing.credit_balance_transactions.list(params=q), {"customer": customer})
            })
        return {txn: self._txn_grants[txn] for txn in wanted if txn in self._txn_grants}

    def _all_lines(self, obj: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        """Every line: the embedded first page, then the rest from the lines endpoint."""
        embedded = obj.get("lines") or {}
        lines = list(embedded.get("data") or [])
        if not embedded.get("has_more") or obj.get("deleted"):
            return lines
        service = self.api.v1.invoices.line_items if kind == "invoice" else self.api.v1.credit_notes.line_items
        after = page_cursor(lines)
        # Without a line id to continue from, list every line from the first (the embedded ones again).
        rest = list(self.api.list_all(f"list {kind} lines", lambda q: service.list(obj["id"], params=q),
                                      {"starting_after": after} if after else {}))
        return lines + rest if after else rest

    def _contract(self, sub: dict[str, Any]) -> Iterator[Any]:
        items_list = sub.get("items") or {}
        items = list(items_list.get("data") or [])
        if items_list.get("has_more"):
            params = {"subscription": sub["id"]}
            after = page_cursor(items)
            if after:
                params["starting_after"] = after
            rest = list(self.api.list_all("list subscription items",
                                          lambda q: self.api.v1.subscription_items.list(params=q), params))
            items = items + rest if after else rest
        prices: dict[str, dict[str, Any]] = {}
        for item in items:
            pid = ref_id(item.get("price"))
            if pid:
                price = self.catalog.price(pid)
                if price:
                    prices[pid] = price
                    self.catalog.product(ref_id(price.get("product")))
        mapped = subscription_contract(
            sub, items, system=self.connection, prices=prices, products=self.catalog.products,
            meters=self.catalog.meters_for(prices.values()),
        )
        location = f"stripe:subscription/{sub['id']}"
        for finding in mapped.findings:
            yield Rejected(
                stream="contracts",
                reason=("not loaded: " if finding.blocking else "loaded, but not represented: ") + finding.reason,
                fix=finding.fix,
                location=location,
                field=finding.field,
                raw=sub["id"],
            )
        if mapped.contract is not None:
            yield mapped.contract

    # -- writing ------------------------------------------------------------------------------

    def write(self, action: WriteAction) -> WriteResult:
        if action.kind not in WRITE_KINDS:
            return super().write(action)
        return writes.write(self, action)

    def find(self, action: WriteAction) -> WriteResult | None:
        if action.kind not in WRITE_KINDS:
            return None
        return writes.find(self, action)
