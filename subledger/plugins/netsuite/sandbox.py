"""A NetSuite sandbox: REST record service, SuiteQL, TBA and OAuth 2.0, period locks.

What it emulates (``docs/connectors/netsuite.md`` lists it with the fixture kinds):

* ``/services/rest/record/v1/<type>``: create (POST, 204 with a ``Location`` header),
  get (by internal id or ``eid:<external id>``, sublists with ``expandSubResources``),
  update (PATCH), upsert by external id (PUT ``eid:``), delete — for customers, invoices,
  credit memos, customer payments (applied to invoices), journal entries, accounts,
  subsidiaries, accounting periods and non-inventory items;
* ``/services/rest/query/v1/suiteql``: the query subset in :mod:`.sandbox_suiteql`,
  paged with ``limit``/``offset``/``hasMore``, with ``Prefer: transient`` required;
* authentication verified server side by oauthlib's RFC 5849 resource endpoint
  (HMAC-SHA256 token-based auth) and by PyJWT (the OAuth 2.0 client-credentials
  assertion); a failure is NetSuite's 401 ``INVALID_LOGIN``;
* accounting periods: a posting into a closed or locked period is refused;
* governance: an optional per-account concurrency limit (429
  ``CONCURRENCY_LIMIT_EXCEEDED``), plus the framework's faults; a ``rate_limit`` fault
  and a ``server_error`` fault with status 400 are rendered as NetSuite's concurrency
  errors.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote

from oauthlib.oauth1 import RequestValidator, ResourceEndpoint
from oauthlib.oauth1.rfc5849 import SIGNATURE_HMAC_SHA256

from subledger.core.sandbox import Call, Fault, Outcome, Request, Response, Router, Sandbox, SandboxError
from subledger.core.sandbox.app import Exchange
from subledger.core.sandbox.faults import shaped_response
from subledger.plugins.netsuite import exact_json
from subledger.plugins.netsuite import sandbox_suiteql as suiteql

DEFAULT_ACCOUNT = "1234567_SB1"
DEFAULT_CONSUMER_KEY = "ck" + "a1" * 31
DEFAULT_CONSUMER_SECRET = "cs" + "b2" * 31
DEFAULT_TOKEN_ID = "ti" + "c3" * 31
DEFAULT_TOKEN_SECRET = "ts" + "d4" * 31
RECORD = "/services/rest/record/v1"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"

TRANSACTION_TYPES = {"invoice": "CustInvc", "creditMemo": "CustCred", "customerPayment": "CustPymt",
                     "journalEntry": "Journal"}
RECORD_TYPES = ("customer", *TRANSACTION_TYPES, "account", "subsidiary", "accountingPeriod",
                "nonInventorySaleItem", "currency")
SUBLISTS = {"invoice": "item", "creditMemo": "item", "customerPayment": "apply", "journalEntry": "line"}
_STATUS_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                  405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error"}
_STATUS_SECTIONS = {400: "15.5.1", 401: "15.5.2", 403: "15.5.4", 404: "15.5.5", 405: "15.5.6", 429: "6585#section-4",
                    500: "15.6.1"}
CONCURRENCY_DETAIL = "Concurrent request limit exceeded. Request blocked."
INVALID_LOGIN = ("Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
                 "Setup > Users/Roles > User Management > View Login Audit Trail.")


def _user_error(detail: str, path: str | None = None, code: str = "USER_ERROR", status: int = 400) -> SandboxError:
    err = SandboxError(status, detail, code=code, param=path)
    return err


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _user_error(f"Invalid value for field {field}: {value!r}. Provide a number.", field,
                          "INVALID_FIELD_VALUE")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise _user_error(f"Invalid value for field {field}: {value!r}. Provide a number.", field,
                          "INVALID_FIELD_VALUE") from None


def _date(value: Any, field: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _user_error(f"Invalid value for field {field}: {value!r}. Provide a date as YYYY-MM-DD.", field,
                          "INVALID_FIELD_VALUE") from None


class _Validator(RequestValidator):
    """oauthlib's view of the sandbox's integration record and access token."""

    def __init__(self, sandbox: NetSuiteSandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    allowed_signature_methods = (SIGNATURE_HMAC_SHA256,)
    enforce_ssl = False
    client_key_length = (16, 128)
    access_token_length = (16, 128)
    nonce_length = (6, 64)
    safe_characters = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    dummy_client = "dummyclient" + "0" * 10
    dummy_access_token = "dummytoken" + "0" * 10

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == self.sandbox.consumer_key

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.sandbox.consumer_secret if client_key == self.sandbox.consumer_key else "dummy-secret"

    def validate_access_token(self, client_key: str, token: str, request: Any) -> bool:
        return token in self.sandbox.tokens and self.sandbox.tokens[token][0] == client_key

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return self.sandbox.tokens.get(token, ("", "dummy-token-secret"))[1]

    def validate_timestamp_and_nonce(self, client_key: str, timestamp: str, nonce: str, request: Any,
                                     request_token: str | None = None, access_token: str | None = None) -> bool:
        key = (client_key, timestamp, nonce, access_token)
        with self.sandbox.nonce_lock:
            if key in self.sandbox.nonces:
                return False  # a replayed signature
            self.sandbox.nonces.add(key)
        return True

    def validate_realms(self, client_key: str, token: str, request: Any, uri: str | None = None,
                        realms: Any = None) -> bool:
        return (request.realm or "") == self.sandbox.account_id


class NetSuiteSandbox(Sandbox):
    """A NetSuite account in a box. See the module docstring for what it covers.

    Args:
        account_id: the account (and OAuth realm).
        consumer_key, consumer_secret: the integration record's TBA credentials.
        token_id, token_secret: one access token (``tokens`` adds more: id -> secret).
        oauth2_clients: client id -> {certificate id -> PEM public key} for OAuth 2.0.
        concurrency_limit: requests in flight the account accepts (None: unlimited).
        request_latency: seconds each API request takes (to make concurrency observable).
        fixture: as for every sandbox; without one the account starts with
            :func:`standard_fixture` (currencies, a subsidiary, accounts, 2026 periods, an item).
    """

    name: ClassVar[str] = "netsuite"
    title: ClassVar[str] = "NetSuite SuiteTalk REST web services and SuiteQL"

    def __init__(
        self,
        *,
        account_id: str = DEFAULT_ACCOUNT,
        consumer_key: str = DEFAULT_CONSUMER_KEY,
        consumer_secret: str = DEFAULT_CONSUMER_SECRET,
        token_id: str = DEFAULT_TOKEN_ID,
        token_secret: str = DEFAULT_TOKEN_SECRET,
        tokens: dict[str, str] | None = None,
        oauth2_clients: dict[str, dict[str, str]] | None = None,
        concurrency_limit: int | None = None,
        request_latency: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.account_id = account_id
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.tokens: dict[str, tuple[str, str]] = {token_id: (consumer_key, token_secret)}
        for tid, secret in (tokens or {}).items():
            self.tokens[tid] = (consumer_key, secret)
        self.oauth2_clients = oauth2_clients or {}
        self.bearer_tokens: dict[str, float] = {}
        self.nonces: set[tuple[Any, ...]] = set()
        self.nonce_lock = threading.Lock()
        self.concurrency_limit = concurrency_limit
        self.request_latency = request_latency
        self._flight_lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.concurrency_refusals = 0
        self._endpoint = ResourceEndpoint(_Validator(self))
        self._next_id = 100
        if kwargs.get("fixture") is None:
            # An account always has currencies, a subsidiary, a chart of accounts and periods.
            kwargs["fixture"] = standard_fixture()
        super().__init__(**kwargs)

    def connection_hint(self, url: str) -> dict[str, Any]:
        return {"account_id": self.account_id, "base_url": url, "consumer_key": self.consumer_key,
                "consumer_secret": self.consumer_secret, "token_id": next(iter(self.tokens)),
                "token_secret": next(iter(self.tokens.values()))[1]}

    # -- wire conventions ---------------------------------------------------------------------

    def render_error(self, error: SandboxError) -> Response:
        status = error.status
        detail: dict[str, Any] = {"detail": error.message, "o:errorCode": error.code or "USER_ERROR"}
        if error.param:
            detail["o:errorPath"] = error.param
        section = _STATUS_SECTIONS.get(status, "15.5.1")
        kind = (f"https://www.rfc-editor.org/rfc/rfc{section}" if "#" in section
                else f"https://www.rfc-editor.org/rfc/rfc9110.html#section-{section}")
        body = {"type": kind, "title": _STATUS_TITLES.get(status, "Error"), "status": status,
                "o:errorDetails": [detail]}
        return Response(status, _body(body), {"Content-Type": "application/vnd.oracle.resource+json; type=error",
                                              **error.headers})

    def fault_response(self, fault: Fault) -> Response:
        # A rule with its own body answers like a proxy in front of the vendor would.
        return shaped_response(fault, self._vendor_fault_response(fault))

    def _vendor_fault_response(self, fault: Fault) -> Response:
        if fault.kind == "rate_limit" or (fault.kind == "server_error" and fault.status == 400):
            status = 429 if fault.kind == "rate_limit" else 400
            response = self.render_error(SandboxError(status, CONCURRENCY_DETAIL, code="CONCURRENCY_LIMIT_EXCEEDED"))
            if fault.kind == "rate_limit" and fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
            response.headers.update(fault.headers)
            return response
        if fault.kind == "server_error" and 400 < fault.status < 500:
            code = {401: "INVALID_LOGIN", 403: "INSUFFICIENT_PERMISSION", 404: "NONEXISTENT_ID"}.get(
                fault.status, "USER_ERROR")
            response = self.render_error(SandboxError(fault.status, f"Sandbox fault {fault.status}.", code=code))
            response.headers.update(fault.headers)
            return response
        response = self.render_error(SandboxError(fault.status, "An unexpected error occurred.",
                                                  code="UNEXPECTED_ERROR"))
        response.headers.update(fault.headers)
        return response

    def process(self, request: Request) -> Outcome:
        if request.path.startswith("/_sandbox"):
            return super().process(request)
        with self._flight_lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            over = self.concurrency_limit is not None and self.in_flight > self.concurrency_limit
            if over:
                self.concurrency_refusals += 1
        try:
            if over:
                response = self.render_error(SandboxError(429, CONCURRENCY_DETAIL, code="CONCURRENCY_LIMIT_EXCEEDED"))
                exchange = Exchange(request, response)
                self.exchanges.append(exchange)
                for observer in list(self.observers):
                    observer(exchange)
                return Outcome("respond", response)
            if self.request_latency:
                time.sleep(self.request_latency)
            return super().process(request)
        finally:
            with self._flight_lock:
                self.in_flight -= 1

    def authenticate(self, request: Request) -> Any:
        if request.path == TOKEN_PATH:
            return None
        header = request.headers.get("authorization") or ""
        if header.startswith("Bearer "):
            expires = self.bearer_tokens.get(header.removeprefix("Bearer "))
            if expires is not None and expires > self.clock.time():
                return self.account_id
            raise SandboxError(401, INVALID_LOGIN, code="INVALID_LOGIN")
        if header.startswith("OAuth "):
            host = request.headers.get("host") or "127.0.0.1"
            valid, _ = self._endpoint.validate_protected_resource_request(
                f"http://{host}{request.target}", http_method=request.method, body=None,
                headers={"Authorization": header},
            )
            if valid:
                return self.account_id
        raise SandboxError(401, INVALID_LOGIN, code="INVALID_LOGIN")

    # -- routes -------------------------------------------------------------------------------

    def build_routes(self, router: Router) -> None:
        for rtype in RECORD_TYPES:
            base = f"{RECORD}/{rtype}"
            router.add("POST", base, lambda c, t=rtype: self.create(c, t))
            router.add("GET", base, lambda c, t=rtype: self.list_records(c, t))
            router.add("GET", base + "/{id}", lambda c, t=rtype: self.get_record(c, t))
            router.add("PATCH", base + "/{id}", lambda c, t=rtype: self.patch(c, t))
            router.add("PUT", base + "/{id}", lambda c, t=rtype: self.upsert(c, t))
            router.add("DELETE", base + "/{id}", lambda c, t=rtype: self.delete_record(c, t))
        router.add("POST", "/services/rest/query/v1/suiteql", self.suiteql)
        router.add("POST", TOKEN_PATH, self.issue_token)

    # -- records ------------------------------------------------------------------------------

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(int(self.clock.time()), UTC)

    def find(self, rtype: str, ref: str) -> dict[str, Any] | None:
        """A record by internal id or ``eid:<external id>``."""
        ref = unquote(ref)
        if ref.startswith("eid:"):
            wanted = ref[4:]
            return next((r for r in self.store.collection(rtype).values() if r.get("externalId") == wanted), None)
        return self.store.get(rtype, ref)

    def _require(self, rtype: str, ref: str) -> dict[str, Any]:
        record = self.find(rtype, ref)
        if record is None:
            raise SandboxError(404, "The record instance does not exist. Provide a valid record instance ID.",
                               code="NONEXISTENT_ID")
        return record

    def _location(self, call: Call, rtype: str, record_id: str) -> dict[str, str]:
        host = call.request.headers.get("host") or "127.0.0.1"
        return {"Location": f"http://{host}{RECORD}/{rtype}/{record_id}"}

    def create(self, call: Call, rtype: str) -> Response:
        body = self._json_body(call)
        record = self.save(rtype, body, None)
        return Response(204, None, self._location(call, rtype, record["id"]))

    def upsert(self, call: Call, rtype: str) -> Response:
        ref = unquote(call["id"])
        if not ref.startswith("eid:"):
            raise SandboxError(400, "The upsert operation requires an external ID in the request URL "
                               "(.../eid:<externalId>).", code="INVALID_URL")
        body = {**self._json_body(call), "externalId": ref[4:]}
        existing = self.find(rtype, ref)
        record = self.save(rtype, body, existing)
        return Response(204, None, self._location(call, rtype, record["id"]))

    def patch(self, call: Call, rtype: str) -> Response:
        existing = self._require(rtype, call["id"])
        record = self.save(rtype, self._json_body(call), existing, partial=True)
        return Response(204, None, self._location(call, rtype, record["id"]))

    def delete_record(self, call: Call, rtype: str) -> Response:
        record = self._require(rtype, call["id"])
        if rtype in TRANSACTION_TYPES:
            self._check_period(rtype, record)
            self._unapply(record)
        self.store.delete(rtype, record["id"])
        return Response(204, None)

    def get_record(self, call: Call, rtype: str) -> Response:
        record = self._require(rtype, call["id"])
        expand = str(call.request.query.get("expandSubResources", "false")).lower() == "true"
        return Response(200, _body(self.render(rtype, record, expand=expand, host=call.request.headers.get("host"))))

    def list_records(self, call: Call, rtype: str) -> Response:
        limit = int(call.request.query.get("limit", 1000))
        offset = int(call.request.query.get("offset", 0))
        if not 1 <= limit <= 1000 or offset < 0 or offset % limit:
            raise SandboxError(400, "Invalid 'limit' or 'offset' query parameter value.", code="INVALID_PARAMETER")
        records = sorted(self.store.collection(rtype).values(), key=lambda r: int(r["id"]))
        page = records[offset:offset + limit]
        return Response(200, _body({"links": [], "count": len(page), "hasMore": offset + limit < len(records),
                                    "offset": offset, "totalResults": len(records),
                                    "items": [{"links": [], "id": r["id"]} for r in page]}))

    def _json_body(self, call: Call) -> dict[str, Any]:
        if not call.request.body:
            raise SandboxError(400, "The request body is empty.", code="INVALID_CONTENT")
        try:
            body = exact_json.loads(call.request.body)
        except ValueError:
            raise SandboxError(400, "Invalid JSON in the request body.", code="INVALID_CONTENT") from None
        if not isinstance(body, dict):
            raise SandboxError(400, "The request body must be a JSON object.", code="INVALID_CONTENT")
        return body

    def render(self, rtype: str, record: dict[str, Any], *, expand: bool = True, host: str | None = None
               ) -> dict[str, Any]:
        """The record as GET returns it: internal fields hidden, sublists expanded or linked."""
        out = {k: v for k, v in record.items() if not k.startswith("_")}
        sub = SUBLISTS.get(rtype)
        if sub and sub in out and not expand:
            out[sub] = {"links": [{"rel": "self", "href": f"http://{host}{RECORD}/{rtype}/{record['id']}/{sub}"}]}
        out["links"] = [{"rel": "self", "href": f"http://{host}{RECORD}/{rtype}/{record['id']}"}]
        return out

    # -- saving: validation the way NetSuite validates ----------------------------------------------

    def save(self, rtype: str, body: dict[str, Any], existing: dict[str, Any] | None, *, partial: bool = False
             ) -> dict[str, Any]:
        """Create (``existing`` None) or update a record; refuse what NetSuite refuses."""
        with self.store.lock:
            unknown = {k for k in body if k in ("id", "links", "lastModifiedDate", "createdDate")}
            if unknown:
                raise _user_error(f"Field '{sorted(unknown)[0]}' is read-only.", sorted(unknown)[0], "INVALID_FIELD")
            ext = body.get("externalId")
            if ext is not None:
                clash = self.find(rtype, "eid:" + str(ext))
                if clash is not None and (existing is None or clash["id"] != existing["id"]):
                    raise _user_error("A record with the same external ID already exists.", "externalId",
                                      "DUP_RCRD")
            merged = {**(existing or {}), **body} if (partial or existing) else dict(body)
            if existing is not None and not partial:
                # An upsert replaces the body fields it sends; sublists sent replace the old ones.
                merged = {**existing, **body}
            record = self._validate(rtype, merged, existing)
            if rtype in TRANSACTION_TYPES:
                self._check_period(rtype, record)
                if existing is not None:
                    self._check_period(rtype, existing)
            now = self._now()
            if existing is None:
                record["id"] = self._new_id()
                record["createdDate"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                record["id"] = existing["id"]
                record["createdDate"] = existing.get("createdDate")
                if rtype in TRANSACTION_TYPES:
                    self._unapply(existing)
            record["lastModifiedDate"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
            record["_modified"] = now
            self.store.put(rtype, record)
            self._apply(rtype, record)
            return record

    def _ref(self, rtype: str, value: Any, field: str, required: bool = True) -> dict[str, Any] | None:
        if value is None:
            if required:
                raise _user_error(f"Please enter value(s) for: {field}", field, "USER_ERROR")
            return None
        if not isinstance(value, dict) or not (value.get("id") or value.get("externalId")):
            raise _user_error(f"Invalid value for field {field}: reference it as {{\"id\": ...}} or "
                              "{\"externalId\": ...}.", field, "INVALID_FIELD_VALUE")
        ref = str(value["id"]) if value.get("id") else "eid:" + str(value["externalId"])
        target = self.find(rtype, ref)
        if target is None:
            raise _user_error(f"Invalid value for field {field}: no {rtype} {ref}.", field, "INVALID_KEY_OR_REF")
        name = target.get("companyName") or target.get("name") or target.get("periodName") or \
            target.get("acctName") or target.get("symbol") or target.get("itemId") or target.get("tranId") or ""
        return {"id": target["id"], "refName": name}

    def _validate(self, rtype: str, rec: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        rec = dict(rec)
        if rtype == "customer":
            if not (rec.get("companyName") or rec.get("entityId")):
                raise _user_error("Please enter value(s) for: Company Name", "companyName")
            rec["subsidiary"] = self._ref("subsidiary", rec.get("subsidiary"), "subsidiary")
            if rec.get("currency") is not None:
                rec["currency"] = self._ref("currency", rec["currency"], "currency")
            rec.setdefault("entityId", rec.get("companyName"))
            rec.setdefault("isInactive", False)
        elif rtype in ("invoice", "creditMemo"):
            self._transaction_header(rec, "entity", "INV" if rtype == "invoice" else "CM")
            lines = (rec.get("item") or {}).get("items") or []
            if not lines:
                raise _user_error("You must enter at least one line item for this transaction.", "item")
            out_lines, total = [], Decimal(0)
            for n, line in enumerate(lines, 1):
                path = f"item.items[{n - 1}]"
                item = self._ref("nonInventorySaleItem", line.get("item"), f"{path}.item")
                qty = _decimal(line.get("quantity", 1), f"{path}.quantity")
                if "amount" in line:
                    amount = _decimal(line["amount"], f"{path}.amount")
                else:
                    amount = (qty * _decimal(line.get("rate"), f"{path}.rate")).quantize(Decimal("0.01"))
                start = _date(line["revRecStartDate"], f"{path}.revRecStartDate") if line.get("revRecStartDate") \
                    else None
                end = _date(line["revRecEndDate"], f"{path}.revRecEndDate") if line.get("revRecEndDate") else None
                if start and end and end < start:
                    raise _user_error("The rev rec end date must be on or after the start date.",
                                      f"{path}.revRecEndDate")
                out_lines.append({**line, "line": n, "item": item, "quantity": qty, "amount": amount,
                                  "rate": line.get("rate", (amount / qty) if qty else amount),
                                  "revRecStartDate": start.isoformat() if start else None,
                                  "revRecEndDate": end.isoformat() if end else None})
                total += amount
            tax = _decimal(rec.get("taxTotal", 0), "taxTotal")
            rec["item"] = {"items": out_lines}
            rec["subtotal"] = total
            rec["taxTotal"] = tax
            rec["total"] = total + tax
            if rtype == "invoice":
                rec["amountPaid"] = Decimal("0.00")
                rec["amountRemaining"] = rec["total"]
                rec["status"] = {"id": "A", "refName": "Open"}
            else:
                if rec.get("createdFrom") is not None:
                    rec["createdFrom"] = self._ref("invoice", rec["createdFrom"], "createdFrom")
                rec["applied"] = Decimal("0.00")
                rec["unapplied"] = rec["total"]
                rec["status"] = {"id": "A", "refName": "Open"}
        elif rtype == "customerPayment":
            self._transaction_header(rec, "customer", "PYMT")
            payment = _decimal(rec.get("payment"), "payment")
            if payment <= 0:
                raise _user_error("The payment amount must be greater than zero.", "payment")
            applied, lines = Decimal(0), []
            for n, app in enumerate((rec.get("apply") or {}).get("items") or []):
                if not app.get("apply", True):
                    continue
                doc = self._ref("invoice", app.get("doc"), f"apply.items[{n}].doc")
                assert doc is not None
                invoice = self.store.get("invoice", doc["id"]) or {}
                if invoice.get("entity", {}).get("id") != rec["customer"]["id"]:
                    raise _user_error(f"Invoice {doc['id']} belongs to another customer.", f"apply.items[{n}].doc")
                amount = _decimal(app.get("amount"), f"apply.items[{n}].amount")
                remaining = invoice["amountRemaining"] + self._already_applied(existing, doc["id"])
                if amount <= 0 or amount > remaining:
                    raise _user_error(f"The amount applied to invoice {doc['id']} ({amount}) exceeds its amount "
                                      f"due ({remaining}).", f"apply.items[{n}].amount")
                applied += amount
                lines.append({"doc": doc, "apply": True, "amount": amount, "line": n + 1})
            if applied > payment:
                raise _user_error("The total applied exceeds the payment amount.", "apply")
            rec["payment"] = payment
            rec["apply"] = {"items": lines}
            rec["applied"] = applied
            rec["unapplied"] = payment - applied
            rec["status"] = {"id": "C", "refName": "Deposited" if not rec.get("undepFunds") else "Not Deposited"}
        elif rtype == "journalEntry":
            self._transaction_header(rec, None, "JE")
            lines = (rec.get("line") or {}).get("items") or []
            if len(lines) < 2:
                raise _user_error("You must enter at least two lines for this transaction.", "line")
            debit = credit = Decimal(0)
            out_lines = []
            for n, line in enumerate(lines):
                path = f"line.items[{n}]"
                account = self._ref("account", line.get("account"), f"{path}.account")
                d = _decimal(line.get("debit", 0), f"{path}.debit")
                c = _decimal(line.get("credit", 0), f"{path}.credit")
                if (d and c) or (not d and not c) or d < 0 or c < 0:
                    raise _user_error("Each line needs either a debit or a credit amount.", path)
                debit += d
                credit += c
                entity = self._ref("customer", line["entity"], f"{path}.entity") if line.get("entity") else None
                out_lines.append({**line, "line": n, "account": account, "debit": d or None, "credit": c or None,
                                  "entity": entity})
            if debit != credit:
                raise _user_error(f"The transaction is not in balance: debits {debit}, credits {credit}.", "line")
            rec["line"] = {"items": out_lines}
            rec["total"] = debit
        elif rtype == "account":
            if not rec.get("acctName"):
                raise _user_error("Please enter value(s) for: Name", "acctName")
            rec.setdefault("acctNumber", None)
            rec.setdefault("acctType", {"id": "Income", "refName": "Income"})
            rec.setdefault("isInactive", False)
        elif rtype == "subsidiary":
            if not rec.get("name"):
                raise _user_error("Please enter value(s) for: Name", "name")
            if rec.get("currency") is not None:
                rec["currency"] = self._ref("currency", rec["currency"], "currency")
        elif rtype == "accountingPeriod":
            for f in ("periodName", "startDate", "endDate"):
                if not rec.get(f):
                    raise _user_error(f"Please enter value(s) for: {f}", f)
            _date(rec["startDate"], "startDate")
            _date(rec["endDate"], "endDate")
            for flag in ("closed", "arLocked", "apLocked", "allLocked", "isQuarter", "isYear", "isAdjust"):
                rec[flag] = bool(rec.get(flag, False))
        elif rtype == "nonInventorySaleItem":
            if not rec.get("itemId"):
                raise _user_error("Please enter value(s) for: Item Name/Number", "itemId")
        elif rtype == "currency" and not rec.get("symbol"):
            raise _user_error("Please enter value(s) for: ISO Code", "symbol")
        return rec

    def _transaction_header(self, rec: dict[str, Any], party: str | None, prefix: str) -> None:
        if party is not None:
            rec[party] = self._ref("customer", rec.get(party), party)
        rec["tranDate"] = _date(rec.get("tranDate") or self._now().date().isoformat(), "tranDate").isoformat()
        rec["currency"] = self._ref("currency", rec.get("currency") or {"id": "1"}, "currency")
        if rec.get("subsidiary") is not None:
            rec["subsidiary"] = self._ref("subsidiary", rec["subsidiary"], "subsidiary")
        period = self._period_for(rec)
        rec["postingPeriod"] = {"id": period["id"], "refName": period["periodName"]}
        if party is None and rec.get("subsidiary") is None:
            raise _user_error("Please enter value(s) for: Subsidiary", "subsidiary")
        if not rec.get("tranId"):
            rec["tranId"] = f"{prefix}{self._next_id + 1}"

    def _period_for(self, rec: dict[str, Any]) -> dict[str, Any]:
        tran = date.fromisoformat(rec["tranDate"])
        if rec.get("postingPeriod"):
            period = self._ref("accountingPeriod", rec["postingPeriod"], "postingPeriod")
            assert period is not None
            found = self.store.get("accountingPeriod", period["id"]) or {}
            if found.get("isQuarter") or found.get("isYear"):
                raise _user_error("You can only post to a base period, not a quarter or a year.", "postingPeriod")
        else:
            found = next((p for p in self.store.collection("accountingPeriod").values()
                          if not p.get("isQuarter") and not p.get("isYear") and not p.get("isAdjust")
                          and date.fromisoformat(p["startDate"]) <= tran <= date.fromisoformat(p["endDate"])), {})
            if not found:
                raise _user_error(f"No accounting period covers {tran.isoformat()}.", "postingPeriod")
        return found

    def _check_period(self, rtype: str, rec: dict[str, Any]) -> None:
        period = self.store.get("accountingPeriod", (rec.get("postingPeriod") or {}).get("id", "")) or {}
        lock = "arLocked" if rtype in ("invoice", "creditMemo", "customerPayment") else None
        if period.get("closed") or period.get("allLocked") or (lock and period.get(lock)):
            raise _user_error(f"The accounting period {period.get('periodName')} is closed or locked; you cannot "
                              "post to it. Choose an open posting period.", "postingPeriod", "USER_ERROR")

    def _already_applied(self, payment: dict[str, Any] | None, invoice_id: str) -> Decimal:
        if payment is None:
            return Decimal(0)
        return sum((a["amount"] for a in (payment.get("apply") or {}).get("items", [])
                    if a["doc"]["id"] == invoice_id), Decimal(0))

    def _apply(self, rtype: str, rec: dict[str, Any]) -> None:
        if rtype == "customerPayment":
            for app in rec["apply"]["items"]:
                self._move_invoice(app["doc"]["id"], -app["amount"])
        elif rtype == "creditMemo" and rec.get("createdFrom"):
            invoice = self.store.get("invoice", rec["createdFrom"]["id"]) or {}
            amount = min(rec["total"], invoice.get("amountRemaining", Decimal(0)))
            if amount > 0:
                self._move_invoice(invoice["id"], -amount)
                rec["applied"], rec["unapplied"] = amount, rec["total"] - amount

    def _unapply(self, rec: dict[str, Any]) -> None:
        if "apply" in rec and isinstance(rec["apply"], dict):
            for app in rec["apply"].get("items", []):
                self._move_invoice(app["doc"]["id"], app["amount"])
        if rec.get("createdFrom") and rec.get("applied"):
            self._move_invoice(rec["createdFrom"]["id"], rec["applied"])

    def _move_invoice(self, invoice_id: str, delta: Decimal) -> None:
        invoice = self.store.get("invoice", invoice_id)
        if invoice is None:
            return
        invoice["amountRemaining"] += delta
        invoice["amountPaid"] = invoice["total"] - invoice["amountRemaining"]
        paid = invoice["amountRemaining"] <= 0
        invoice["status"] = {"id": "B", "refName": "Paid In Full"} if paid else {"id": "A", "refName": "Open"}
        now = self._now()
        invoice["lastModifiedDate"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        invoice["_modified"] = now

    # -- SuiteQL --------------------------------------------------------------------------------

    def suiteql(self, call: Call) -> Response:
        if "transient" not in (call.request.headers.get("prefer") or "").lower():
            raise SandboxError(400, "Header 'Prefer: transient' is required for SuiteQL queries.",
                               code="INVALID_HEADER")
        body = self._json_body(call)
        if set(body) != {"q"} or not isinstance(body["q"], str):
            raise SandboxError(400, "The request body must be {\"q\": \"<SuiteQL query>\"}.", code="INVALID_CONTENT")
        try:
            limit = int(call.request.query.get("limit", 1000))
            offset = int(call.request.query.get("offset", 0))
        except ValueError:
            raise SandboxError(400, "Invalid 'limit' or 'offset' query parameter value.",
                               code="INVALID_PARAMETER") from None
        if not 1 <= limit <= 1000 or offset < 0:
            raise SandboxError(400, "Invalid 'limit' or 'offset' query parameter value.", code="INVALID_PARAMETER")
        try:
            rows = suiteql.run(suiteql.parse(body["q"]), self.tables())
        except suiteql.SuiteQLError as err:
            raise SandboxError(400, str(err), code="INVALID_PARAMETER") from None
        page = rows[offset:offset + limit]
        host = call.request.headers.get("host")
        return Response(200, _body({
            "links": [{"rel": "self", "href": f"http://{host}/services/rest/query/v1/suiteql?limit={limit}"
                       f"&offset={offset}"}],
            "count": len(page), "hasMore": offset + len(page) < len(rows),
            "items": [{"links": [], **row} for row in page], "offset": offset, "totalResults": len(rows)}))

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """The SuiteQL tables over the stored records (columns in lower case)."""
        def row(rec: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in rec.items():
                if key.startswith("_") or key in SUBLISTS.values():
                    continue
                if isinstance(value, dict):
                    value = value.get("id")
                out[key.lower()] = value
            out["lastmodifieddate"] = rec["_modified"]
            for key in ("startdate", "enddate", "trandate"):
                if isinstance(out.get(key), str):
                    out[key] = date.fromisoformat(out[key])
            return out

        tables: dict[str, list[dict[str, Any]]] = {
            "customer": [row(r) for r in self.store.collection("customer").values()],
            "account": [row(r) for r in self.store.collection("account").values()],
            "subsidiary": [row(r) for r in self.store.collection("subsidiary").values()],
            "accountingperiod": [row(r) for r in self.store.collection("accountingPeriod").values()],
            "transaction": [],
        }
        for rtype, code in TRANSACTION_TYPES.items():
            tables["transaction"] += [{**row(r), "type": code} for r in self.store.collection(rtype).values()]
        return tables

    # -- OAuth 2.0 client credentials -----------------------------------------------------------

    def issue_token(self, call: Call) -> Response:
        import jwt

        form = dict(parse_qsl(call.request.body.decode()))
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return Response(400, {"error": "unsupported_grant_type"})
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            keys = self.oauth2_clients.get(str(unverified.get("iss")), {})
            key = keys.get(str(header.get("kid")))
            if key is None or header.get("alg") not in ("PS256", "RS256", "ES256"):
                return Response(400, {"error": "invalid_client"})
            host = call.request.headers.get("host")
            claims = jwt.decode(assertion, key, algorithms=[header["alg"]], audience=f"http://{host}{TOKEN_PATH}",
                                options={"require": ["iss", "exp", "iat", "aud", "scope"]})
        except jwt.PyJWTError:
            return Response(400, {"error": "invalid_grant"})
        scopes = claims["scope"] if isinstance(claims["scope"], list) else str(claims["scope"]).split(",")
        if "rest_webservices" not in scopes:
            return Response(400, {"error": "invalid_scope"})
        token = "eyJ" + secrets.token_urlsafe(40)
        self.bearer_tokens[token] = self.clock.time() + 3600
        return Response(200, {"access_token": token, "expires_in": "3600", "token_type": "bearer"})

    # -- seeding ----------------------------------------------------------------------------------

    def seed(self, fixture: dict[str, Any]) -> dict[str, int]:
        """Fixture kinds, created in this order: currencies, subsidiaries, accounts,
        accounting_periods, items, customers, invoices, credit_memos, customer_payments,
        journal_entries. Entries are REST record bodies (plus an optional ``id`` and
        ``lastModifiedDate``); ``clock`` sets the sandbox time first."""
        if "clock" in fixture:
            self.clock.set(float(fixture["clock"]))
        kinds = [("currencies", "currency"), ("subsidiaries", "subsidiary"), ("accounts", "account"),
                 ("accounting_periods", "accountingPeriod"), ("items", "nonInventorySaleItem"),
                 ("customers", "customer"), ("invoices", "invoice"), ("credit_memos", "creditMemo"),
                 ("customer_payments", "customerPayment"), ("journal_entries", "journalEntry")]
        unknown = set(fixture) - {k for k, _ in kinds} - {"clock"}
        if unknown:
            raise ValueError(f"unknown fixture kinds: {', '.join(sorted(unknown))}; use {[k for k, _ in kinds]}")
        counts: dict[str, int] = {}
        with self.store.lock:
            for kind, rtype in kinds:
                for n, entry in enumerate(fixture.get(kind) or []):
                    body = exact_json.loads(exact_json.dumps(_decimals(entry)))
                    pinned_id = body.pop("id", None)
                    modified = body.pop("lastModifiedDate", None)
                    try:
                        record = self.save(rtype, body, None)
                    except SandboxError as err:
                        raise ValueError(f"fixture {kind}[{n}]: {err.message}") from None
                    if pinned_id is not None:
                        self.store.delete(rtype, record["id"])
                        record["id"] = str(pinned_id)
                        self.store.put(rtype, record)
                    if modified is not None:
                        stamp = datetime.fromisoformat(str(modified).replace("Z", "+00:00"))
                        record["_modified"] = stamp
                        record["lastModifiedDate"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
                counts[kind] = len(fixture.get(kind) or [])
        return counts

    def reset(self) -> None:
        super().reset()
        self.bearer_tokens.clear()
        self._next_id = 100


def _decimals(value: Any) -> Any:
    """Fixture values (YAML floats included) as exact decimals."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def _body(doc: dict[str, Any]) -> bytes:
    return exact_json.dumps(doc).encode()


