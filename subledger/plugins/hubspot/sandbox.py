"""The HubSpot sandbox: a stateful local HubSpot CRM API for ``hubspot-api-client`` to talk to.

Serves the CRM v3 object endpoints (``/crm/v3/objects/{objectType}``: list with ``after``
paging, get, create, update, search, batch read and batch update) for companies, deals,
line items and products, and the v4 associations endpoints the SDK calls (list, batch
read, default create). Shapes follow the SDK's own models (``hubspot.crm.objects.models``,
``hubspot.crm.associations.v4.models``), since HubSpot's OpenAPI documents may not be
redistributed; ``tests/plugins/hubspot`` checks that the SDK deserializes every answer
without loss.

Like HubSpot it keeps ``hs_lastmodifieddate`` on every object (strictly increasing here,
so incremental reads are testable), caps search results at 10,000 (``search_cap``), sends
the ``X-HubSpot-RateLimit-*`` headers on every answer, answers 429 when the optional
``rate_limit`` per interval is exceeded, and formats errors as HubSpot does
(``status``, ``message``, ``correlationId``, ``category``).

No HubSpot SDK is needed to run it (``subledger sandbox serve hubspot``).
"""

from __future__ import annotations

import uuid
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qs

from subledger.core.sandbox import Call, Fault, Request, Response, Router, Sandbox, SandboxError
from subledger.core.sandbox.faults import shaped_response
from subledger.core.sandbox.store import decode_token, encode_token

DEFAULT_TOKEN = "pat-na1-subledger-sandbox-0000"
"""The private-app token the sandbox accepts unless given others (it is not a secret)."""

# objectType path values: the name, or HubSpot's object type id.
OBJECT_TYPES = {
    "companies": "companies", "0-2": "companies",
    "deals": "deals", "0-3": "deals",
    "line_items": "line_items", "0-8": "line_items",
    "products": "products", "0-7": "products",
}
TYPE_IDS = {"companies": "0-2", "deals": "0-3", "line_items": "0-8", "products": "0-7"}
DEFAULT_PROPERTIES = {
    "companies": ("name", "domain"),
    "deals": ("dealname", "amount", "closedate", "pipeline", "dealstage"),
    "line_items": ("name", "price", "quantity", "amount", "hs_product_id"),
    "products": ("name", "price", "description"),
}
ALWAYS = ("createdate", "hs_lastmodifieddate", "hs_object_id")
# HubSpot-defined association type ids (from -> to).
ASSOCIATION_TYPE_IDS = {
    ("deals", "companies"): 5, ("companies", "deals"): 6,
    ("deals", "line_items"): 19, ("line_items", "deals"): 20,
}
ASSOCIATION_TYPE_NAMES = {
    ("deals", "companies"): "deal_to_company", ("companies", "deals"): "company_to_deal",
    ("deals", "line_items"): "deal_to_line_item", ("line_items", "deals"): "line_item_to_deal",
}
OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY"}
LIST_LIMIT = 100
SEARCH_LIMIT = 200
BATCH_LIMIT = 100


