"""The Salesforce sandbox: a local org for ``simple-salesforce`` to talk to.

Serves what the Salesforce connector uses, the way Salesforce does it:

* logins: SOAP ``login`` (username, password + security token) at
  ``/services/Soap/u/{version}``, and the OAuth token endpoint
  ``/services/oauth2/token`` for the username-password flow and the JWT bearer flow
  (the assertion's RS256 signature is checked against the connected app's certificate);
* REST ``query``/``queryAll`` with the SOQL subset of :mod:`.soql` (parsed, checked
  against the object's fields: an unknown field is ``INVALID_FIELD``, as in an org where
  the custom field was never created), ``nextRecordsUrl`` paging (``Sforce-Query-Options:
  batchSize=``), deleted records only through ``queryAll``;
* sobject describe (global and per object), create, retrieve (``?fields=``), update, delete;
* ``composite`` (subrequests in order, ``@{ref.id}`` references, ``allOrNone`` rollback);
* Bulk API 2.0 query jobs: create, poll, CSV results in pages with ``Sforce-Locator``;
* limits: every API response carries ``Sforce-Limit-Info: api-usage=n/limit``; past the
  limit (or on demand, :meth:`SalesforceSandbox.exhaust_limit`) requests get
  ``403 REQUEST_LIMIT_EXCEEDED``.

Errors are Salesforce's list documents (``[{"message", "errorCode", "fields"}]``).
No Salesforce SDK is needed to run it (``subledger sandbox serve salesforce``).
"""

from __future__ import annotations

import copy
import csv
import email.utils
import io
import json
import re
import secrets as pysecrets
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qs

from subledger.core.sandbox import Call, Fault, Headers, Request, Response, Router, Sandbox, SandboxClock, SandboxError
from subledger.core.sandbox.faults import shaped_response
from subledger.plugins.salesforce.sandbox_schema import NUMERIC, READ_ONLY, SOBJECTS, describe_field
from subledger.plugins.salesforce.soql import BoolExpr, Condition, Query, SoqlError, parse, parse_datetime

API_VERSION = "59.0"
DEFAULT_USERNAME = "integration@subledger.example"
DEFAULT_PASSWORD = "sandbox-password"
DEFAULT_TOKEN = "sandboxtoken"
DEFAULT_CONSUMER_KEY = "3MVG9subledger.sandbox.consumer"
DEFAULT_CONSUMER_SECRET = "sandbox-consumer-secret"
ORG_ID = "00D5g000000SUBLDG"
DEFAULT_API_LIMIT = 15000
MAX_BATCH = 2000
MIN_BATCH = 200
_VERSION = re.compile(r"^v\d+\.\d$")
_REF = re.compile(r"@\{([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\}")
_SOAP_NS = {"env": "http://schemas.xmlsoap.org/soap/envelope/", "n1": "urn:partner.soap.sforce.com"}


def sf_error(status: int, message: str, code: str, fields: list[str] | None = None,
             headers: dict[str, str] | None = None) -> SandboxError:
    """A Salesforce REST error (rendered as ``[{"message", "errorCode", "fields"}]``)."""
    err = SandboxError(status, message, code=code, headers=headers)
    err.param = ",".join(fields or []) or None
    return err


