"""API keys: created once (the token is shown once), stored as a SHA-256, compared in constant time.

A token is ``slk_<key id>_<secret>`` where the secret holds 256 random bits. With that much
entropy a fast hash is enough: nobody can search the space, so a slow KDF (scrypt) would
only cost every request time. The key id in the token finds the row; the token's hash is
then compared with ``hmac.compare_digest``. Only the key id is ever shown or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError
from subledger.core.model.apikey import API_SCOPES, ApiKey
from subledger.sync.audit import audit

PREFIX = "slk_"
KEY_ID_LENGTH = 20  # "key_" + 16 hex digits
# Scopes that include others: admin can do everything, write can also read.
IMPLIED = {"admin": set(API_SCOPES), "write": {"write", "read"}, "read": {"read"}, "ingest": {"ingest"}}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def effective_scopes(scopes: list[str]) -> set[str]:
    """The scopes a key's own scopes grant (``admin`` implies all, ``write`` implies ``read``)."""
    out: set[str] = set()
    for s in scopes:
        out |= IMPLIED.get(s, set())
    return out


@dataclass(frozen=True)
class CreatedKey:
    """A new key: ``token`` is shown to the user once and never stored."""

    key: ApiKey
    token: str


def create_key(engine: Engine, *, name: str, scopes: list[str], actor: str) -> CreatedKey:
    """Create a key with ``scopes``; the returned token is the only copy."""
    unknown = sorted(set(scopes) - set(API_SCOPES))
    if unknown or not scopes:
        raise ConfigError(
            f"unknown API key scope(s) {', '.join(unknown) or '(none given)'}",
            fix=f"use one or more of {', '.join(API_SCOPES)}",
        )
    key_id = "key_" + secrets.token_hex(8)
    token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, name=name, scopes=sorted(set(scopes)), token_hash=token_hash(token), created_by=actor)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.add(row)
        audit(session, actor=actor, verb="apikey.create", object_type="api_key", object_id=key_id,
              reason=name, scopes=row.scopes)
    return CreatedKey(row, token)


def revoke_key(engine: Engine, key_id: str, *, actor: str, reason: str = "") -> ApiKey:
    """Revoke a key: every later request with it is refused."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        row = session.get(ApiKey, key_id)
        if row is None:
            raise ConfigError(f"no API key {key_id!r}", fix="list keys with `subledger apikey list`")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
            audit(session, actor=actor, verb="apikey.revoke", object_type="api_key", object_id=key_id, reason=reason)
        return row


def list_keys(engine: Engine) -> list[ApiKey]:
    with Session(engine) as session:
        return list(session.exec(select(ApiKey).order_by(ApiKey.created_at)).all())


def parse_key_id(token: str) -> str | None:
    """The key id inside a token, or None when the token is not shaped like one."""
    if not token.startswith(PREFIX):
        return None
    rest = token.removeprefix(PREFIX)
    key_id, sep, secret = rest[:KEY_ID_LENGTH], rest[KEY_ID_LENGTH : KEY_ID_LENGTH + 1], rest[KEY_ID_LENGTH + 1 :]
    if sep != "_" or not key_id.startswith("key_") or not secret:
        return None
    return key_id


class KeyCache:
    """Verified keys, by token hash, for a short time: a batch ingest must not wait on a key lookup.

    Revocation takes effect within ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, str, frozenset[str]]] = {}

    def verify(self, engine: Engine, token: str, now: float) -> tuple[str, frozenset[str]] | None:
        """(key id, effective scopes) for a valid, unrevoked token; None otherwise."""
        digest = token_hash(token)
        hit = self._entries.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1], hit[2]
        key_id = parse_key_id(token)
        if key_id is None:
            return None
        with Session(engine) as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                hmac.compare_digest(digest, digest)  # same work whether or not the id exists
                return None
            if not hmac.compare_digest(row.token_hash, digest) or row.revoked_at is not None:
                return None
        scopes = frozenset(effective_scopes(row.scopes))
        self._entries[digest] = (now, key_id, scopes)
        if len(self._entries) > 10_000:
            self._entries.clear()
        return key_id, scopes


def touch(engine: Engine, key_id: str, at: datetime) -> None:
    """Record when a key was last used (best effort)."""
    with Session(engine) as session, session.begin():
        row = session.get(ApiKey, key_id)
        if row is not None:
            row.last_used_at = at
            session.add(row)
