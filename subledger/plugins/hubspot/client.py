"""The official ``hubspot-api-client`` SDK, wrapped with subledger's retries and HubSpot's rate limits.

The SDK's own retries are off (a urllib3 ``Retry(0)``): every call goes through
:func:`subledger.core.http.retry_call`. A 429 waits what HubSpot asks: ``Retry-After`` when
sent, else the ``X-HubSpot-RateLimit-Interval-Milliseconds`` window of the exhausted
policy (ten seconds for the rolling limit); a daily limit waits until midnight UTC, which
is longer than a sync sleeps, so the scheduler comes back instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from subledger.core.errors import ConfigError, SubledgerError, SystemFailure, TransientError
from subledger.core.http import current_policy, error_for_status, parse_retry_after, retry_call
from subledger.core.secrets import redact
from subledger.plugins.hubspot.config import HubSpotConfig

T = TypeVar("T")
MODIFIED = "hs_lastmodifieddate"
BATCH_SIZE = 100


def _sdk() -> Any:
    try:
        import hubspot
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigError("the HubSpot connector needs hubspot-api-client, which is not installed",
                          fix="install the HubSpot extra: pip install 'subledger[hubspot]'") from None
    return hubspot


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def rate_limit_wait(headers: Any, body: Any, *, now: datetime) -> float | None:
    """Seconds to wait after a 429, from ``Retry-After`` or HubSpot's rate-limit headers and policy."""
    if (after := parse_retry_after(_header(headers, "Retry-After"), now=now)) is not None:
        return after
    try:
        doc = json.loads(body) if isinstance(body, str | bytes) and body else {}
    except ValueError:  # not HubSpot's document (a proxy's page): its rate-limit headers may still say
        doc = {}
    policy = str(doc.get("policyName") or "").upper() if isinstance(doc, dict) else ""
    if policy == "DAILY" or _header(headers, "X-HubSpot-RateLimit-Daily-Remaining") == "0":
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        return (midnight - now).total_seconds()
    interval = _header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
    if interval and interval.isdigit():
        return int(interval) / 1000
    return None


def classify_hubspot_error(exc: BaseException, *, operation: str) -> SubledgerError | None:
    """Map an SDK or transport exception to a subledger error (None: the default classification)."""
    import urllib3.exceptions

    if isinstance(exc, urllib3.exceptions.HTTPError):
        return TransientError(f"{operation} failed: could not reach HubSpot ({redact(type(exc).__name__)})",
                              fix="check the network and the connection's base_url; subledger retries")
    status = getattr(exc, "status", None)
    if not (isinstance(status, int) and type(exc).__name__.endswith(("Exception", "Error"))
            and hasattr(exc, "body")):
        return None
    headers, body = getattr(exc, "headers", None), getattr(exc, "body", None)
    now = current_policy().now()
    ours = hubspot_shaped(body)
    err = error_for_status(status, headers=headers, body=body or "", operation=operation, now=now, vendor_error=ours)
    if status == 429 and isinstance(err, TransientError):
        wait = rate_limit_wait(headers, body, now=now)
        err.retry_after = wait if wait is not None else err.retry_after
    elif status == 401 and ours:
        err.fix = "check the connection's access_token (a private app's token for this portal)"
    elif status == 403 and ours:
        err.fix = "give the private app the scopes listed in docs/connectors/hubspot.md (the message names the one)"
    return err