def iso_ms(ms: int) -> str:
    """HubSpot's datetime text: ``2026-01-05T10:00:00.123Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_ms(value: Any) -> int | None:
    """Epoch milliseconds from HubSpot's datetime text, a ms number or a date."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class HubSpotSandbox(Sandbox):
    """A local HubSpot CRM (companies, deals, line items, products, associations).

    Args:
        tokens: private-app tokens accepted (default :data:`DEFAULT_TOKEN`), as a list (every
            scope) or a mapping of token to its scopes (``crm.objects.deals.read``, ...; None: all).
        search_cap: results a search can page through (HubSpot: 10,000).
        rate_limit: requests allowed per ``rate_interval_ms`` before a 429 (None: unlimited).
        rate_interval_ms: the rolling window of ``rate_limit`` (HubSpot: ten seconds).
        **kwargs: passed to :class:`~subledger.core.sandbox.Sandbox` (``fixture``, ``clock``...).
    """

    name: ClassVar[str] = "hubspot"
    title: ClassVar[str] = "HubSpot CRM API (v3 objects, search, batch; v4 associations)"

    def __init__(
        self,
        *,
        tokens: list[str] | dict[str, list[str] | None] | None = None,
        search_cap: int = 10_000,
        rate_limit: int | None = None,
        rate_interval_ms: int = 10_000,
        **kwargs: Any,
    ) -> None:
        granted = tokens if isinstance(tokens, dict) else dict.fromkeys(tokens or [DEFAULT_TOKEN])
        self.tokens: dict[str, set[str] | None] = {
            t: None if scopes is None else set(scopes) for t, scopes in granted.items()
        }
        self.search_cap = search_cap
        self.rate_limit = rate_limit
        self.rate_interval_ms = rate_interval_ms
        self._calls: deque[int] = deque()
        self._next_id = 1000
        self._last_ms = 0
        # (from type, from id) -> {to type: [to ids]}
        self.associations: dict[tuple[str, str], dict[str, list[str]]] = {}
        super().__init__(**kwargs)

    # -- vendor conventions ---------------------------------------------------------------

    def build_routes(self, r: Router) -> None:
        r.add("GET", "/crm/v3/objects/{objectType}", self.list_objects)
        r.add("POST", "/crm/v3/objects/{objectType}", self.create_object)
        r.add("POST", "/crm/v3/objects/{objectType}/search", self.search)
        r.add("POST", "/crm/v3/objects/{objectType}/batch/read", self.batch_read)
        r.add("POST", "/crm/v3/objects/{objectType}/batch/update", self.batch_update)
        r.add("GET", "/crm/v3/objects/{objectType}/{objectId}", self.get_object)
        r.add("PATCH", "/crm/v3/objects/{objectType}/{objectId}", self.update_object)
        r.add("GET", "/crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}", self.list_associations)
        r.add("PUT", "/crm/v4/objects/{objectType}/{objectId}/associations/default/{toObjectType}/{toObjectId}",
              self.create_default_association)
        r.add("POST", "/crm/v4/associations/{objectType}/{toObjectType}/batch/read", self.batch_read_associations)

    def authenticate(self, request: Request) -> str:
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise SandboxError(
                401, "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
                "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                code="INVALID_AUTHENTICATION",
            )
        return token

    def _allow(self, call: Call, kind: str, *, write: bool) -> None:
        """HubSpot's 403 when the token's private app lacks the object's scope."""
        scope = "e-commerce" if kind == "products" else f"crm.objects.{kind}.{'write' if write else 'read'}"
        granted = self.tokens.get(call.principal)
        if granted is not None and scope not in granted:
            raise SandboxError(403, "This app hasn't been granted all required scopes to make this call. "
                               f"Read more about required scopes here: https://developers.hubspot.com/scopes. "
                               f"Missing scope: {scope}", code="MISSING_SCOPES")

    def render_error(self, error: SandboxError) -> Response:
        body = {"status": "error", "message": error.message, "correlationId": str(uuid.uuid4()),
                "category": error.code or "VALIDATION_ERROR"}
        return Response(error.status, body, dict(error.headers))

    def fault_response(self, fault: Fault) -> Response:
        # A rule with its own body answers like a proxy in front of the vendor would.
        return shaped_response(fault, self._vendor_fault_response(fault))

    def _vendor_fault_response(self, fault: Fault) -> Response:
        response = super().fault_response(fault)
        if fault.kind == "rate_limit":
            response.body.update({"category": "RATE_LIMITS", "errorType": "RATE_LIMIT",
                                  "policyName": "TEN_SECONDLY_ROLLING",
                                  "message": "You have reached your ten_secondly_rolling limit."})
            response.headers.update(self._limit_headers(remaining=0))
        return response

    def dispatch(self, request: Request) -> tuple[Response, bool]:
        now = int(self.clock.time() * 1000)
        with self.store.lock:
            while self._calls and self._calls[0] <= now - self.rate_interval_ms:
                self._calls.popleft()
            self._calls.append(now)
            used = len(self._calls)
        if self.rate_limit is not None and used > self.rate_limit:
            window_end = self._calls[0] + self.rate_interval_ms
            response = self.render_error(SandboxError(429, "You have reached your ten_secondly_rolling limit.",
                                                      code="RATE_LIMITS"))
            response.body.update({"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"})
            response.headers.update(self._limit_headers(remaining=0))
            response.headers["Retry-After"] = str(max(1, -(-(window_end - now) // 1000)))
            return response, False
        response, replayed = super().dispatch(request)
        limit = self.rate_limit if self.rate_limit is not None else 190
        response.headers.update(self._limit_headers(remaining=max(0, limit - used)))
        return response, replayed

    def _limit_headers(self, *, remaining: int) -> dict[str, str]:
        limit = self.rate_limit if self.rate_limit is not None else 190
        return {
            "X-HubSpot-RateLimit-Max": str(limit),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.rate_interval_ms),
        }

    def connection_hint(self, url: str) -> dict[str, Any]:
        return {"access_token": DEFAULT_TOKEN, "base_url": url}

    def reset(self) -> None:
        super().reset()
        with self.store.lock:
            self.associations.clear()

    # -- objects --------------------------------------------------------------------------

    def _tick(self) -> int:
        """A modification time in ms, strictly later than the previous one."""
        self._last_ms = max(self._last_ms + 1, int(self.clock.time() * 1000))
        return self._last_ms

    def _type(self, value: str) -> str:
        kind = OBJECT_TYPES.get(value)
        if kind is None:
            raise SandboxError(400, f"Unable to infer object type from: {value}", code="VALIDATION_ERROR")
        return kind

    def _require(self, kind: str, oid: str) -> dict[str, Any]:
        obj = self.store.get(kind, str(oid))
        if obj is None or obj.get("archived"):
            raise SandboxError(404, f"resource not found: {kind} {oid}", code="OBJECT_NOT_FOUND")
        return obj

    def new_object(self, kind: str, properties: dict[str, Any], *, oid: str | None = None,
                   modified_ms: int | None = None) -> dict[str, Any]:
        """Store a new object of ``kind`` (a seed or a create call)."""
        props = self._string_properties(properties)
        if oid is None:
            self._next_id += 1
            oid = str(self._next_id)
        ms = modified_ms if modified_ms is not None else self._tick()
        self._last_ms = max(self._last_ms, ms)
        props.update({"hs_object_id": oid, "createdate": iso_ms(ms), "hs_lastmodifieddate": iso_ms(ms)})
        obj = {"id": oid, "properties": props, "createdAt": iso_ms(ms), "updatedAt": iso_ms(ms), "archived": False}
        return self.store.put(kind, obj)

    def _string_properties(self, properties: Any) -> dict[str, str | None]:
        if not isinstance(properties, dict):
            raise SandboxError(400, "Invalid input JSON: properties must be an object", code="VALIDATION_ERROR")
        out: dict[str, str | None] = {}
        for key, value in properties.items():
            if key in ALWAYS:
                raise SandboxError(400, f"Property \"{key}\" is read-only", code="VALIDATION_ERROR")
            out[key] = None if value is None else (value if isinstance(value, str) else _text(value))
        return out

    def modify(self, kind: str, oid: str, properties: Any) -> dict[str, Any]:
        """Set properties on an object as an API update would (its modification time moves on)."""
        obj = self._require(kind, oid)
        props = self._string_properties(properties)
        ms = self._tick()
        obj["properties"].update({k: (None if v == "" else v) for k, v in props.items()})
        obj["properties"]["hs_lastmodifieddate"] = iso_ms(ms)
        obj["updatedAt"] = iso_ms(ms)
        return obj

    def render(self, kind: str, obj: dict[str, Any], properties: list[str] | None,
               associations: list[str] | None = None) -> dict[str, Any]:
        """An object as HubSpot returns it: the requested (or default) properties only."""
        wanted = list(properties) if properties else list(DEFAULT_PROPERTIES[kind])
        props = {p: obj["properties"].get(p) for p in [*wanted, *ALWAYS]}
        out = {"id": obj["id"], "properties": props, "createdAt": obj["createdAt"],
               "updatedAt": obj["updatedAt"], "archived": obj["archived"]}
        if associations:
            assoc = {}
            for raw in associations:
                to = self._type(raw)
                ids = self.associations.get((kind, obj["id"]), {}).get(to, [])
                if ids:
                    name = ASSOCIATION_TYPE_NAMES.get((kind, to), f"{kind}_to_{to}")
                    assoc[to] = {"results": [{"id": i, "type": name} for i in ids]}
            if assoc:
                out["associations"] = assoc
        return out

    def list_objects(self, call: Call) -> dict[str, Any]:
        kind = self._type(call["objectType"])
        self._allow(call, kind, write=False)
        query = _query(call.request)
        limit = _int(query.get("limit", ["10"])[-1], "limit", 1, LIST_LIMIT)
        archived = query.get("archived", ["false"])[-1] == "true"
        items = [o for o in self.store.ordered(kind, newest_first=False) if bool(o.get("archived")) == archived]
        start = 0
        if after := query.get("after", [None])[-1]:
            start = int(decode_token(after).get("offset", 0))
        chunk = items[start:start + limit]
        body: dict[str, Any] = {"results": [self.render(kind, o, _names(query, "properties"),
                                                        _names(query, "associations")) for o in chunk]}
        if start + limit < len(items):
            token = encode_token({"offset": start + limit})
            body["paging"] = {"next": {"after": token, "link": f"{call.request.path}?after={token}"}}
        return body

    def get_object(self, call: Call) -> dict[str, Any]:
        kind = self._type(call["objectType"])
        self._allow(call, kind, write=False)
        query = _query(call.request)
        return self.render(kind, self._require(kind, call["objectId"]), _names(query, "properties"),
                           _names(query, "associations"))

    def create_object(self, call: Call) -> Response:
        kind = self._type(call["objectType"])
        self._allow(call, kind, write=True)
        body = call.request.json or {}
        _only(body, {"properties", "associations", "objectWriteTraceId"})
        obj = self.new_object(kind, body.get("properties") or {})
        for item in body.get("associations") or []:
            to_id = str((item.get("to") or {}).get("id", ""))
            to_kind = self._kind_of(to_id)
            self.associate(kind, obj["id"], to_kind, to_id)
        return Response(201, self.render(kind, obj, list(body.get("properties") or {})))

    def _kind_of(self, oid: str) -> str:
        for kind in TYPE_IDS:
            if self.store.get(kind, oid) is not None:
                return kind
        raise SandboxError(400, f"Object {oid} does not exist", code="VALIDATION_ERROR")

    def update_object(self, call: Call) -> dict[str, Any]:
        kind = self._type(call["objectType"])
        self._allow(call, kind, write=True)
        body = call.request.json or {}
        _only(body, {"properties", "objectWriteTraceId"})
        obj = self.modify(kind, call["objectId"], body.get("properties") or {})
        return self.render(kind, obj, list(body.get("properties") or {}))

    def batch_read(self, call: Call) -> Response:
        kind = self._type(call["objectType"])
        self._allow(call, kind, write=False)
        body = call.request.json or {}
        _only(body, {"inputs", "properties", "propertiesWithHistory", "idProperty"})
        inputs = _inputs(body)
        results, missing = [], []
        for item in inputs:
            obj = self.store.get(kind, str(item.get("id")))
            if obj is None or obj.get("archived"):
                missing.append(str(item.get("id")))
            else:
                results.append(self.render(kind, obj, body.get("properties") or None))
        return self._batch_response(results, missing, "OBJECT_NOT_FOUND", "Could not get some {kind} objects")

    def batch_update(self, call: Call) -> Response:
        kind = self._type(call["objectType"])
        self._allow(call, kind, write=True)
        body = call.request.json or {}
        _only(body, {"inputs"})
        inputs = _inputs(body)
        ids = [str(i.get("id")) for i in inputs]
        if len(set(ids)) != len(ids):
            raise SandboxError(400, "Duplicate IDs found in batch input", code="VALIDATION_ERROR")
        for oid in ids:
            self._require(kind, oid)  # all or nothing, as HubSpot validates the batch first
        results = [self.render(kind, self.modify(kind, str(i["id"]), i.get("properties") or {}),
                               list(i.get("properties") or {})) for i in inputs]
        return self._batch_response(results, [], "", "")

    def _batch_response(self, results: list[Any], missing: list[str], category: str, message: str) -> Response:
        now = iso_ms(int(self.clock.time() * 1000))
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if not missing:
            return Response(200, body)
        body["numErrors"] = len(missing)
        body["errors"] = [{"status": "error", "category": category, "message": f"{message}: {', '.join(missing)}",
                           "context": {"ids": missing}, "errors": [], "links": {}}]
        return Response(207, body)

    # -- search ---------------------------------------------------------------------------

    def search(self, call: Call) -> dict[str, Any]:
        kind = self._type(call["objectType"])
        self._allow(call, kind, write=False)
        body = call.request.json or {}
        _only(body, {"filterGroups", "sorts", "properties", "limit", "after", "query"})
        limit = _int(body.get("limit", 10), "limit", 1, SEARCH_LIMIT)
        after = _int(body.get("after") or 0, "after", 0, None)
        if after + limit > self.search_cap:
            raise SandboxError(400, f"Paging through search results is limited to {self.search_cap} results; "
                               "narrow the search with filters", code="VALIDATION_ERROR")
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or any(len(g.get("filters") or []) > 6 for g in groups):
            raise SandboxError(400, "Search allows at most 5 filterGroups of at most 6 filters",
                               code="VALIDATION_ERROR")
        items = [o for o in self.store.ordered(kind, newest_first=False)
                 if not o.get("archived") and (not groups or any(self._matches(o, g) for g in groups))]
        if text := body.get("query"):
            items = [o for o in items if any(text.lower() in str(v).lower() for v in o["properties"].values() if v)]
        for sort in reversed(body.get("sorts") or []):
            prop, descending = _sort(sort)
            items.sort(key=lambda o, p=prop: _sort_key(o["properties"].get(p)), reverse=descending)
        chunk = items[after:after + limit]
        out: dict[str, Any] = {"total": len(items),
                               "results": [self.render(kind, o, body.get("properties") or None) for o in chunk]}
        if after + limit < len(items):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return out

    def _matches(self, obj: dict[str, Any], group: dict[str, Any]) -> bool:
        return all(self._match(obj, f) for f in group.get("filters") or [])

    def _match(self, obj: dict[str, Any], f: dict[str, Any]) -> bool:
        op = f.get("operator")
        if op not in OPERATORS:
            raise SandboxError(400, f"Unknown operator {op!r}", code="VALIDATION_ERROR")
        actual = obj["properties"].get(f.get("propertyName"))
        if op == "HAS_PROPERTY":
            return actual not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return actual in (None, "")
        if op in ("IN", "NOT_IN"):
            values = [str(v).lower() for v in f.get("values") or []]
            found = actual is not None and str(actual).lower() in values
            return found if op == "IN" else not found
        if actual is None:
            return op == "NEQ"
        a = _sort_key(actual)
        if op == "BETWEEN":
            return _sort_key(f.get("value")) <= a <= _sort_key(f.get("highValue"))
        b = _sort_key(f.get("value"))
        if a[0] != b[0]:  # a number against text: compare as text, as HubSpot does
            a, b = (1, str(actual).lower()), (1, str(f.get("value")).lower())
        return {"EQ": a == b, "NEQ": a != b, "LT": a < b, "LTE": a <= b, "GT": a > b, "GTE": a >= b}[op]

    # -- associations ---------------------------------------------------------------------

    def associate(self, kind: str, oid: str, to_kind: str, to_id: str) -> None:
        """Associate two objects both ways (HubSpot's default association)."""
        self._require(kind, oid)
        self._require(to_kind, to_id)
        for a, ai, b, bi in ((kind, oid, to_kind, to_id), (to_kind, to_id, kind, oid)):
            ids = self.associations.setdefault((a, ai), {}).setdefault(b, [])
            if bi not in ids:
                ids.append(bi)

    def _association(self, kind: str, to_kind: str, to_id: str) -> dict[str, Any]:
        return {"toObjectId": to_id, "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": ASSOCIATION_TYPE_IDS.get((kind, to_kind), 1), "label": None}]}

    def list_associations(self, call: Call) -> dict[str, Any]:
        kind, to_kind = self._type(call["objectType"]), self._type(call["toObjectType"])
        self._allow(call, kind, write=False)
        self._allow(call, to_kind, write=False)
        self._require(kind, call["objectId"])
        query = _query(call.request)
        limit = _int(query.get("limit", ["500"])[-1], "limit", 1, 500)
        start = int(decode_token(a).get("offset", 0)) if (a := query.get("after", [None])[-1]) else 0
        ids = self.associations.get((kind, call["objectId"]), {}).get(to_kind, [])
        body: dict[str, Any] = {"results": [self._association(kind, to_kind, i) for i in ids[start:start + limit]]}
        if start + limit < len(ids):
            token = encode_token({"offset": start + limit})
            body["paging"] = {"next": {"after": token, "link": f"{call.request.path}?after={token}"}}
        return body

    def create_default_association(self, call: Call) -> dict[str, Any]:
        kind, to_kind = self._type(call["objectType"]), self._type(call["toObjectType"])
        self._allow(call, kind, write=True)
        self._allow(call, to_kind, write=False)
        self.associate(kind, call["objectId"], to_kind, call["toObjectId"])
        now = iso_ms(int(self.clock.time() * 1000))
        spec = {"associationCategory": "HUBSPOT_DEFINED",
                "associationTypeId": ASSOCIATION_TYPE_IDS.get((kind, to_kind), 1)}
        return {"status": "COMPLETE", "startedAt": now, "completedAt": now, "results": [
            {"from": {"id": call["objectId"]}, "to": {"id": call["toObjectId"]}, "associationSpec": spec}]}

    def batch_read_associations(self, call: Call) -> Response:
        kind, to_kind = self._type(call["objectType"]), self._type(call["toObjectType"])
        self._allow(call, kind, write=False)
        self._allow(call, to_kind, write=False)
        body = call.request.json or {}
        _only(body, {"inputs"})
        results, missing = [], []
        for item in _inputs(body, limit=1000):
            oid = str(item.get("id"))
            ids = self.associations.get((kind, oid), {}).get(to_kind, [])
            if self.store.get(kind, oid) is None or not ids:
                missing.append(oid)
                continue
            results.append({"from": {"id": oid}, "to": [self._association(kind, to_kind, i) for i in ids]})
        return self._batch_response(results, missing, "OBJECT_NOT_FOUND", f"No {to_kind} is associated with")

    # -- seeding --------------------------------------------------------------------------

    def seed(self, fixture: dict[str, Any]) -> dict[str, int]:
        """Create objects from a fixture; returns counts per kind.

        Kinds, in this order: ``companies``, ``products``, ``deals``, ``line_items``. Each
        entry is ``{id?, properties: {...}, modified?: epoch ms, associations?: {companies:
        [ids], deals: [ids], line_items: [ids]}}``. Property values may be numbers (stored
        as HubSpot's strings).
        """
        counts: dict[str, int] = {}
        with self.store.lock:
            for kind in ("companies", "products", "deals", "line_items"):
                for n, entry in enumerate(fixture.get(kind) or []):
                    try:
                        oid = None if entry.get("id") is None else str(entry["id"])
                        obj = self.new_object(kind, entry.get("properties") or {}, oid=oid,
                                              modified_ms=entry.get("modified"))
                        for to, ids in (entry.get("associations") or {}).items():
                            for to_id in ids:
                                self.associate(kind, obj["id"], self._type(to), str(to_id))
                    except SandboxError as err:
                        raise ValueError(f"fixture {kind}[{n}]: {err.message}") from None
                    if str(obj["id"]).isdigit():
                        self._next_id = max(self._next_id, int(obj["id"]))
                counts[kind] = len(fixture.get(kind) or [])
        return counts


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise SandboxError(400, f"send {value!r} as a decimal string", code="VALIDATION_ERROR")
    return str(value)


