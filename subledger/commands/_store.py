"""The store as the CLI sees it: an engine whose schema is known to be current.

Every command opens the store here, so a store that is missing, unreachable, or at
another schema gets one message that names the setting to change
(``SUBLEDGER_DATABASE_URL``) or the command to run, never a driver's traceback. Only
``subledger init`` and ``subledger db upgrade`` may create a store; reading commands never
leave an empty SQLite file behind.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from subledger.core.errors import ConfigError
from subledger.core.store.engine import get_engine
from subledger.core.store.migrate import current_revision, head_revision

URL_FIX = ("set SUBLEDGER_DATABASE_URL to a reachable database (postgresql://user@host/dbname), or unset it to "
           "use the embedded SQLite store; then run `subledger init`")


def store_engine(*, create: bool = False) -> Engine:
    """The configured engine; a SQLite file that does not exist yet is refused unless ``create``.

    Raises:
        ConfigError: the URL is malformed, names a driver that is not installed, or (without
            ``create``) a SQLite file that does not exist.
    """
    try:
        engine = get_engine()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(f"SUBLEDGER_DATABASE_URL is not a database URL subledger can open: {exc}",
                          fix=URL_FIX) from None
    path = sqlite_path(engine)
    if path is not None and not create and not path.exists():
        raise ConfigError(f"there is no store at {path}", fix="run `subledger init` (or set SUBLEDGER_DATABASE_URL "
                          "to the store you meant)")
    return engine


def sqlite_path(engine: Engine) -> Path | None:
    """The file of a SQLite store (None for another database or an in-memory one)."""
    if engine.url.get_backend_name() != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(str(engine.url.database))


def schema_of(engine: Engine) -> str | None:
    """The store's schema revision; an unreachable store is a ConfigError naming the setting."""
    try:
        return current_revision(engine)
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise ConfigError(f"cannot reach the store at {safe_url(engine)}: {reason}", fix=URL_FIX) from None


def open_store() -> Engine:
    """The configured store, refusing one that is missing, unreachable, not initialised or
    not upgraded (each with the command that fixes it)."""
    engine = store_engine()
    current = schema_of(engine)
    if current is None:
        raise ConfigError(f"the store at {safe_url(engine)} is not initialised",
                          fix="run `subledger init`, or `subledger db stamp` for a store built without migrations")
    if current != head_revision():
        raise ConfigError(
            f"the store at {safe_url(engine)} is at schema {current}, this subledger needs {head_revision()}",
            fix="run `subledger db upgrade`",
        )
    return engine


def safe_url(engine: Engine) -> str:
    """The database URL with any password masked."""
    return engine.url.render_as_string(hide_password=True)
