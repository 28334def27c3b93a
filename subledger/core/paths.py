"""Where subledger keeps its files: the per-user data directory and the default store."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_path


def data_dir() -> Path:
    """The data directory: ``$SUBLEDGER_HOME`` if set, else the per-user data directory."""
    home = os.environ.get("SUBLEDGER_HOME")
    path = Path(home).expanduser() if home else user_data_path("subledger", appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """``$SUBLEDGER_DATABASE_URL``, else a SQLite file in :func:`data_dir`."""
    url = os.environ.get("SUBLEDGER_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{data_dir() / 'subledger.sqlite'}"