def _query(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.query_string, keep_blank_values=True)


def _names(query: dict[str, list[str]], key: str) -> list[str] | None:
    names = [n for v in query.get(key, []) for n in v.split(",") if n]
    return names or None


def _int(value: Any, name: str, low: int, high: int | None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise SandboxError(400, f"{name} must be an integer, got {value!r}", code="VALIDATION_ERROR") from None
    if number < low or (high is not None and number > high):
        raise SandboxError(400, f"{name} must be between {low} and {high}, got {number}", code="VALIDATION_ERROR")
    return number


def _only(body: Any, allowed: set[str]) -> None:
    if not isinstance(body, dict):
        raise SandboxError(400, "Invalid input JSON: expected an object", code="VALIDATION_ERROR")
    if unknown := sorted(set(body) - allowed):
        raise SandboxError(400, f"Invalid input JSON: unrecognized field(s) {', '.join(unknown)}",
                           code="VALIDATION_ERROR")


def _inputs(body: dict[str, Any], *, limit: int = BATCH_LIMIT) -> list[dict[str, Any]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise SandboxError(400, "Invalid input JSON: inputs must be a list", code="VALIDATION_ERROR")
    if len(inputs) > limit:
        raise SandboxError(400, f"Batch input is limited to {limit} inputs", code="VALIDATION_ERROR")
    return inputs


def _sort(sort: Any) -> tuple[str, bool]:
    if isinstance(sort, dict):
        return str(sort.get("propertyName")), sort.get("direction") == "DESCENDING"
    text = str(sort)
    return text.lstrip("-"), text.startswith("-")


def _sort_key(value: Any) -> Any:
    """Numbers and datetimes compare as numbers, other text as lower-case text."""
    if value is None:
        return (-1, "")
    text = str(value)
    if "T" in text and (ms := parse_ms(text)) is not None:
        return (0, Decimal(ms))
    try:
        return (0, Decimal(text))
    except InvalidOperation:
        return (1, text.lower())
