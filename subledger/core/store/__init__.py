"""The store: engine and sessions, migrations, record upserts and usage ingest."""

from subledger.core.store.engine import get_engine, make_engine, session_scope

__all__ = ["get_engine", "make_engine", "session_scope"]
