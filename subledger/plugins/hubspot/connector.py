"""The HubSpot connector: companies and closed-won deals in, usage figures back out.

Streams (both incremental on ``hs_lastmodifieddate`` through the CRM search API):

* ``customers``: companies -> :class:`Customer`, the canonical link from a configured
  property, and the write-back properties read into ``attributes`` under their canonical
  names (``usage_to_date``, ``overage_to_date``, ``last_invoice``, ``open_findings``).
* ``contracts``: closed-won deals with their company, line items and products ->
  :class:`Contract` whose ``terms`` are a validated terms document
  (:mod:`subledger.plugins.hubspot.deal_terms`); a deal whose terms cannot be read exactly
  is a :class:`Rejected` item per property at fault.

Write kind ``update_customer_fields`` sets the mapped company properties through the batch
API, after checking the ``base_version`` against the values HubSpot holds now.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

from subledger.core.connector import (
    Capabilities,
    Checkpoint,
    CheckResult,
    Connector,
    ConnectorConfig,
    Rejected,
    StreamSpec,
    WriteAction,
    WriteConflict,
    WriteResult,
)
from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError, SubledgerError
from subledger.core.http import current_policy, use_retry_policy
from subledger.core.model import Contract, Customer, payload_hash, record_id
from subledger.core.terms import terms_hash, terms_to_document
from subledger.plugins.hubspot.client import HubSpotApi, modified_ms
from subledger.plugins.hubspot.config import HubSpotConfig
from subledger.plugins.hubspot.deal_terms import deal_terms
from subledger.plugins.hubspot.mapping import HubSpotMapping, load_mapping

WRITE_KIND = "update_customer_fields"
CURSOR = "hs_lastmodifieddate"
FIRST_READ_MARGIN_MS = 10 * 60 * 1000  # line items changed this shortly before a first read are read again


class HubSpotConnector(Connector):
    """Reads companies and closed-won deals from HubSpot; writes usage figures to companies."""

    name: ClassVar[str] = "hubspot"
    title: ClassVar[str] = "HubSpot CRM"
    config_model: ClassVar[type[ConnectorConfig]] = HubSpotConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        read=True, incremental=True, write=frozenset({WRITE_KIND}), webhooks=False
    )
    config: HubSpotConfig

    def __init__(self, config: ConnectorConfig, *, connection: str | None = None) -> None:
        super().__init__(config, connection=connection)
        self.mapping: HubSpotMapping = load_mapping(self.config.mapping, self.config.mapping_file)
        self._api: HubSpotApi | None = None

    @property
    def api(self) -> HubSpotApi:
        if self._api is None:
            self._api = HubSpotApi(self.config, name=self.connection)
        return self._api

    def streams(self) -> list[StreamSpec]:
        return [
            StreamSpec("customers", "customer", cursor_field=CURSOR),
            StreamSpec("contracts", "contract", cursor_field=CURSOR),
        ]

    def check(self) -> CheckResult:
        try:
            api = self.api
            # One attempt: a check answers now rather than retrying an unreachable portal for minutes.
            with use_retry_policy(current_policy().replace(max_attempts=1)):
                self._check_calls(api)
        except SubledgerError as err:
            return CheckResult(False, str(err), {"kind": str(err.kind)})  # the message and its fix
        return CheckResult(True, f"HubSpot at {self.config.base_url}: companies and deals readable")

    @staticmethod
    def _check_calls(api: HubSpotApi) -> None:
        api.call("list companies", api.objects.get_page, "companies", limit=1)
        api.call("search deals", api.search.do_search, "deals",
                 public_object_search_request=api.models.PublicObjectSearchRequest(limit=1, properties=["dealstage"]))

    # -- reads ----------------------------------------------------------------------------

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        self.stream(stream)
        since, recent = _cursor(state)
        if stream == "customers":
            pages = self.api.search_modified_since("companies", since, recent, self.mapping.company_properties())
            for objects, cursor, seen in pages:
                for obj in objects:
                    yield self._customer(obj)
                yield Checkpoint(_state(cursor, seen))
        else:
            yield from self._read_contracts(state, since, recent)

    def _read_contracts(self, state: dict[str, Any] | None, since: int, recent: dict[str, int]) -> Iterator[Any]:
        """Deals modified since the cursor, then deals whose line items were.

        Editing a line item's properties (an overage rate) does not touch its deal's
        ``hs_lastmodifieddate``, so line items have their own cursor. A first read takes
        every deal, so its line-item cursor starts shortly before the read began.
        """
        if (state or {}).get("line_items"):
            li_since, li_recent = _cursor(state["line_items"])
        else:
            li_since, li_recent = int(datetime.now(UTC).timestamp() * 1000) - FIRST_READ_MARGIN_MS, {}
        li_checkpoint = _state(li_since, li_recent)
        deals_checkpoint = _state(since, recent)
        emitted: set[str] = set()
        # Every stage: a deal moved out of closed won must come back (as a draft) to stop counting.
        pages = self.api.search_modified_since("deals", since, recent, self.mapping.deal_properties())
        for objects, cursor, seen in pages:
            yield from self._contracts(objects, emitted)
            deals_checkpoint = _state(cursor, seen)
            yield Checkpoint({**deals_checkpoint, "line_items": li_checkpoint})
        for items, cursor, seen in self.api.search_modified_since("line_items", li_since, li_recent, ["name"]):
            links = self.api.associations("line_items", "deals", [i["id"] for i in items]) if items else {}
            deal_ids = sorted({d for rows in links.values() for d, _ in rows} - emitted)
            deals = self.api.batch_read("deals", deal_ids, self.mapping.deal_properties()) if deal_ids else {}
            yield from self._contracts(list(deals.values()), emitted)
            yield Checkpoint({**deals_checkpoint, "line_items": _state(cursor, seen)})

    def _customer(self, obj: dict[str, Any]) -> Customer:
        props = obj.get("properties") or {}
        company = self.mapping.company
        domain = (props.get("domain") or "").strip().lower().removeprefix("www.") or None
        attributes: dict[str, Any] = {
            canonical: props.get(prop) for canonical, prop in self.mapping.write_back.properties().items()
        }
        return Customer(
            id=record_id("cus", self.connection, obj["id"]),
            system=self.connection,
            external_id=obj["id"],
            name=props.get("name") or "",
            email_domain=domain,
            tax_id=(props.get(company.tax_id) or None) if company.tax_id else None,
            canonical_hint=(props.get(company.canonical_id) or None) if company.canonical_id else None,
            attributes=attributes,
            fetched_at=utcnow(),
            payload_hash=payload_hash(props),
        )

    def _contracts(self, deals: list[dict[str, Any]], emitted: set[str]) -> Iterator[Any]:
        """Contracts (or rejects) for deals: closed-won deals are signed contracts; a deal in
        another stage that carries terms (a draft, or one moved back out of closed won) is a
        ``draft`` contract, and is skipped without a reject when its terms are incomplete."""
        won_stages = set(self.mapping.deal.closed_won_stages)
        emitted.update(d["id"] for d in deals if d["id"] not in emitted and not self._carries_terms(d))
        deals = [d for d in deals if d["id"] not in emitted]
        if not deals:
            return
        emitted.update(d["id"] for d in deals)
        ids = [d["id"] for d in deals]
        companies = self.api.associations("deals", "companies", ids)
        item_links = self.api.associations("deals", "line_items", ids)
        item_ids = [i for links in item_links.values() for i, _ in links]
        items = self.api.batch_read("line_items", item_ids, self.mapping.line_item_properties()) if item_ids else {}
        product_prop = self.mapping.line_item.product_id
        product_ids = [p for i in items.values() if (p := (i.get("properties") or {}).get(product_prop))]
        products = (self.api.batch_read("products", product_ids, self.mapping.product_properties())
                    if product_ids else {})
        today = datetime.now(UTC).date()
        for deal in deals:
            where = f"HubSpot deal {deal['id']}"
            signed = (deal.get("properties") or {}).get("dealstage") in won_stages
            links = sorted(companies.get(deal["id"], []), key=lambda link: (link[1] != 5, link[0]))
            if not links and signed:
                yield Rejected("contracts", f"{where} is associated with no company",
                               fix="associate the deal with the customer's company in HubSpot",
                               location=where, field="associations.companies", raw=deal["id"])
                continue
            lines = [items[i] for i, _ in item_links.get(deal["id"], []) if i in items]
            terms, problems = deal_terms(deal, lines, products, self.mapping)
            if not signed and (terms is None or not links):
                continue
            if terms is None:
                for p in problems:
                    yield Rejected("contracts", f"{where}: {p}", fix=p.fix,
                                   location=f"HubSpot {p.object_type} {p.object_id}", field=p.property,
                                   raw=str(p.value) if p.value is not None else "")
                continue
            props = deal.get("properties") or {}
            status = "ended" if terms.end_date is not None and terms.end_date < today else "active"
            if not signed:
                status = "draft"
            yield Contract(
                id=record_id("con", self.connection, deal["id"]),
                system=self.connection,
                external_id=deal["id"],
                customer_external_id=links[0][0],
                name=props.get("dealname") or "",
                status=status,
                currency=terms.currency,
                start_date=terms.start_date,
                end_date=terms.end_date,
                terms=terms_to_document(terms),
                terms_hash=terms_hash(terms),
                fetched_at=utcnow(),
                payload_hash=payload_hash({"deal": props, "line_items": [li.get("properties") for li in lines],
                                           "modified": modified_ms(deal)}),
            )

    def _carries_terms(self, deal: dict[str, Any]) -> bool:
        props = deal.get("properties") or {}
        if props.get("dealstage") in set(self.mapping.deal.closed_won_stages):
            return True
        return all(props.get(p) not in (None, "") for p in (self.mapping.deal.currency, self.mapping.deal.start_date))

    # -- write-back -----------------------------------------------------------------------

    def _wanted(self, action: WriteAction) -> dict[str, str]:
        if action.kind != WRITE_KIND:
            raise ConfigError(f"connector 'hubspot' cannot {action.kind!r}", fix=f"use {WRITE_KIND!r}")
        if not action.target_external_id:
            raise ConfigError(f"{WRITE_KIND} needs the company id as target_external_id",
                              fix="plan the write against a HubSpot customer")
        props = self.mapping.write_back.properties()
        if unknown := sorted(set(action.payload) - set(props)):
            raise ConfigError(f"{WRITE_KIND}: no HubSpot property is mapped for {', '.join(unknown)}",
                              fix=f"use the canonical names {', '.join(props)} (write_back in the mapping)")
        return {k: "" if v is None else str(v) for k, v in action.payload.items()}

    def _current(self, company_id: str) -> dict[str, str | None]:
        props = self.mapping.write_back.properties()
        found = self.api.batch_read("companies", [company_id], sorted(set(props.values())))
        if company_id not in found:
            raise ConfigError(f"HubSpot company {company_id} does not exist (or was archived)",
                              fix="pull the connection again; the company was deleted or merged")
        values = found[company_id].get("properties") or {}
        return {canonical: values.get(prop) for canonical, prop in props.items()}

    def find(self, action: WriteAction) -> WriteResult | None:
        wanted = self._wanted(action)
        current = self._current(action.target_external_id or "")
        if all(_same(current.get(k), v) for k, v in wanted.items()):
            return WriteResult(action.target_external_id or "", False, dict(current))
        return None

    def write(self, action: WriteAction) -> WriteResult:
        """Set the mapped company properties, unless they already hold the values (a replay).

        Raises:
            WriteConflict: a property changed in HubSpot since subledger read it
                (``base_version``); nothing is written.
        """
        wanted = self._wanted(action)
        target = action.target_external_id or ""
        current = self._current(target)
        if all(_same(current.get(k), v) for k, v in wanted.items()):
            return WriteResult(target, False, dict(current))
        stale = {k: v for k, v in (action.base_version or {}).items() if not _same(current.get(k), v)}
        if stale:
            changed = ", ".join(f"{k} (read {v!r}, now {current.get(k)!r})" for k, v in sorted(stale.items()))
            raise WriteConflict(f"HubSpot company {target} changed since subledger read it: {changed}; "
                                "nothing was written",
                                fix="pull the connection again, review the change in HubSpot, and plan anew")
        # Deals first: the company's values are what marks the write done (find, replay).
        self._mirror_on_deals(target, wanted)
        props = self.mapping.write_back.properties()
        self.api.batch_update("companies", {target: {props[k]: v for k, v in wanted.items()}})
        after = self._current(target)
        if not all(_same(after.get(k), v) for k, v in wanted.items()):
            raise ConfigError(f"HubSpot company {target} did not keep the values written",
                              fix="check that the write-back properties exist as single-line text properties")
        return WriteResult(target, True, dict(after))

    def _mirror_on_deals(self, company_id: str, wanted: dict[str, str]) -> None:
        """Copy the figures onto the company's closed-won deals (``deal_write_back``), in batches."""
        props = {self.mapping.deal_write_back[k]: v for k, v in wanted.items() if k in self.mapping.deal_write_back}
        if not props:
            return
        deal_ids = [i for i, _ in self.api.associations("companies", "deals", [company_id]).get(company_id, [])]
        if not deal_ids:
            return
        deals = self.api.batch_read("deals", deal_ids, sorted({"dealstage", *props}))
        stages = set(self.mapping.deal.closed_won_stages)
        updates = {
            oid: props for oid, deal in deals.items()
            if (deal.get("properties") or {}).get("dealstage") in stages
            and not all(_same((deal.get("properties") or {}).get(p), v) for p, v in props.items())
        }
        if updates:
            self.api.batch_update("deals", updates)


def _same(a: Any, b: Any) -> bool:
    # HubSpot returns an empty property as null; subledger's baseline may hold "" or None.
    return ("" if a is None else str(a)) == ("" if b is None else str(b))


def _cursor(state: dict[str, Any] | None) -> tuple[int, dict[str, int]]:
    """(cursor ms, ids read within the lookback window -> their modification ms) from a checkpoint."""
    text = (state or {}).get("modified_since")
    if not text:
        return 0, {}
    when = int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000)
    return when, {str(k): int(v) for k, v in ((state or {}).get("recent") or {}).items()}


def _state(cursor_ms: int, recent: dict[str, int]) -> dict[str, Any]:
    when = datetime.fromtimestamp(cursor_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return {"modified_since": when, "recent": dict(sorted(recent.items()))}
