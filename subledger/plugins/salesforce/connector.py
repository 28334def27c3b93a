"""The Salesforce connector: accounts and closed-won opportunities in, usage figures back out.

=========  ===========  ========================================================================
stream     record type  Salesforce objects
=========  ===========  ========================================================================
customers  customer     Account (+ the write-back fields, from the Account or its latest
                        activated Contract)
contracts  contract     Opportunity (closed won) + OpportunityLineItem, Product2,
                        PricebookEntry and the Opportunity's Contract, mapped by
                        :mod:`.terms` through the mapping file (:mod:`.mapping`)
=========  ===========  ========================================================================

Both streams are incremental on ``SystemModstamp`` with a lookback window; a change to a
line item, product, price book entry or contract re-reads the opportunities it belongs to.
A read that matches at least ``bulk_threshold`` records runs as a Bulk API 2.0 query job.
Writes: ``update_customer_fields`` (:mod:`.writes`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from subledger.core.connector import (
    Capabilities,
    Checkpoint,
    CheckResult,
    Connector,
    Rejected,
    StreamSpec,
    WriteAction,
    WriteResult,
)
from subledger.core.errors import SubledgerError
from subledger.core.model import Customer, payload_hash, record_id
from subledger.core.secrets import redact
from subledger.plugins.salesforce import writes
from subledger.plugins.salesforce.client import SalesforceApi
from subledger.plugins.salesforce.config import SalesforceConfig
from subledger.plugins.salesforce.mapping import SalesforceMapping, load_mapping
from subledger.plugins.salesforce.soql import parse_datetime, quote, soql_datetime
from subledger.plugins.salesforce.terms import Records, TermProblem, opportunity_contract

log = logging.getLogger(__name__)

IN_CHUNK = 200
"""Ids per ``IN (...)`` list: keeps each query well under Salesforce's 100,000-character limit."""

_BASE_FIELDS: dict[str, list[str]] = {
    "Opportunity": ["Id", "AccountId", "Name", "StageName", "IsWon", "CloseDate", "SystemModstamp"],
    "OpportunityLineItem": ["Id", "OpportunityId", "PricebookEntryId", "Product2Id", "Name", "SystemModstamp"],
    "Contract": ["Id", "AccountId", "Status", "StatusCode", "StartDate", "EndDate", "SystemModstamp"],
    "Product2": ["Id", "Name", "ProductCode", "SystemModstamp"],
    "PricebookEntry": ["Id", "Product2Id", "Pricebook2Id", "SystemModstamp"],
}


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for rid in sorted(set(ids)):
        batch.append(rid)
        if len(batch) == IN_CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _in(field: str, ids: list[str]) -> str:
    return f"{field} IN ({', '.join(quote(i) for i in ids)})"


class _Cursor:
    """The newest ``SystemModstamp`` seen during a read, and what was sent inside the lookback window.

    The window re-scans records a read has already sent (to catch late commits); a record
    whose content hash is the one sent last time is not sent again.
    """

    def __init__(self, state: dict[str, Any] | None, lookback: timedelta) -> None:
        state = state or {}
        self.since = parse_datetime(state["since"]) if state.get("since") else None
        self.newest = self.since
        self.lookback = lookback
        self.sent_before: dict[str, str] = dict(state.get("recent") or {})
        self.sent: dict[str, tuple[datetime | None, str]] = {}

    @property
    def window(self) -> datetime | None:
        """Where the read starts: the cursor minus the lookback."""
        return self.since - self.lookback if self.since else None

    def see(self, record: dict[str, Any]) -> dict[str, Any]:
        stamp = self.stamp(record)
        if stamp is not None and (self.newest is None or stamp > self.newest):
            self.newest = stamp
        return record

    @staticmethod
    def stamp(record: dict[str, Any] | None) -> datetime | None:
        value = (record or {}).get("SystemModstamp")
        return parse_datetime(str(value)) if value else None

    def fresh(self, external_id: str, stamp: datetime | None, digest: str) -> bool:
        """Remember the record; False when it is unchanged since the last read sent it."""
        self.sent[external_id] = (stamp, digest)
        return self.sent_before.get(external_id) != digest

    def state(self) -> dict[str, Any]:
        if self.newest is None:
            return {}
        edge = self.newest - self.lookback
        recent = {k: d for k, (t, d) in sorted(self.sent.items()) if t is None or t > edge}
        return {"since": self.newest.isoformat(), "recent": recent}


