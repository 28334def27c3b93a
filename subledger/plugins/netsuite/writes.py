"""Write-back: every write is an upsert by external id, looked up first.

``PUT /record/v1/<type>/eid:<externalId>`` creates the record or, if one with that
external id exists, updates it, so a retry after a lost answer or a re-run after a crash
can never make a second record. Before writing, the record is looked up by the same
external id: if it is there the earlier attempt succeeded and nothing is sent.

External ids are derived from what the record *is*, never only from the action that wrote
it, so a second planning of the same fix (another action, another key) finds the first
record instead of making a duplicate:

* customers: the canonical customer id (``payload.external_id``);
* journal entries: their stable ``JournalEntry.external_id``;
* invoices and credit memos copied from a billing system: ``subledger:<source system>:<source
  id>`` (the billing record's id, which the body also carries in the source custom fields);
* anything else (a payment, a document without a source): the action's idempotency key.

Before writing, the record is looked up by that external id, then by the action's key (what
earlier versions wrote), then, for a document with a source, by SuiteQL on the source
custom fields (a record written under another external id).
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from decimal import Decimal
from typing import Any

from subledger.core.connector import WriteAction, WriteResult
from subledger.core.errors import ConfigError
from subledger.core.money import to_major
from subledger.plugins.netsuite.accounts import AccountMapping
from subledger.plugins.netsuite.client import NetSuiteClient, eid
from subledger.plugins.netsuite.config import NetSuiteConfig

RECORD_TYPES = {"create_customer": "customer", "create_invoice": "invoice", "create_credit_note": "creditMemo",
                "create_payment": "customerPayment", "create_journal_entry": "journalEntry"}
# Documents whose body carries the billing record they copy (source system and id custom fields).
SOURCE_TYPES = {"invoice": "CustInvc", "creditMemo": "CustCred"}
MAX_EXTERNAL_ID = 128
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def source_external_id(action: WriteAction) -> str | None:
    """``subledger:<system>:<id>`` of the billing record an invoice or credit memo copies (None: no source)."""
    if RECORD_TYPES.get(action.kind) not in SOURCE_TYPES:
        return None
    system, ext = action.payload.get("source_system"), action.payload.get("source_external_id")
    if not system or not ext:
        return None
    value = f"subledger:{system}:{ext}"
    if len(value) <= MAX_EXTERNAL_ID:
        return value
    return "subledger:" + hashlib.sha256(f"{system}:{ext}".encode()).hexdigest()[:48]


def external_id_for(action: WriteAction) -> str:
    """The NetSuite ``externalId`` an action's record carries."""
    if action.kind == "create_customer":
        value = action.payload.get("external_id")
        if not value:
            raise ConfigError("create_customer needs payload.external_id (the canonical customer id)",
                              fix="plan the action with the canonical id as external_id")
        return str(value)
    if action.kind == "create_journal_entry":
        value = action.payload.get("external_id")
        if not value:
            raise ConfigError("create_journal_entry needs the journal entry's external_id",
                              fix="pass the JournalEntry as the payload (subledger.core.model.journal.journal_payload)")
        return str(value)
    return source_external_id(action) or action.idempotency_key


def lookup_ids(action: WriteAction) -> list[str]:
    """The external ids an earlier write of this action (or of the same fix) may carry, in lookup order."""
    return list(dict.fromkeys([external_id_for(action), action.idempotency_key]))


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What subledger keeps of a written record (JSON-safe, amounts as exact strings)."""
    keep = ("id", "externalId", "tranId", "entityId", "companyName", "total", "payment", "amountRemaining",
            "tranDate", "lastModifiedDate")
    out = {k: (str(record[k]) if isinstance(record[k], Decimal) else record[k]) for k in keep if k in record}
    for ref in ("entity", "customer", "postingPeriod", "status"):
        if isinstance(record.get(ref), dict):
            out[ref] = record[ref].get("id") if ref != "status" else record[ref].get("refName")
    return out


def _quoted(value: Any) -> str:
    """A SuiteQL string literal's content: quotes doubled."""
    return str(value).replace("'", "''")


def _entity(payload: dict[str, Any]) -> dict[str, str]:
    if payload.get("customer"):
        return {"externalId": str(payload["customer"])}
    if payload.get("customer_external_id"):
        return {"id": str(payload["customer_external_id"])}
    raise ConfigError("the write names no customer", fix="give payload.customer (canonical id, the NetSuite "
                      "customer's externalId) or payload.customer_external_id (its internal id)")


def _major(minor: Any, currency: str, what: str) -> Decimal:
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise ConfigError(f"{what} must be integer minor units, not {minor!r}", fix="send amounts as *_minor integers")
    return to_major(minor, currency)


def _day(value: Any) -> str | None:
    if not value:
        return None
    return date.fromisoformat(str(value)[:10]).isoformat()


