"""The store as the CLI sees it: an engine whose schema is known to be current."""

from __future__ import annotations

from sqlalchemy import Engine

from subledger.core.errors import ConfigError
from subledger.core.store.engine import get_engine
from subledger.core.store.migrate import current_revision, head_revision


def open_store() -> Engine:
    """The configured store, refusing one that has not been initialised or upgraded."""
    engine = get_engine()
    current = current_revision(engine)
    if current is None:
        raise ConfigError(f"the store at {safe_url(engine)} is not initialised", fix="run `subledger init`")
    if current != head_revision():
        raise ConfigError(
            f"the store at {safe_url(engine)} is at schema {current}, this subledger needs {head_revision()}",
            fix="run `subledger db upgrade`",
        )
    return engine


def safe_url(engine: Engine) -> str:
    """The database URL with any password masked."""
    return engine.url.render_as_string(hide_password=True)
