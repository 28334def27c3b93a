"""``update_customer_fields``: usage to date, overage to date, last invoice and open findings, written to Salesforce.

Exactly once, never over someone else's edit:

1. the current values are read (``GET sobjects/{object}/{id}?fields=...``);
2. values already equal to the wanted ones: nothing is written (a replay, or another run
   got there first) and the result says ``created=False``;
3. a value that differs from ``base_version`` (what subledger last read) and from the
   wanted value means a person or another integration changed it: :class:`WriteConflict`,
   nothing written;
4. otherwise one ``composite`` request (all or none) patches the fields with
   ``If-Unmodified-Since`` set to the read's ``LastModifiedDate`` (an edit between the read
   and the write fails the patch with 412, again a conflict) and re-reads the record.
"""

from __future__ import annotations

import email.utils
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from subledger.core.connector import WriteAction, WriteConflict, WriteResult
from subledger.core.db_types import decimal_text
from subledger.core.errors import ConfigError, SystemFailure
from subledger.plugins.salesforce.mapping import WRITE_BACK_NAMES
from subledger.plugins.salesforce.soql import parse_datetime, quote

if TYPE_CHECKING:
    from subledger.plugins.salesforce.connector import SalesforceConnector

KIND = "update_customer_fields"


def normalize(value: Any) -> str:
    """A field value as the canonical text compared and stored (null and empty are both ``""``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (Decimal, int)):
        return decimal_text(Decimal(value))
    return str(value)


def _fields(conn: SalesforceConnector, payload: dict[str, Any]) -> dict[str, str]:
    mapped = conn.mapping.write_back.fields
    unknown = sorted(set(payload) - set(WRITE_BACK_NAMES))
    if unknown:
        raise ConfigError(f"{conn.connection}: update_customer_fields got unknown fields {unknown}",
                          fix=f"send only {', '.join(WRITE_BACK_NAMES)}")
    unmapped = sorted(k for k in payload if k not in mapped)
    if unmapped:
        raise ConfigError(f"{conn.connection}: no Salesforce field is mapped for {', '.join(unmapped)}",
                          fix="map them under write_back.fields in the mapping file (see "
                          "docs/connectors/salesforce.md)")
    return {k: mapped[k] for k in payload}


def _target(conn: SalesforceConnector, account_id: str) -> tuple[str, str]:
    """``(object, record id)`` the write goes to: the account, or its latest activated contract."""
    obj = conn.mapping.write_back.object
    if obj == "Account":
        return "Account", account_id
    rows = list(conn.api.query(
        f"SELECT Id FROM Contract WHERE AccountId = {quote(account_id)} AND Status = 'Activated' "
        "ORDER BY StartDate DESC LIMIT 1"))
    if not rows:
        raise ConfigError(f"{conn.connection}: account {account_id} has no activated contract to write to",
                          fix="activate the account's contract, or set write_back.object: Account")
    return "Contract", str(rows[0]["Id"])


def _read(conn: SalesforceConnector, obj: str, rid: str, fields: list[str]) -> dict[str, Any]:
    wanted = ",".join(["Id", "LastModifiedDate", *fields])
    return conn.api.call(f"read {obj} {rid}", lambda: conn.api.sf.restful(f"sobjects/{obj}/{rid}",
                                                                          params={"fields": wanted}))


def _result(conn: SalesforceConnector, account_id: str, record: dict[str, Any], fields: dict[str, str],
            created: bool) -> WriteResult:
    values = {name: normalize(record.get(field)) for name, field in fields.items()}
    return WriteResult(external_id=account_id, created=created, record=values)


def find(conn: SalesforceConnector, action: WriteAction) -> WriteResult | None:
    """The write is already done when the fields hold the wanted values."""
    if action.kind != KIND or not action.target_external_id:
        return None
    fields = _fields(conn, action.payload)
    obj, rid = _target(conn, action.target_external_id)
    current = _read(conn, obj, rid, list(fields.values()))
    if all(normalize(current.get(f)) == normalize(action.payload[k]) for k, f in fields.items()):
        return _result(conn, action.target_external_id, current, fields, created=False)
    return None


def write(conn: SalesforceConnector, action: WriteAction) -> WriteResult:
    """Perform ``update_customer_fields`` (see the module docstring)."""
    if not action.target_external_id:
        raise ConfigError(f"{conn.connection}: update_customer_fields needs the account id as target_external_id",
                          fix="report this to subledger's maintainers: the rule planned an action without a target")
    fields = _fields(conn, action.payload)
    obj, rid = _target(conn, action.target_external_id)
    current = _read(conn, obj, rid, list(fields.values()))
    base = action.base_version or {}
    wanted = {k: normalize(v) for k, v in action.payload.items()}
    now = {k: normalize(current.get(f)) for k, f in fields.items()}
    if now == wanted:
        return _result(conn, action.target_external_id, current, fields, created=False)
    changed = sorted(k for k in fields if now[k] != wanted[k] and now[k] != normalize(base.get(k)))
    if changed:
        raise WriteConflict(
            f"{conn.connection}: {obj} {rid} changed since subledger read it: "
            + "; ".join(f"{fields[k]} is {now[k]!r}, subledger last saw {normalize(base.get(k))!r}" for k in changed),
            fix="review the value in Salesforce; the next sync reads it and plans the update again",
        )
    # HTTP dates have whole seconds: round up, so the read's own timestamp never fails the condition.
    modified = parse_datetime(str(current["LastModifiedDate"]))
    if modified.microsecond:
        modified = modified.replace(microsecond=0) + timedelta(seconds=1)
    since = email.utils.format_datetime(modified, usegmt=True)
    path = f"{conn.api.data_path}/sobjects/{obj}/{rid}"
    body = {fields[k]: wanted[k] or None for k in fields}
    responses = conn.api.composite([
        {"method": "PATCH", "url": path, "referenceId": "update", "body": body,
         "httpHeaders": {"If-Unmodified-Since": since}},
        {"method": "GET", "url": f"{path}?fields={','.join(['Id', *fields.values()])}", "referenceId": "reread"},
    ])
    update = next(r for r in responses if r.get("referenceId") == "update")
    if update.get("httpStatusCode") == 412:
        raise WriteConflict(f"{conn.connection}: {obj} {rid} was edited while subledger was writing to it",
                            fix="nothing was written; the next sync reads the edit and plans again")
    if int(update.get("httpStatusCode") or 500) >= 300:
        detail = update.get("body")
        message = detail[0].get("message") if isinstance(detail, list) and detail else str(detail)
        code = detail[0].get("errorCode") if isinstance(detail, list) and detail else ""
        raise ConfigError(f"{conn.connection}: updating {obj} {rid} failed: HTTP {update.get('httpStatusCode')} "
                          f"{code}: {message}",
                          fix="give the integration user edit access to the write-back fields (see "
                          "docs/connectors/salesforce.md)")
    reread = next(r for r in responses if r.get("referenceId") == "reread")
    record = reread.get("body")
    if not isinstance(record, dict):
        raise SystemFailure(f"{conn.connection}: re-reading {obj} {rid} after the update failed",
                            fix="the update was made; the next sync reads it back")
    return _result(conn, action.target_external_id, record, fields, created=True)