def wire_datetime(moment: datetime) -> str:
    """Salesforce's datetime format: ``2026-01-01T00:00:00.000+0000``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 10**15 else float(value)
    return value


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}T.*\+0000", value):
        return value.replace("+0000", "Z")
    return str(value)


class SalesforceSandbox(Sandbox):
    """A local Salesforce org.

    Args:
        users: accepted logins, ``{username: (password, security_token)}``.
        consumers: connected apps, ``{consumer_key: {"secret": ..., "certificate": PEM public key}}``;
            the JWT bearer flow needs a certificate.
        api_limit: the org's daily API request allowance (``Sforce-Limit-Info``).
        max_batch_size: the largest query page (Salesforce: 2000; tests page with less).
        bulk_polls: how many job polls answer ``InProgress`` before a query job completes.
        clock, fixture, random_seed, log_size: see :class:`~subledger.core.sandbox.Sandbox`.
    """

    name: ClassVar[str] = "salesforce"
    title: ClassVar[str] = f"Salesforce (REST and Bulk 2.0 API v{API_VERSION}, SOAP and OAuth logins)"

    def __init__(
        self,
        *,
        users: dict[str, tuple[str, str]] | None = None,
        consumers: dict[str, dict[str, str]] | None = None,
        api_limit: int = DEFAULT_API_LIMIT,
        max_batch_size: int = MAX_BATCH,
        bulk_polls: int = 0,
        clock: SandboxClock | None = None,
        fixture: Any = None,
        random_seed: int | None = None,
        log_size: int = 10_000,
    ) -> None:
        self.users = dict(users or {DEFAULT_USERNAME: (DEFAULT_PASSWORD, DEFAULT_TOKEN)})
        self.consumers = dict(consumers or {DEFAULT_CONSUMER_KEY: {"secret": DEFAULT_CONSUMER_SECRET}})
        self.api_limit = api_limit
        self.api_used = 0
        self.max_batch_size = max_batch_size
        self.bulk_polls = bulk_polls
        self.sessions: dict[str, str] = {}
        self._cursors: dict[str, tuple[list[dict[str, Any]], int]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        super().__init__(clock=clock, fixture=fixture, random_seed=random_seed, log_size=log_size)

    # -- framework hooks ------------------------------------------------------------------

    def build_routes(self, router: Router) -> None:
        router.add("POST", "/services/Soap/u/{version}", self.soap_login)
        router.add("POST", "/services/oauth2/token", self.oauth_token)
        d = "/services/data/{version}"
        router.add("GET", "/services/data", self.versions)
        router.add("GET", f"{d}/limits", self.limits)
        router.add("GET", f"{d}/query", lambda c: self.query(c, deleted=False))
        router.add("GET", f"{d}/queryAll", lambda c: self.query(c, deleted=True))
        router.add("GET", f"{d}/query/{{locator}}", self.query_more)
        router.add("GET", f"{d}/queryAll/{{locator}}", self.query_more)
        router.add("GET", f"{d}/sobjects", self.describe_global)
        router.add("GET", f"{d}/sobjects/{{sobject}}/describe", self.describe)
        router.add("POST", f"{d}/sobjects/{{sobject}}", self.create)
        router.add("GET", f"{d}/sobjects/{{sobject}}/{{id}}", self.retrieve)
        router.add("PATCH", f"{d}/sobjects/{{sobject}}/{{id}}", self.update)
        router.add("DELETE", f"{d}/sobjects/{{sobject}}/{{id}}", self.delete)
        router.add("POST", f"{d}/composite", self.composite)
        router.add("POST", f"{d}/jobs/query", self.create_job)
        router.add("GET", f"{d}/jobs/query/{{job}}", self.get_job)
        router.add("GET", f"{d}/jobs/query/{{job}}/results", self.job_results)

    def authenticate(self, request: Request) -> Any:
        if not request.path.startswith("/services/data/") or request.path == "/services/data":
            return None
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        user = self.sessions.get(token)
        if user is None:
            raise sf_error(401, "Session expired or invalid", "INVALID_SESSION_ID")
        version = request.path.split("/")[3]
        if not _VERSION.match(version):
            raise sf_error(404, "The requested resource does not exist", "NOT_FOUND")
        self.api_used += 1
        if self.api_used > self.api_limit:
            raise sf_error(403, "TotalRequests Limit exceeded.", "REQUEST_LIMIT_EXCEEDED")
        return user

    def render_error(self, error: SandboxError) -> Response:
        headers = dict(error.headers)
        if error.kind == "oauth":
            return Response(error.status, {"error": error.code, "error_description": error.message}, headers)
        if error.kind == "soap":
            return Response(error.status, _soap_fault(error.code or "UNKNOWN_EXCEPTION", error.message),
                            {**headers, "Content-Type": "text/xml; charset=utf-8"})
        body: dict[str, Any] = {"message": error.message, "errorCode": error.code or "UNKNOWN_EXCEPTION"}
        if error.param:
            body["fields"] = error.param.split(",")
        return Response(error.status, [body], headers)

    def fault_response(self, fault: Fault) -> Response:
        # A rule with its own body answers like a proxy in front of the vendor would.
        return shaped_response(fault, self._vendor_fault_response(fault))

    def _vendor_fault_response(self, fault: Fault) -> Response:
        # Salesforce has no 429: running out of API requests is a 403 REQUEST_LIMIT_EXCEEDED.
        if fault.kind == "rate_limit":
            response = self.render_error(sf_error(403, "ConcurrentPerOrgLongTxn Limit exceeded.",
                                                  "REQUEST_LIMIT_EXCEEDED"))
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
        else:
            response = self.render_error(sf_error(fault.status, "An unexpected error occurred. Please include "
                                                  "this ErrorId if you contact support: 1234-sandbox",
                                                  "UNKNOWN_EXCEPTION" if fault.status >= 500 else "NOT_FOUND"
                                                  if fault.status == 404 else "INVALID_AUTH_HEADER"
                                                  if fault.status == 401 else "BAD_REQUEST"))
        response.headers.update(fault.headers)
        return response

    def dispatch(self, request: Request) -> tuple[Response, bool]:
        response, replayed = super().dispatch(request)
        if request.path.startswith("/services/data/v"):
            response.headers.setdefault("Sforce-Limit-Info", f"api-usage={min(self.api_used, self.api_limit)}"
                                        f"/{self.api_limit}")
        return response, replayed

    def connection_hint(self, url: str) -> dict[str, Any]:
        return {"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD, "security_token": DEFAULT_TOKEN,
                "base_url": url}

    def reset(self) -> None:
        super().reset()
        self.sessions.clear()
        self._cursors.clear()
        self._jobs.clear()
        self.api_used = 0

    def exhaust_limit(self) -> None:
        """Use up the org's API allowance: every API request now gets ``REQUEST_LIMIT_EXCEEDED``."""
        self.api_used = self.api_limit

    # -- logins ---------------------------------------------------------------------------

    def _instance_url(self, request: Request) -> str:
        return f"https://{request.headers.get('host') or '127.0.0.1'}"

    def _new_session(self, user: str) -> str:
        token = f"{ORG_ID}!{pysecrets.token_urlsafe(24)}"
        self.sessions[token] = user
        return token

    def soap_login(self, call: Call) -> Response:
        try:
            root = ET.fromstring(call.request.body)
        except ET.ParseError:
            raise SandboxError(500, "Unable to parse the SOAP request", code="INVALID_REQUEST", kind="soap") from None
        username = root.findtext(".//n1:username", namespaces=_SOAP_NS) or ""
        secret = root.findtext(".//n1:password", namespaces=_SOAP_NS) or ""
        known = self.users.get(username)
        if known is None or secret != known[0] + known[1]:
            raise SandboxError(500, "INVALID_LOGIN: Invalid username, password, security token; or user locked out.",
                               code="sf:INVALID_LOGIN", kind="soap")
        session = self._new_session(username)
        server = f"{self._instance_url(call.request)}/services/Soap/u/{call['version']}/{ORG_ID}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com">'
            "<soapenv:Body><loginResponse><result><metadataServerUrl>"
            f"{server}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{server}</serverUrl><sessionId>{session}</sessionId><userId>0055g00000SUBLDG</userId>"
            f"<userInfo><organizationId>{ORG_ID}</organizationId><userName>{username}</userName></userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return Response(200, body.encode(), {"Content-Type": "text/xml; charset=utf-8"})

    def oauth_token(self, call: Call) -> dict[str, Any]:
        form = {k: v[0] for k, v in parse_qs(call.request.body.decode()).items()}
        grant = form.get("grant_type")
        if grant == "password":
            app = self.consumers.get(form.get("client_id", ""))
            if app is None or app.get("secret") != form.get("client_secret"):
                raise SandboxError(400, "invalid client credentials", code="invalid_client", kind="oauth")
            known = self.users.get(form.get("username", ""))
            if known is None or form.get("password") not in (known[0], known[0] + known[1]):
                raise SandboxError(400, "authentication failure", code="invalid_grant", kind="oauth")
            user = form["username"]
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            user = self._jwt_user(form.get("assertion", ""))
        else:
            raise SandboxError(400, "grant type not supported", code="unsupported_grant_type", kind="oauth")
        return {"access_token": self._new_session(user), "instance_url": self._instance_url(call.request),
                "id": f"https://login.salesforce.com/id/{ORG_ID}/0055g00000SUBLDG", "token_type": "Bearer",
                "issued_at": str(int(self.clock.time() * 1000)), "signature": "sandbox"}

    def _jwt_user(self, assertion: str) -> str:
        import jwt  # PyJWT; imported here so the sandbox serves without it unless JWT logins are used

        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            app = self.consumers.get(str(claims.get("iss")))
            if app is None or not app.get("certificate"):
                raise SandboxError(400, "client identifier invalid", code="invalid_client_id", kind="oauth")
            claims = jwt.decode(assertion, app["certificate"], algorithms=["RS256"],
                                audience=["https://login.salesforce.com", "https://test.salesforce.com"],
                                options={"verify_exp": False})
        except jwt.PyJWTError as exc:
            raise SandboxError(400, f"invalid assertion: {exc}", code="invalid_grant", kind="oauth") from None
        if int(claims.get("exp", 0)) < self.clock.time():
            raise SandboxError(400, "expired authorization code", code="invalid_grant", kind="oauth")
        user = str(claims.get("sub"))
        if user not in self.users:
            raise SandboxError(400, "user hasn't approved this consumer", code="invalid_grant", kind="oauth")
        return user

    # -- REST ----------------------------------------------------------------------------

    def versions(self, call: Call) -> list[dict[str, str]]:
        return [{"label": "Winter '24", "url": f"/services/data/v{API_VERSION}", "version": API_VERSION}]

    def limits(self, call: Call) -> dict[str, Any]:
        return {"DailyApiRequests": {"Max": self.api_limit, "Remaining": max(0, self.api_limit - self.api_used)}}

    def _schema(self, sobject: str) -> dict[str, Any]:
        for name, schema in SOBJECTS.items():
            if name.lower() == sobject.lower():
                return {"name": name, **schema}
        raise sf_error(404, f"The requested resource does not exist: sObject type '{sobject}' is not supported.",
                       "NOT_FOUND")

    def _field(self, schema: dict[str, Any], name: str) -> str:
        for known in schema["fields"]:
            if known.lower() == name.lower():
                return str(known)
        raise sf_error(400, f"No such column '{name}' on entity '{schema['name']}'. If you are attempting to use a "
                       "custom field, be sure to append the '__c' after the custom field name. Please reference "
                       "your WSDL or the describe call for the appropriate names.", "INVALID_FIELD")

    def describe_global(self, call: Call) -> dict[str, Any]:
        return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
            {"name": n, "label": s["label"], "keyPrefix": s["prefix"], "queryable": True, "updateable": True,
             "createable": True, "custom": False, "urls": {"sobject": f"/services/data/{call['version']}/sobjects/{n}"}}
            for n, s in SOBJECTS.items()]}

    def describe(self, call: Call) -> dict[str, Any]:
        schema = self._schema(call["sobject"])
        return {"name": schema["name"], "label": schema["label"], "keyPrefix": schema["prefix"], "queryable": True,
                "updateable": True, "createable": True, "custom": False,
                "fields": [describe_field(n, k) for n, k in schema["fields"].items()]}

    def _coerce(self, schema: dict[str, Any], name: str, value: Any) -> Any:
        """A field value as the sandbox keeps it (numbers exact; dates and datetimes as Salesforce prints them)."""
        kind = schema["fields"][name]
        if value is None or value == "":
            return None
        try:
            if kind in NUMERIC:
                if isinstance(value, bool):
                    raise ValueError
                return Decimal(str(value))
            if kind == "boolean":
                if isinstance(value, bool):
                    return value
                if str(value).lower() in ("true", "false"):
                    return str(value).lower() == "true"
                raise ValueError
            if kind == "date":
                return date.fromisoformat(str(value)).isoformat()
            if kind == "datetime":
                return wire_datetime(parse_datetime(str(value)))
        except (ValueError, InvalidOperation):
            raise sf_error(400, f"{name}: value not of required type: {value}", "JSON_PARSER_ERROR"
                           if kind != "date" else "INVALID_TYPE_ON_FIELD_IN_RECORD", [name]) from None
        return str(value)

    def insert(self, sobject: str, fields: dict[str, Any], *, record_id: str | None = None,
               system: bool = False) -> dict[str, Any]:
        """Create a record (``system``: may set read-only fields, as a seed does)."""
        schema = self._schema(sobject)
        now = wire_datetime(datetime.fromtimestamp(self.clock.time(), UTC))
        record: dict[str, Any] = {n: None for n in schema["fields"]}
        record.update({"Id": record_id or self.store.new_id(schema["prefix"] + "5g00000", 8),
                       "IsDeleted": False, "CreatedDate": now, "LastModifiedDate": now, "SystemModstamp": now})
        for key, value in fields.items():
            name = self._field(schema, key)
            if name in READ_ONLY and not system:
                raise sf_error(400, f"Unable to create/update fields: {name}. Please check the security settings "
                               "of this field and verify that it is read/write for your profile or permission set.",
                               "INVALID_FIELD_FOR_INSERT_UPDATE", [name])
            record[name] = self._coerce(schema, name, value)
        missing = [n for n in schema.get("required", []) if record.get(n) in (None, "")]
        if missing:
            raise sf_error(400, f"Required fields are missing: [{', '.join(missing)}]", "REQUIRED_FIELD_MISSING",
                           missing)
        self._derive(schema["name"], record)
        return self.store.put(schema["name"], record, key="Id")

    def _derive(self, sobject: str, record: dict[str, Any]) -> None:
        """Formula-like fields Salesforce computes."""
        if sobject == "Opportunity":
            stage = record.get("StageName") or ""
            record["IsClosed"] = stage.startswith("Closed")
            record["IsWon"] = stage == "Closed Won"
        elif sobject == "OpportunityLineItem":
            qty, price = record.get("Quantity"), record.get("UnitPrice")
            record["TotalPrice"] = None if qty is None or price is None else qty * price
        elif sobject == "Contract":
            record["StatusCode"] = {"Activated": "Activated", "Draft": "Draft", "In Approval Process": "InApproval",
                                    "Expired": "Expired", "Terminated": "Terminated"}.get(record.get("Status") or "",
                                                                                          "Draft")
            if record.get("ContractNumber") is None:
                record["ContractNumber"] = f"{len(self.store.collection('Contract')) + 1:08d}"
            start, term = record.get("StartDate"), record.get("ContractTerm")
            if start and term is not None and record.get("_end_pinned") is None:
                record["EndDate"] = _add_months(date.fromisoformat(start), int(term)).isoformat()

    def _live(self, sobject: str, rid: str) -> dict[str, Any]:
        schema = self._schema(sobject)
        record = self.store.get(schema["name"], rid)
        if record is None or record.get("IsDeleted"):
            raise sf_error(404, "The requested resource does not exist", "NOT_FOUND")
        return record

    def create(self, call: Call) -> Response:
        body = call.request.json
        if not isinstance(body, dict):
            raise sf_error(400, "The request body must be a JSON object", "JSON_PARSER_ERROR")
        record = self.insert(call["sobject"], body)
        return Response(201, {"id": record["Id"], "success": True, "errors": []})

    def _render(self, sobject: str, record: dict[str, Any], fields: list[str] | None, version: str) -> dict[str, Any]:
        names = fields if fields is not None else [n for n in record if not n.startswith("_")]
        out: dict[str, Any] = {"attributes": {"type": sobject,
                                              "url": f"/services/data/{version}/sobjects/{sobject}/{record['Id']}"}}
        for name in names:
            out[name] = _json_value(record.get(name))
        return out

    def retrieve(self, call: Call) -> dict[str, Any]:
        schema = self._schema(call["sobject"])
        record = self._live(schema["name"], call["id"])
        wanted = call.request.query.get("fields")
        fields = [self._field(schema, f.strip()) for f in str(wanted).split(",")] if wanted else None
        return self._render(schema["name"], record, fields, call["version"])

    def modify(self, sobject: str, rid: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Update a record as a PATCH does (and bump ``SystemModstamp``)."""
        schema = self._schema(sobject)
        record = self._live(schema["name"], rid)
        updated = dict(record)
        for key, value in changes.items():
            name = self._field(schema, key)
            if name in READ_ONLY:
                raise sf_error(400, f"Unable to create/update fields: {name}.", "INVALID_FIELD_FOR_INSERT_UPDATE",
                               [name])
            updated[name] = self._coerce(schema, name, value)
        now = wire_datetime(datetime.fromtimestamp(self.clock.time(), UTC))
        updated["LastModifiedDate"] = updated["SystemModstamp"] = now
        self._derive(schema["name"], updated)
        return self.store.put(schema["name"], updated, key="Id")

    def update(self, call: Call) -> Response:
        body = call.request.json
        if not isinstance(body, dict):
            raise sf_error(400, "The request body must be a JSON object", "JSON_PARSER_ERROR")
        condition = call.request.headers.get("if-unmodified-since")
        if condition:
            record = self._live(call["sobject"], call["id"])
            modified = parse_datetime(record["LastModifiedDate"]).replace(microsecond=0)
            if modified > email.utils.parsedate_to_datetime(condition):
                raise sf_error(412, "The requested resource has been modified since the If-Unmodified-Since time",
                               "PRECONDITION_FAILED")
        self.modify(call["sobject"], call["id"], body)
        return Response(204, None)

    def delete(self, call: Call) -> Response:
        schema = self._schema(call["sobject"])
        record = dict(self._live(schema["name"], call["id"]))
        record["IsDeleted"] = True
        record["SystemModstamp"] = wire_datetime(datetime.fromtimestamp(self.clock.time(), UTC))
        self.store.put(schema["name"], record, key="Id")
        return Response(204, None)

    # -- SOQL -----------------------------------------------------------------------------

    def run_soql(self, text: str, *, deleted: bool) -> tuple[Query, list[dict[str, Any]] | int]:
        """Parse, check and evaluate a query: the matching records (or the count)."""
        try:
            query = parse(text)
        except SoqlError as exc:
            raise sf_error(400, f"MALFORMED_QUERY: {exc}", "MALFORMED_QUERY") from None
        schema = self._schema(query.sobject)
        query.sobject = schema["name"]
        query.fields = [self._field(schema, f) for f in query.fields]
        for cond_field in query.condition_fields():
            if schema["fields"][self._field(schema, cond_field)] == "textarea":
                raise sf_error(400, f"field '{cond_field}' can not be filtered in a query call", "INVALID_FIELD")
        query.order_by = [(self._field(schema, f), d) for f, d in query.order_by]
        records = [r for r in self.store.collection(schema["name"]).values()
                   if (deleted or not r.get("IsDeleted")) and self._matches(schema, r, query.where)]
        for name, desc in reversed(query.order_by):
            records.sort(key=lambda r, n=name: (r.get(n) is None, self._sort_value(schema, n, r.get(n))), reverse=desc)
        if not query.order_by:
            records.sort(key=lambda r: self.store.seq(schema["name"], r["Id"]))
        records = records[query.offset:]
        if query.limit is not None:
            records = records[:query.limit]
        if query.count:
            return query, len(records)
        return query, [self._render(schema["name"], r, query.fields, f"v{API_VERSION}") for r in records]

    def _sort_value(self, schema: dict[str, Any], name: str, value: Any) -> Any:
        if value is None:
            return ""
        if schema["fields"][name] == "datetime":
            return parse_datetime(value)
        return value

    def _matches(self, schema: dict[str, Any], record: dict[str, Any], node: Condition | BoolExpr | None) -> bool:
        if node is None:
            return True
        if isinstance(node, BoolExpr):
            results = (self._matches(schema, record, p) for p in node.parts)
            return all(results) if node.op == "AND" else any(results)
        name = self._field(schema, node.field)
        kind = schema["fields"][name]
        actual = record.get(name)

        def comparable(value: Any) -> Any:
            if value is None:
                return None
            if kind == "datetime":
                return value if isinstance(value, datetime) else parse_datetime(str(value))
            if kind == "date":
                return value if isinstance(value, date) else date.fromisoformat(str(value))
            if kind in NUMERIC:
                return Decimal(str(value))
            return value

        try:
            left = comparable(actual)
            if node.op in ("IN", "NOT IN"):
                found = left in [comparable(v) for v in node.value]
                return found if node.op == "IN" else not found
            right = comparable(node.value)
        except (ValueError, InvalidOperation):
            raise sf_error(400, f"value of filter criterion for field '{name}' must be of type {kind}",
                           "INVALID_QUERY_FILTER_OPERATOR") from None
        if node.op == "=":
            return left == right
        if node.op == "!=":
            return left != right
        if left is None or right is None:
            return False
        try:
            return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[node.op]
        except TypeError:
            raise sf_error(400, f"value of filter criterion for field '{name}' must be of type {kind}",
                           "INVALID_QUERY_FILTER_OPERATOR") from None

    def _batch_size(self, request: Request) -> int:
        options = request.headers.get("sforce-query-options") or ""
        m = re.search(r"batchSize=(\d+)", options)
        size = int(m.group(1)) if m else MAX_BATCH
        return max(1, min(max(size, MIN_BATCH), self.max_batch_size))

    def query(self, call: Call, *, deleted: bool) -> dict[str, Any]:
        text = call.request.query.get("q")
        if not text:
            raise sf_error(400, "MALFORMED_QUERY: no query given (the q parameter)", "MALFORMED_QUERY")
        _, result = self.run_soql(str(text), deleted=deleted)
        if isinstance(result, int):
            return {"totalSize": result, "done": True, "records": []}
        return self._page(call, result, 0, deleted)

    def _page(self, call: Call, records: list[dict[str, Any]], start: int, deleted: bool) -> dict[str, Any]:
        size = self._batch_size(call.request)
        chunk = records[start:start + size]
        done = start + size >= len(records)
        page: dict[str, Any] = {"totalSize": len(records), "done": done, "records": chunk}
        if not done:
            locator = f"01g5g{pysecrets.token_hex(6)}"
            self._cursors[locator] = (records, start + size)
            endpoint = "queryAll" if deleted else "query"
            page["nextRecordsUrl"] = f"/services/data/{call['version']}/{endpoint}/{locator}-{start + size}"
        return page

    def query_more(self, call: Call) -> dict[str, Any]:
        locator = call["locator"].split("-")[0]
        if locator not in self._cursors:
            raise sf_error(400, "invalid query locator", "INVALID_QUERY_LOCATOR")
        records, start = self._cursors.pop(locator)
        return self._page(call, records, start, call.request.path.split("/")[4] == "queryAll")

    # -- composite -----------------------------------------------------------------------

    def composite(self, call: Call) -> dict[str, Any]:
        body = call.request.json or {}
        subrequests = body.get("compositeRequest")
        if not isinstance(subrequests, list) or not subrequests or len(subrequests) > 25:
            raise sf_error(400, "compositeRequest must list 1 to 25 subrequests", "INVALID_INPUT")
        all_or_none = bool(body.get("allOrNone"))
        snapshot = copy.deepcopy(self.store.dump()) if all_or_none else None
        results: dict[str, Any] = {}
        responses: list[dict[str, Any]] = []
        failed = False
        for sub in subrequests:
            ref = sub.get("referenceId")
            if failed and all_or_none:
                responses.append({"body": [{"errorCode": "PROCESSING_HALTED",
                                            "message": "The transaction was rolled back since another operation in "
                                            "the same transaction failed."}],
                                  "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref})
                continue
            url = _REF.sub(lambda m: str((results.get(m.group(1)) or {}).get(m.group(2), "")), str(sub.get("url")))
            payload = sub.get("body")
            raw = b"" if payload is None else _dumps(payload).encode()
            inner_headers = {**call.request.headers, **(sub.get("httpHeaders") or {}),
                             "content-type": "application/json"}
            inner = Request(method=str(sub.get("method", "GET")).upper(), target=url,
                            headers=Headers(inner_headers.items()), body=raw)
            try:
                route, params = self.router.resolve(inner.method, inner.path)
                result = route.handler(Call(inner, inner.params(), params, call.principal, self))
                response = result if isinstance(result, Response) else Response(200, result)
            except SandboxError as err:
                response = self.render_error(err)
            if response.status >= 400:
                failed = True
            if isinstance(response.body, dict):
                results[ref] = response.body
            responses.append({"body": response.body, "httpHeaders": {}, "httpStatusCode": response.status,
                              "referenceId": ref})
        if failed and snapshot is not None:
            self.store.clear()
            for name, items in snapshot.items():
                for item in items:
                    self.store.put(name, item, key="Id")
            for entry in responses:
                if entry["httpStatusCode"] < 400:
                    entry["httpStatusCode"] = 400
                    entry["body"] = [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back "
                                      "since another operation in the same transaction failed."}]
        return {"compositeResponse": responses}

    # -- Bulk API 2.0 query jobs -----------------------------------------------------------

    def create_job(self, call: Call) -> dict[str, Any]:
        body = call.request.json or {}
        operation = body.get("operation")
        if operation not in ("query", "queryAll"):
            raise sf_error(400, f"Invalid operation: {operation}", "INVALIDJOB")
        if body.get("columnDelimiter", "COMMA") != "COMMA" or body.get("lineEnding", "LF") not in ("LF", "CRLF"):
            raise sf_error(400, "the sandbox supports columnDelimiter COMMA only", "INVALIDJOB")
        query, rows = self.run_soql(str(body.get("query") or ""), deleted=operation == "queryAll")
        if isinstance(rows, int):
            raise sf_error(400, "COUNT() is not supported in Bulk API query jobs", "INVALIDJOB")
        now = wire_datetime(datetime.fromtimestamp(self.clock.time(), UTC))
        job = {"id": self.store.new_id("7505g00000", 8), "operation": operation, "object": query.sobject,
               "createdById": "0055g00000SUBLDG", "createdDate": now, "systemModstamp": now,
               "state": "UploadComplete", "concurrencyMode": "Parallel", "contentType": "CSV",
               "apiVersion": float(API_VERSION), "lineEnding": body.get("lineEnding", "LF"),
               "columnDelimiter": "COMMA"}
        self._jobs[job["id"]] = {"info": job, "fields": query.fields, "rows": rows, "polls": 0}
        return job

    def _job(self, call: Call) -> dict[str, Any]:
        job = self._jobs.get(call["job"])
        if job is None:
            raise sf_error(404, "The requested resource does not exist", "NOT_FOUND")
        return job

    def get_job(self, call: Call) -> dict[str, Any]:
        job = self._job(call)
        job["polls"] += 1
        info = dict(job["info"])
        info["state"] = "JobComplete" if job["polls"] > self.bulk_polls else "InProgress"
        if info["state"] == "JobComplete":
            info.update(numberRecordsProcessed=len(job["rows"]), retries=0, totalProcessingTime=1)
        job["info"]["state"] = info["state"]
        return info

    def job_results(self, call: Call) -> Response:
        job = self._job(call)
        if job["info"]["state"] != "JobComplete":
            raise sf_error(400, "the job is not complete", "INVALIDJOB")
        params = call.request.query
        try:
            limit = int(params.get("maxRecords") or 50000)
            start = int(params.get("locator") or 0)
        except ValueError:
            raise sf_error(400, "invalid locator or maxRecords", "INVALID_LOCATOR") from None
        rows = job["rows"][start:start + limit]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n" if job["info"]["lineEnding"] == "LF" else "\r\n",
                            quoting=csv.QUOTE_ALL)
        writer.writerow(job["fields"])
        for row in rows:
            writer.writerow([_csv_value(row.get(f)) for f in job["fields"]])
        following = start + limit
        locator = str(following) if following < len(job["rows"]) else "null"
        return Response(200, out.getvalue().encode(), {"Content-Type": "text/csv", "Sforce-Locator": locator,
                                                       "Sforce-NumberOfRecords": str(len(rows))})

    # -- seeding --------------------------------------------------------------------------

    def seed(self, fixture: dict[str, Any]) -> dict[str, int]:
        """Create records: ``{"Account": [{...fields, "Id": optional}], "Opportunity": [...], ...}``.

        ``clock`` (Unix seconds) freezes the sandbox time first. Objects are created in the
        order Product2, Pricebook2, PricebookEntry, Account, Contract, Opportunity,
        OpportunityLineItem so references resolve; read-only fields (``EndDate``,
        ``SystemModstamp``) may be pinned.
        """
        counts: dict[str, int] = {}
        with self.store.lock:
            if "clock" in fixture:
                self.clock.freeze(float(fixture["clock"]))
            unknown = set(fixture) - set(SOBJECTS) - {"clock"}
            if unknown:
                raise ValueError(f"unknown fixture kinds {sorted(unknown)}; use {sorted(SOBJECTS)}")
            order = ["Product2", "Pricebook2", "PricebookEntry", "Account", "Contract", "Opportunity",
                     "OpportunityLineItem"]
            for kind in order:
                for index, entry in enumerate(fixture.get(kind) or []):
                    fields = dict(entry)
                    rid = fields.pop("Id", None)
                    pinned = {k: fields.pop(k) for k in ("EndDate", "SystemModstamp") if k in fields}
                    try:
                        record = self.insert(kind, fields, record_id=rid, system=True)
                    except SandboxError as err:
                        raise ValueError(f"fixture {kind}[{index}]: {err.message}") from None
                    if pinned:
                        if "EndDate" in pinned:
                            record["_end_pinned"] = True
                        record.update({k: self._coerce(self._schema(kind), k, v) for k, v in pinned.items()})
                    counts[kind] = counts.get(kind, 0) + 1
        return counts


def _add_months(start: date, months: int) -> date:
    """The day before ``start`` + ``months`` (Salesforce's contract end date)."""
    month = start.month - 1 + months
    year, month = start.year + month // 12, month % 12 + 1
    day = min(start.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30,
                          31, 31, 30, 31, 30, 31][month - 1])
    return date(year, month, day) - timedelta(days=1)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def _soap_fault(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com">'
        f"<soapenv:Body><soapenv:Fault><faultcode>{code}</faultcode><faultstring>{message}</faultstring>"
        f"<detail><sf:LoginFault><sf:exceptionCode>{code.removeprefix('sf:')}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{message}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault>"
        "</soapenv:Body></soapenv:Envelope>"
    ).encode()