class Writer:
    """Turns write actions into NetSuite record bodies and upserts them exactly once."""

    def __init__(self, client: NetSuiteClient, config: NetSuiteConfig, mapping: AccountMapping | None,
                 closed_period: Any) -> None:
        self.client = client
        self.config = config
        self.mapping = mapping
        self.closed_period = closed_period

    def find(self, action: WriteAction) -> WriteResult | None:
        rtype = RECORD_TYPES.get(action.kind)
        if rtype is None:
            return None
        found = self._existing(rtype, action)
        return None if found is None else WriteResult(str(found["id"]), False, summary(found))

    def _existing(self, rtype: str, action: WriteAction) -> dict[str, Any] | None:
        """The record an earlier write of this action, or of the same fix, made; None if there is none."""
        for ext in lookup_ids(action):
            found = self.client.get(rtype, eid(ext))
            if found is not None:
                return found
        return self._by_source(rtype, action)

    def _by_source(self, rtype: str, action: WriteAction) -> dict[str, Any] | None:
        """A document carrying the same source system and id in its custom fields, whatever its external id."""
        type_code = SOURCE_TYPES.get(rtype)
        system, ext = action.payload.get("source_system"), action.payload.get("source_external_id")
        fields = (self.config.source_system_field, self.config.source_id_field)
        if type_code is None or not system or not ext or not all(_FIELD.match(f) for f in fields):
            return None
        query = (f"SELECT id FROM transaction WHERE type = '{type_code}' AND {fields[0].lower()} = "
                 f"'{_quoted(system)}' AND {fields[1].lower()} = '{_quoted(ext)}' ORDER BY id")
        try:
            rows, _, _ = next(self.client.suiteql(query, page_size=1))
        except ConfigError:
            return None  # the account has no such field (SuiteQL refuses the query): no record can carry it
        return self.client.get(rtype, str(rows[0]["id"])) if rows else None

    def write(self, action: WriteAction) -> WriteResult:
        rtype = RECORD_TYPES.get(action.kind)
        if rtype is None:
            raise ConfigError(f"NetSuite cannot {action.kind!r}",
                              fix=f"use one of: {', '.join(sorted(RECORD_TYPES))}")
        ext = external_id_for(action)
        body = getattr(self, f"_{rtype}")(action.payload)  # validates before anything is sent
        found = self._existing(rtype, action)
        if found is not None:
            return WriteResult(str(found["id"]), False, summary(found))
        record_id = self.client.upsert(rtype, ext, body)
        written = self.client.get(rtype, record_id) or {"id": record_id}
        return WriteResult(str(written["id"]), True, summary(written))

    # -- bodies ----------------------------------------------------------------------------------

    def _currency(self, code: Any) -> dict[str, str]:
        code = str(code or "").upper()
        mapped = (self.mapping.currencies if self.mapping else {}).get(code) or self.config.currencies.get(code)
        if not mapped:
            raise ConfigError(f"currency {code or '(none)'} has no NetSuite currency id",
                              fix=f"add {code or 'it'} to currencies in the connection config "
                              "(ISO code -> internal id)")
        return {"id": mapped}

    def _item(self) -> dict[str, str]:
        if not self.config.invoice_item_id:
            raise ConfigError("invoice_item_id is not set; NetSuite needs an item on every invoice line",
                              fix="create a non-inventory sale item (e.g. 'Billed by subledger') and set "
                              "invoice_item_id to its internal id")
        return {"id": self.config.invoice_item_id}

    def _customer(self, p: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"companyName": str(p.get("name") or p["external_id"])[:83],
                                "subsidiary": {"id": self.config.subsidiary_id}}
        if p.get("email"):
            body["email"] = p["email"]
        if p.get("currency"):
            body["currency"] = self._currency(p["currency"])
        return body

    def _lines(self, p: dict[str, Any], currency: str) -> list[dict[str, Any]]:
        lines = p.get("lines") or []
        if not lines:
            raise ConfigError("the document has no lines", fix="give at least one line with amount_minor")
        out = []
        for n, line in enumerate(lines):
            entry: dict[str, Any] = {"item": self._item(),
                                     "amount": _major(line.get("amount_minor"), currency, f"lines[{n}].amount_minor"),
                                     "description": str(line.get("description") or "")[:999]}
            if line.get("quantity") not in (None, ""):
                entry["quantity"] = Decimal(str(line["quantity"]))
            start, end = _day(line.get("service_start")), _day(line.get("service_end"))
            if start:
                entry["revRecStartDate"] = start
            if end:
                entry["revRecEndDate"] = end
            out.append(entry)
        return out

    def _invoice(self, p: dict[str, Any]) -> dict[str, Any]:
        currency = str(p.get("currency") or "").upper()
        body: dict[str, Any] = {"entity": _entity(p), "currency": self._currency(currency),
                                "item": {"items": self._lines(p, currency)}}
        lines_total = sum(int(ln.get("amount_minor") or 0) for ln in p["lines"])
        if p.get("total_minor") is not None and int(p["total_minor"]) != lines_total + int(p.get("tax_minor") or 0):
            raise ConfigError(f"invoice total {p['total_minor']} is not its lines ({lines_total}) plus tax",
                              fix="send lines that add up to total_minor - tax_minor")
        if _day(p.get("issued_at")):
            body["tranDate"] = _day(p["issued_at"])
        if p.get("source_system") and p.get("source_external_id"):
            body[self.config.source_system_field] = str(p["source_system"])
            body[self.config.source_id_field] = str(p["source_external_id"])
        if p.get("number"):
            body["otherRefNum"] = str(p["number"])
        if p.get("description"):
            body["memo"] = str(p["description"])[:999]
        return body

    def _creditMemo(self, p: dict[str, Any]) -> dict[str, Any]:
        body = self._invoice({k: v for k, v in p.items() if k != "total_minor"})
        if p.get("invoice_external_id"):
            body["createdFrom"] = {"id": str(p["invoice_external_id"])}
        return body

    def _customerPayment(self, p: dict[str, Any]) -> dict[str, Any]:
        currency = str(p.get("currency") or "").upper()
        applications = p.get("applications") or []
        applied = sum(int(a.get("amount_minor") or 0) for a in applications)
        amount = p.get("amount_minor")
        if not isinstance(amount, int) or amount <= 0 or applied > amount:
            raise ConfigError(f"payment amount {amount!r} must be a positive integer of minor units covering the "
                              f"{applied} applied", fix="send amount_minor >= the sum of applications")
        body: dict[str, Any] = {"customer": _entity(p), "currency": self._currency(currency),
                                "payment": _major(amount, currency, "amount_minor"),
                                "undepFunds": self.config.undeposited_funds,
                                "apply": {"items": [
                                    {"doc": {"id": str(a["invoice_external_id"])}, "apply": True,
                                     "amount": _major(a.get("amount_minor"), currency, f"applications[{n}]")}
                                    for n, a in enumerate(applications)]}}
        if _day(p.get("received_at")):
            body["tranDate"] = _day(p["received_at"])
        if p.get("reference"):
            body["memo"] = str(p["reference"])[:999]
        return body

    def _journalEntry(self, p: dict[str, Any]) -> dict[str, Any]:
        ext = p.get("external_id")
        if self.mapping is None:
            raise ConfigError("posting journal entries needs account_mapping in the NetSuite connection config",
                              fix="write the mapping file (docs/connectors/netsuite.md#the-account-mapping-file) "
                              "and set account_mapping to its path")
        currency = str(p.get("currency") or "").upper()
        lines = p.get("lines") or []
        debit = sum(int(ln.get("debit_minor") or 0) for ln in lines)
        credit = sum(int(ln.get("credit_minor") or 0) for ln in lines)
        if len(lines) < 2 or debit != credit:
            raise ConfigError(f"journal entry {ext} does not balance: debits {debit}, credits {credit} "
                              f"({len(lines)} lines)", fix="post only balanced entries from subledger revrec; "
                              "a hand-made entry needs equal debits and credits")
        items = []
        for n, ln in enumerate(lines):
            d, c = int(ln.get("debit_minor") or 0), int(ln.get("credit_minor") or 0)
            if (d and c) or d < 0 or c < 0 or not (d or c):
                raise ConfigError(f"journal entry {ext} line {ln.get('line_no', n)} must have a debit or a credit",
                                  fix="split the line into a debit line and a credit line")
            if ln.get("currency") and str(ln["currency"]).upper() != currency:
                raise ConfigError(f"journal entry {ext} line {ln.get('line_no', n)} is in {ln['currency']}, the "
                                  f"entry in {currency}", fix="post one entry per currency")
            item: dict[str, Any] = {"account": {"id": self.mapping.account_for(str(ln.get("account") or ""),
                                                                              str(ln.get("role") or ""))}}
            if d:
                item["debit"] = to_major(d, currency)
            else:
                item["credit"] = to_major(c, currency)
            memo = ln.get("memo") or ln.get("role") or ""
            if memo:
                item["memo"] = str(memo)[:999]
            items.append(item)
        period = str(p.get("period") or str(p.get("entry_date"))[:7])
        period_id = self.mapping.periods.get(period)
        closed = self.closed_period(period, period_id)
        if closed:
            raise ConfigError(f"journal entry {ext}: NetSuite period {closed} is closed or locked",
                              fix="post it in the first open period (subledger revrec run moves late entries "
                              "there), or reopen the period in NetSuite")
        body: dict[str, Any] = {"subsidiary": {"id": self.mapping.subsidiary}, "currency": self._currency(currency),
                                "tranDate": _day(p.get("entry_date")), "line": {"items": items},
                                "memo": str(p.get("memo") or p.get("key") or ext)[:999]}
        if period_id:
            body["postingPeriod"] = {"id": period_id}
        return body


