"""In-memory object state for a sandbox, with the pagination styles vendors use.

Objects are plain JSON-ready dicts kept per collection in insertion order. Each gets a
sequence number so lists are stable even when many objects share a ``created`` second.
Vendors' list orders differ; :meth:`ObjectStore.ordered` sorts newest first (Stripe,
Orb) or oldest first, and the page helpers cut cursor pages (``starting_after`` /
``ending_before``), opaque-token pages or offset pages from the result.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import string
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from subledger.core.sandbox.wire import SandboxError

_ALPHABET = string.ascii_letters + string.digits


class ObjectStore:
    """Collections of objects by id. Callers hold :attr:`lock` around read-modify-write."""

    def __init__(self, *, seed: int | None = None) -> None:
        self.lock = threading.RLock()
        self._collections: dict[str, dict[str, dict[str, Any]]] = {}
        self._seq: dict[str, int] = {}
        self._counter = itertools.count(1)
        self._random = random.Random(seed)

    def new_id(self, prefix: str, length: int = 24) -> str:
        """A vendor-looking random id: ``cus_`` + base62 characters."""
        with self.lock:
            while True:
                candidate = prefix + "".join(self._random.choice(_ALPHABET) for _ in range(length))
                if not any(candidate in c for c in self._collections.values()):
                    return candidate

    def collection(self, name: str) -> dict[str, dict[str, Any]]:
        return self._collections.setdefault(name, {})

    def put(self, name: str, obj: dict[str, Any], *, key: str = "id") -> dict[str, Any]:
        """Insert or replace an object (replacing keeps its original list position)."""
        with self.lock:
            oid = obj[key]
            coll = self.collection(name)
            if oid not in coll:
                self._seq[f"{name}\x1f{oid}"] = next(self._counter)
            coll[oid] = obj
            return obj

    def get(self, name: str, oid: str) -> dict[str, Any] | None:
        return self.collection(name).get(oid)

    def require(self, name: str, oid: str, *, label: str, param: str = "id") -> dict[str, Any]:
        """The object, or the vendor's 404 ``resource_missing``."""
        obj = self.get(name, oid)
        if obj is None:
            raise SandboxError(
                404, f"No such {label}: '{oid}'", code="resource_missing", param=param,
                kind="invalid_request_error",
            )
        return obj

    def delete(self, name: str, oid: str) -> dict[str, Any] | None:
        with self.lock:
            self._seq.pop(f"{name}\x1f{oid}", None)
            return self.collection(name).pop(oid, None)

    def seq(self, name: str, oid: str) -> int:
        return self._seq.get(f"{name}\x1f{oid}", 0)

    def ordered(
        self,
        name: str,
        *,
        where: Callable[[dict[str, Any]], bool] | None = None,
        newest_first: bool = True,
        created_key: str = "created",
    ) -> list[dict[str, Any]]:
        """The objects of a collection that pass ``where``, in the vendor's list order."""
        with self.lock:
            items = [o for o in self.collection(name).values() if where is None or where(o)]

            def sort_key(obj: dict[str, Any]) -> tuple[Any, int]:
                return (obj.get(created_key) or 0, self.seq(name, obj.get("id", "")))

            return sorted(items, key=sort_key, reverse=newest_first)

    def clear(self) -> None:
        with self.lock:
            self._collections.clear()
            self._seq.clear()

    def counts(self) -> dict[str, int]:
        return {name: len(coll) for name, coll in self._collections.items()}

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every object, collection by collection, oldest first (for debugging and snapshots)."""
        with self.lock:
            return {
                name: sorted(coll.values(), key=lambda o, n=name: self.seq(n, o.get("id", "")))
                for name, coll in self._collections.items()
            }


@dataclass(frozen=True)
class Page:
    """A page cut from an ordered list."""

    items: list[dict[str, Any]]
    has_more: bool
    next_token: str | None = None


def cursor_page(
    ordered: list[dict[str, Any]],
    *,
    limit: int,
    starting_after: str | None = None,
    ending_before: str | None = None,
    key: str = "id",
    label: str = "object",
) -> Page:
    """Stripe-style cursor pagination over an already ordered list.

    ``starting_after`` returns the ``limit`` objects after the cursor object;
    ``ending_before`` returns the ``limit`` objects immediately before it (still in list
    order), and ``has_more`` says whether more lie beyond in the direction of travel.

    Raises:
        SandboxError: the cursor object is not in the list (the vendor's 404).
    """
    if starting_after and ending_before:
        raise SandboxError(
            400, "You may only specify one of these parameters: ending_before, starting_after.",
            code="parameter_invalid", param="ending_before", kind="invalid_request_error",
        )
    ids = [o[key] for o in ordered]
    if starting_after:
        pos = _position(ids, starting_after, label, "starting_after")
        rest = ordered[pos + 1 :]
        return Page(rest[:limit], len(rest) > limit)
    if ending_before:
        pos = _position(ids, ending_before, label, "ending_before")
        before = ordered[:pos]
        start = max(0, len(before) - limit)
        return Page(before[start:], start > 0)
    return Page(ordered[:limit], len(ordered) > limit)


def _position(ids: list[str], cursor: str, label: str, param: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise SandboxError(
            404, f"No such {label}: '{cursor}'", code="resource_missing", param=param,
            kind="invalid_request_error",
        ) from None


def encode_token(state: dict[str, Any]) -> str:
    """An opaque page token (HubSpot ``after``, Salesforce locators) carrying ``state``."""
    return base64.urlsafe_b64encode(json.dumps(state, sort_keys=True).encode()).decode().rstrip("=")


def decode_token(token: str, *, param: str = "after") -> dict[str, Any]:
    """Read a token from :func:`encode_token`; a tampered token is the vendor's 400."""
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, json.JSONDecodeError):
        raise SandboxError(400, f"invalid page token {token!r}", code="invalid_token", param=param) from None
    if not isinstance(value, dict):
        raise SandboxError(400, f"invalid page token {token!r}", code="invalid_token", param=param)
    return value


def offset_page(ordered: list[dict[str, Any]], *, offset: int, limit: int) -> Page:
    """Offset/limit pagination (NetSuite REST, SOQL ``OFFSET``)."""
    chunk = ordered[offset : offset + limit]
    more = offset + limit < len(ordered)
    return Page(chunk, more, str(offset + limit) if more else None)


def token_page(ordered: list[dict[str, Any]], *, after: str | None, limit: int, key: str = "id") -> Page:
    """Opaque-token pagination: the token remembers the last id of the previous page."""
    start = 0
    if after:
        state = decode_token(after)
        ids = [o[key] for o in ordered]
        last = state.get("last")
        start = ids.index(last) + 1 if last in ids else int(state.get("offset", 0))
    chunk = ordered[start : start + limit]
    more = start + limit < len(ordered)
    token = encode_token({"last": chunk[-1][key], "offset": start + len(chunk)}) if more and chunk else None
    return Page(chunk, more, token)


def first(items: Iterable[dict[str, Any]], pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The first object matching ``pred``."""
    return next((o for o in items if pred(o)), None)