def standard_fixture() -> dict[str, Any]:
    """A small OneWorld account: a US subsidiary, a chart of accounts, 2026 periods, one item."""
    periods = []
    for month in range(1, 13):
        start = date(2026, month, 1)
        end = date(2026 + month // 12, month % 12 + 1, 1).toordinal() - 1
        periods.append({"id": str(200 + month), "periodName": start.strftime("%b %Y"),
                        "startDate": start.isoformat(), "endDate": date.fromordinal(end).isoformat()})
    return {
        "currencies": [{"id": "1", "symbol": "USD", "name": "US Dollar"}, {"id": "2", "symbol": "GBP"},
                       {"id": "3", "symbol": "CAD"}, {"id": "4", "symbol": "EUR"}],
        "subsidiaries": [{"id": "1", "name": "Parent Company", "currency": {"id": "1"}}],
        "accounts": [
            {"id": "11", "acctNumber": "1000", "acctName": "Operating Cash", "acctType": {"id": "Bank"}},
            {"id": "12", "acctNumber": "1200", "acctName": "Accounts Receivable", "acctType": {"id": "AcctRec"}},
            {"id": "13", "acctNumber": "1300", "acctName": "Unbilled Receivable", "acctType": {"id": "OthCurrAsset"}},
            {"id": "21", "acctNumber": "2400", "acctName": "Deferred Revenue", "acctType": {"id": "DeferRevenue"}},
            {"id": "22", "acctNumber": "2200", "acctName": "Sales Tax Payable", "acctType": {"id": "OthCurrLiab"}},
            {"id": "41", "acctNumber": "4000", "acctName": "Subscription Revenue", "acctType": {"id": "Income"}},
            {"id": "42", "acctNumber": "4100", "acctName": "Usage Revenue", "acctType": {"id": "Income"}},
        ],
        "accounting_periods": periods,
        "items": [{"id": "501", "itemId": "Subledger Billing", "displayName": "Billed by subledger"}],
    }