def hubspot_shaped(body: Any) -> bool:
    """Whether a body is HubSpot's own error document (``{"status": "error", "message", "category"}``)."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return False
    return isinstance(body, dict) and isinstance(body.get("message"), str) and (
        body.get("status") == "error" or "category" in body)


class HubSpotApi:
    """One HubSpot portal through the official SDK, every call retried by subledger's policy."""

    def __init__(self, config: HubSpotConfig, *, name: str = "hubspot") -> None:
        from urllib3.util.retry import Retry

        hubspot = _sdk()
        self.config = config
        self.name = name
        self.client = hubspot.HubSpot(
            access_token=config.access_token.get_secret_value(), host=config.base_url,
            retry=Retry(total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False),
        )
        crm = self.client.crm
        # Each discovery property builds a new API client (and connection pool): keep one of each.
        self.objects = crm.objects.basic_api
        self.search = crm.objects.search_api
        self.batch = crm.objects.batch_api
        self.associations_batch = crm.associations.v4.batch_api
        self.associations_basic = crm.associations.v4.basic_api
        import hubspot.crm.associations.v4 as v4_models
        import hubspot.crm.objects as object_models

        self.models = object_models
        self.v4_models = v4_models

    def __repr__(self) -> str:
        return f"HubSpotApi(connection={self.name!r}, base_url={self.config.base_url!r})"

    def call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One SDK call with subledger's retries and the configured timeout.

        The call goes through the SDK's ``*_with_http_info`` twin so the rate-limit headers
        are seen: when an answer says no request is left in the window
        (``X-HubSpot-RateLimit-Remaining: 0``), the next call waits for the window
        (``X-HubSpot-RateLimit-Interval-Milliseconds``) instead of drawing a 429.
        """
        op = f"{self.name}: {operation}"
        kwargs.setdefault("_request_timeout", self.config.timeout_seconds)
        with_info = getattr(getattr(fn, "__self__", None), f"{getattr(fn, '__name__', '')}_with_http_info", None)

        def once() -> T:
            if with_info is None:
                return fn(*args, **kwargs)
            data, _status, headers = with_info(*args, **kwargs)
            self._pace(headers)
            return data

        return retry_call(once, classify=lambda exc: classify_hubspot_error(exc, operation=op), operation=op)

    def _pace(self, headers: Any) -> None:
        remaining = _header(headers, "X-HubSpot-RateLimit-Remaining")
        interval = _header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        if remaining is not None and remaining.strip() == "0" and interval and interval.isdigit():
            current_policy().sleep(int(interval) / 1000)

    # -- reads ----------------------------------------------------------------------------

    def search_modified_since(
        self,
        object_type: str,
        since_ms: int,
        recent: dict[str, int],
        properties: list[str],
        filters: list[dict[str, Any]] | None = None,
    ) -> Iterator[tuple[list[dict[str, Any]], int, dict[str, int]]]:
        """Objects modified at or after ``since_ms`` (less the lookback), oldest first, page by page.

        Uses the CRM search API (``hs_lastmodifieddate GTE``, sorted ascending). HubSpot
        indexes changes for search a little after they happen, so each read starts
        ``lookback_seconds`` before the cursor and skips what ``recent`` says it already
        read (an object id with the same modification time). A search pages through at most
        ``search_result_cap`` results; at the cap it searches again from the last time read.

        Yields:
            ``(new objects, cursor ms, recent)`` per page, where ``recent`` maps the ids read
            within the lookback window before the cursor to their modification times; the
            cursor and ``recent`` are the state to resume from.
        """
        models = self.models
        size, cap = self.config.page_size, self.config.search_result_cap
        lookback = self.config.lookback_seconds * 1000
        cursor, seen = since_ms, dict(recent)
        lower = max(0, since_ms - lookback)
        requery = False
        while True:
            after, new_in_pass = 0, 0
            while True:
                request = models.PublicObjectSearchRequest(
                    filter_groups=[models.FilterGroup(filters=[
                        models.Filter(property_name=MODIFIED, operator="GTE", value=str(lower)),
                        *(models.Filter(**f) for f in filters or []),
                    ])],
                    sorts=[{"propertyName": MODIFIED, "direction": "ASCENDING"}],
                    properties=properties, limit=size, after=str(after) if after else None,
                )
                page = self.call(f"search {object_type}", self.search.do_search,
                                 object_type, public_object_search_request=request)
                fresh = []
                for obj in (r.to_dict() for r in page.results):
                    ms = modified_ms(obj)
                    if seen.get(obj["id"]) == ms:
                        continue
                    fresh.append(obj)
                    seen[obj["id"]] = ms
                    cursor = max(cursor, ms)
                new_in_pass += len(fresh)
                seen = {i: ms for i, ms in seen.items() if ms >= cursor - lookback}
                yield fresh, cursor, dict(seen)
                nxt = page.paging.next.after if page.paging and page.paging.next else None
                if nxt is None:
                    return
                after = int(nxt)
                if after + size > cap:
                    break
            if requery and new_in_pass == 0:
                raise SystemFailure(
                    f"{self.name}: search {object_type}: more than {cap} objects share the modification time "
                    f"{cursor}; HubSpot's search cannot page past them",
                    fix="raise search_result_cap to HubSpot's 10,000, or report it to subledger's maintainers",
                )
            lower, requery = cursor, True

    def batch_read(self, object_type: str, ids: list[str], properties: list[str]) -> dict[str, dict[str, Any]]:
        """Objects by id (missing ones are left out), 100 per request."""
        models = self.models
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH_SIZE):
            body = models.BatchReadInputSimplePublicObjectId(
                inputs=[models.SimplePublicObjectId(id=i) for i in unique[start:start + BATCH_SIZE]],
                properties=properties, properties_with_history=[],
            )
            result = self.call(f"batch read {object_type}", self.batch.read, object_type,
                               batch_read_input_simple_public_object_id=body)
            for obj in result.results:
                found[obj.id] = obj.to_dict()
        return found

    def batch_update(self, object_type: str, updates: dict[str, dict[str, str]]) -> None:
        """Set properties on many objects, 100 per request."""
        models = self.models
        items = list(updates.items())
        for start in range(0, len(items), BATCH_SIZE):
            body = models.BatchInputSimplePublicObjectBatchInput(inputs=[
                models.SimplePublicObjectBatchInput(id=oid, properties=props)
                for oid, props in items[start:start + BATCH_SIZE]
            ])
            self.call(f"batch update {object_type}", self.batch.update, object_type,
                      batch_input_simple_public_object_batch_input=body)

    def associations(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, list[tuple[str, int]]]:
        """Associated ids (with the association type id) per object, through the v4 batch API."""
        models = self.v4_models
        out: dict[str, list[tuple[str, int]]] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH_SIZE):
            body = models.BatchInputPublicFetchAssociationsBatchRequest(
                inputs=[models.PublicFetchAssociationsBatchRequest(id=i) for i in unique[start:start + BATCH_SIZE]]
            )
            result = self.call(f"read {from_type} to {to_type} associations", self.associations_batch.get_page,
                               from_type, to_type, batch_input_public_fetch_associations_batch_request=body)
            for item in result.results:
                oid = item._from.id
                rows = out.setdefault(oid, [])
                rows += [(str(t.to_object_id), min(a.type_id for a in t.association_types)) for t in item.to]
                after = item.paging.next.after if item.paging and item.paging.next else None
                while after:  # more than a batch answer holds: page through this object's list
                    page = self.call(f"list {from_type} {oid} {to_type} associations", self.associations_basic.get_page,
                                     from_type, oid, to_type, after=after, limit=500)
                    rows += [(str(t.to_object_id), min(a.type_id for a in t.association_types))
                             for t in page.results]
                    after = page.paging.next.after if page.paging and page.paging.next else None
        return out


def modified_ms(obj: dict[str, Any]) -> int:
    """An object's ``hs_lastmodifieddate`` in epoch ms (its ``updatedAt`` when the property is absent)."""
    text = (obj.get("properties") or {}).get(MODIFIED)
    if text:
        if str(text).isdigit():
            return int(text)
        return int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000)
    updated = obj.get("updated_at")
    return int(updated.timestamp() * 1000) if isinstance(updated, datetime) else 0