class SalesforceConnector(Connector):
    """Reads one Salesforce org's accounts and contract terms, and writes usage figures back."""

    name: ClassVar[str] = "salesforce"
    title: ClassVar[str] = "Salesforce"
    config_model: ClassVar[type[SalesforceConfig]] = SalesforceConfig
    capabilities: ClassVar[Capabilities] = Capabilities(read=True, incremental=True,
                                                        write=frozenset({writes.KIND}))

    config: SalesforceConfig

    def __init__(self, config: SalesforceConfig, *, connection: str | None = None) -> None:
        super().__init__(config, connection=connection)
        self._api: SalesforceApi | None = None
        self._mapping: SalesforceMapping | None = None
        self._types: dict[str, dict[str, str]] = {}

    @property
    def api(self) -> SalesforceApi:
        if self._api is None:
            self._api = SalesforceApi(self.config, name=self.connection)
        return self._api

    @property
    def mapping(self) -> SalesforceMapping:
        if self._mapping is None:
            self._mapping = load_mapping(self.config.mapping)
        return self._mapping

    # -- declarations ---------------------------------------------------------------------

    def streams(self) -> list[StreamSpec]:
        return [
            StreamSpec("customers", "customer", cursor_field="SystemModstamp"),
            StreamSpec("contracts", "contract", cursor_field="SystemModstamp"),
        ]

    def required_fields(self) -> dict[str, list[str]]:
        """Every field the mapping reads or writes, by object (what the org must have)."""
        m = self.mapping
        c = m.customer
        account = ["Id", "SystemModstamp", c.name_field] + [
            f for f in (c.canonical_id_field, c.email_field, c.website_field, c.tax_id_field, c.country_field,
                        c.currency_field) if f]
        wb_object = m.write_back.object
        needed: dict[str, list[str]] = {"Account": account}
        for sobject, base in _BASE_FIELDS.items():
            needed[sobject] = list(dict.fromkeys(base + sorted(m.terms.fields_of(sobject))))
        if m.contracts.contract_field:
            needed["Opportunity"].append(m.contracts.contract_field)
        needed[wb_object] = list(dict.fromkeys(needed[wb_object] + list(m.write_back.fields.values())))
        return {k: list(dict.fromkeys(v)) for k, v in needed.items()}

    def check(self) -> CheckResult:
        """Log in, then describe each object: every mapped field must exist (named with the fix when not)."""
        try:
            missing: list[str] = []
            for sobject, fields in self.required_fields().items():
                known = self.field_types(sobject)
                missing += [f"{sobject}.{f}" for f in fields if f not in known]
        except SubledgerError as err:
            return CheckResult(False, redact(str(err)), {"kind": str(err.kind)})
        if missing:
            return CheckResult(False, f"the org lacks fields the mapping reads or writes: {', '.join(missing)}. Fix: "
                               "create them (docs/connectors/salesforce.md lists each with its type) and give the "
                               "integration user access, or remove them from the mapping file",
                               {"missing_fields": missing})
        usage = self.api.api_usage
        details = {"api_usage": {"used": usage[0], "allowance": usage[1]}} if usage else {}
        return CheckResult(True, f"connected to Salesforce as {self.config.username}", details)

    def field_types(self, sobject: str) -> dict[str, str]:
        """``{field: describe type}`` of an object (described once per connector)."""
        if sobject not in self._types:
            described = self.api.describe(sobject)
            self._types[sobject] = {f["name"]: f["type"] for f in described["fields"]}
        return self._types[sobject]

    # -- reading --------------------------------------------------------------------------

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        self.stream(stream)
        cursor = _Cursor(state, timedelta(seconds=self.config.lookback_seconds))
        if stream == "customers":
            yield from self._customers(cursor.window, cursor)
        else:
            yield from self._contracts(cursor.window, cursor)
        yield Checkpoint(cursor.state())

    def select(self, sobject: str, fields: list[str], where: str | None = None, *,
               bulk_allowed: bool = True) -> Iterator[dict[str, Any]]:
        """Records of one SOQL read: REST pages, or a Bulk 2.0 job when at least ``bulk_threshold`` match."""
        clause = f"FROM {sobject}" + (f" WHERE {where}" if where else "")
        soql = f"SELECT {', '.join(fields)} {clause} ORDER BY SystemModstamp, Id"
        if bulk_allowed and self.api.count(clause) >= self.config.bulk_threshold:
            log.info("%s: reading %s with a Bulk API 2.0 query job", self.connection, sobject)
            yield from self.api.bulk_query(sobject, soql, self.field_types(sobject))
            return
        yield from self.api.query(soql)

    def _since(self, window: datetime | None) -> str | None:
        return f"SystemModstamp > {soql_datetime(window)}" if window else None

    # customers

    def _customers(self, window: datetime | None, cursor: _Cursor) -> Iterator[Any]:
        fields = self.required_fields()["Account"]
        accounts = [cursor.see(a) for a in self.select("Account", fields, self._since(window))]
        wb = self.mapping.write_back
        by_account: dict[str, dict[str, Any]] = {}
        if wb.object == "Contract":
            extra = set()
            if window is not None:
                changed = self.select("Contract", ["Id", "AccountId", "SystemModstamp"], self._since(window))
                extra = {str(c["AccountId"]) for c in map(cursor.see, changed)} - {a["Id"] for a in accounts}
            for chunk in _chunks(extra):
                accounts += list(self.api.query(f"SELECT {', '.join(fields)} FROM Account WHERE {_in('Id', chunk)}"))
            wanted = ["Id", "AccountId", "StartDate", *wb.fields.values()]
            for chunk in _chunks(a["Id"] for a in accounts):
                for contract in self.api.query(
                        f"SELECT {', '.join(wanted)} FROM Contract WHERE {_in('AccountId', chunk)} AND "
                        "Status = 'Activated' ORDER BY StartDate DESC"):
                    by_account.setdefault(str(contract["AccountId"]), contract)
        for account in accounts:
            source = account if wb.object == "Account" else by_account.get(str(account["Id"]), {})
            try:
                customer = self._customer(account, source)
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # one odd record never stops the read
                yield _unreadable("customers", "Account", account, exc, self.connection)
                continue
            stamps = [s for s in (cursor.stamp(account), cursor.stamp(source)) if s is not None]
            if cursor.fresh(customer.external_id, max(stamps, default=None), customer.payload_hash):
                yield customer

    def _customer(self, account: dict[str, Any], write_back: dict[str, Any]) -> Customer:
        c = self.mapping.customer
        email = str(account.get(c.email_field) or "").strip() or None if c.email_field else None
        domain = email.rsplit("@", 1)[-1].lower() if email and "@" in email else None
        website = account.get(c.website_field) if c.website_field else None
        if domain is None and website:
            host = urlsplit(str(website) if "//" in str(website) else f"//{website}").hostname or ""
            domain = host.lower().removeprefix("www.") or None
        attributes = {name: writes.normalize(write_back.get(field)) for name, field in
                      self.mapping.write_back.fields.items() if write_back.get(field) not in (None, "")}
        country = account.get(c.country_field) if c.country_field else None
        currency = account.get(c.currency_field) if c.currency_field else None
        hint = account.get(c.canonical_id_field) if c.canonical_id_field else None
        return Customer(
            id=record_id("cus", self.connection, str(account["Id"])),
            system=self.connection,
            external_id=str(account["Id"]),
            name=str(account.get(c.name_field) or ""),
            email=email,
            email_domain=domain,
            tax_id=str(account.get(c.tax_id_field) or "") or None if c.tax_id_field else None,
            currency=str(currency).upper() if currency else None,
            country=str(country).upper() if country and len(str(country)) == 2 else None,
            canonical_hint=str(hint).strip() or None if hint else None,
            attributes=attributes,
            payload_hash=payload_hash({"account": account, "write_back": write_back}),
        )

    # contracts

    def _contracts(self, window: datetime | None, cursor: _Cursor) -> Iterator[Any]:
        fields = self.required_fields()
        won = "IsWon = TRUE"
        since = self._since(window)
        opportunities: dict[str, dict[str, Any]] = {}
        for opp in self.select("Opportunity", fields["Opportunity"], f"{won} AND {since}" if since else won):
            opportunities[str(opp["Id"])] = cursor.see(opp)
        if since:
            touched: set[str] = set()
            lines = self.select("OpportunityLineItem", ["Id", "OpportunityId", "SystemModstamp"], since)
            touched |= {str(x["OpportunityId"]) for x in map(cursor.see, lines)}
            products = {str(p["Id"]) for p in map(cursor.see, self.select("Product2", ["Id", "SystemModstamp"],
                                                                           since))}
            entries = {str(p["Id"]) for p in map(cursor.see, self.select("PricebookEntry", ["Id", "SystemModstamp"],
                                                                          since))}
            for ids, field in ((products, "Product2Id"), (entries, "PricebookEntryId")):
                for chunk in _chunks(ids):
                    touched |= {str(x["OpportunityId"]) for x in self.api.query(
                        f"SELECT Id, OpportunityId FROM OpportunityLineItem WHERE {_in(field, chunk)}")}
            contract_field = self.mapping.contracts.contract_field
            if contract_field:
                contracts = {str(c["Id"]) for c in map(cursor.see, self.select("Contract", ["Id", "SystemModstamp"],
                                                                                since))}
                for chunk in _chunks(contracts):
                    touched |= {str(o["Id"]) for o in self.api.query(
                        f"SELECT Id FROM Opportunity WHERE {won} AND {_in(contract_field, chunk)}")}
            for chunk in _chunks(touched - set(opportunities)):
                for opp in self.api.query(f"SELECT {', '.join(fields['Opportunity'])} FROM Opportunity WHERE "
                                          f"{won} AND {_in('Id', chunk)}"):
                    opportunities[str(opp["Id"])] = opp
        ids = sorted(opportunities)
        for chunk in _chunks(ids):
            yield from self._map_opportunities([opportunities[i] for i in chunk], fields, cursor)

    def _map_opportunities(self, opps: list[dict[str, Any]], fields: dict[str, list[str]], cursor: _Cursor
                           ) -> Iterator[Any]:
        ids = [str(o["Id"]) for o in opps]
        lines: dict[str, list[dict[str, Any]]] = {}
        for line in self.api.query(f"SELECT {', '.join(fields['OpportunityLineItem'])} FROM OpportunityLineItem "
                                   f"WHERE {_in('OpportunityId', ids)} ORDER BY SystemModstamp, Id"):
            lines.setdefault(str(line["OpportunityId"]), []).append(cursor.see(line))
        all_lines = [ln for group in lines.values() for ln in group]
        products = self._by_id("Product2", fields, {str(ln["Product2Id"]) for ln in all_lines if ln.get("Product2Id")})
        entries = self._by_id("PricebookEntry", fields,
                              {str(ln["PricebookEntryId"]) for ln in all_lines if ln.get("PricebookEntryId")})
        contract_field = self.mapping.contracts.contract_field
        contract_ids = {str(o[contract_field]) for o in opps if contract_field and o.get(contract_field)}
        contracts = self._by_id("Contract", fields, contract_ids)
        today = datetime.now(UTC).date()
        for opp in opps:
            records = Records(
                opportunity=opp,
                lines=sorted(lines.get(str(opp["Id"]), []), key=lambda ln: str(ln["Id"])),
                contract=contracts.get(str(opp.get(contract_field) or "")) if contract_field else None,
                products=products,
                entries=entries,
            )
            parts = [opp, records.contract, *records.lines,
                     *(products.get(str(ln.get("Product2Id"))) for ln in records.lines),
                     *(entries.get(str(ln.get("PricebookEntryId"))) for ln in records.lines)]
            stamp = max((t for t in map(cursor.stamp, parts) if t is not None), default=None)
            try:
                contract = opportunity_contract(records, self.mapping, system=self.connection, today=today)
                if cursor.fresh(contract.external_id, stamp, contract.payload_hash):
                    yield contract
            except TermProblem as problem:
                yield Rejected(
                    stream="contracts",
                    reason=f"contract not loaded: {problem}",
                    fix=problem.fix,
                    location=f"{self.connection}:Opportunity/{opp['Id']}",
                    field=problem.field,
                    raw=json.dumps({"opportunity": opp, "record": problem.record}, default=str)[:10000],
                )
            except (KeyError, TypeError, ValueError, ArithmeticError) as exc:  # one odd record never stops the read
                yield _unreadable("contracts", "Opportunity", opp, exc, self.connection)

    def _by_id(self, sobject: str, fields: dict[str, list[str]], ids: set[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids):
            for record in self.api.query(f"SELECT {', '.join(fields[sobject])} FROM {sobject} WHERE "
                                         f"{_in('Id', chunk)}"):
                found[str(record["Id"])] = record
        return found

    # -- writing --------------------------------------------------------------------------

    def write(self, action: WriteAction) -> WriteResult:
        if action.kind != writes.KIND:
            return super().write(action)
        return writes.write(self, action)

    def find(self, action: WriteAction) -> WriteResult | None:
        if action.kind != writes.KIND:
            return None
        return writes.find(self, action)


def _unreadable(stream: str, sobject: str, record: dict[str, Any], exc: Exception, connection: str) -> Rejected:
    """A record the mapping could not read (a field it needs is missing or malformed), with where and why."""
    log.warning("%s: could not map %s %s", connection, sobject, record.get("Id"), exc_info=True)
    field = exc.args[0] if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str) else None
    why = f"it has no {field}" if field else f"{type(exc).__name__}: {exc}"
    return Rejected(
        stream=stream,
        reason=f"{sobject} {record.get('Id')} not loaded: {why}",
        fix=f"check the {sobject} in Salesforce (and the mapping's field names); report it if it looks valid",
        location=f"{connection}:{sobject}/{record.get('Id')}",
        field=field,
        raw=json.dumps(record, default=str)[:10000],
    )
