"""Reading the YAML (or JSON) settings and mapping files users write, with errors that name the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from subledger.core.errors import ConfigError


def read_mapping_file(path: str | Path, *, what: str, missing_fix: str, shape_fix: str) -> dict[str, Any]:
    """The top-level mapping of a YAML or JSON file (JSON by the ``.json`` suffix).

    Args:
        path: the file.
        what: how the error names the file, e.g. ``"Salesforce mapping file"``.
        missing_fix: what to do when the file does not exist.
        shape_fix: what to do when the file holds something other than a mapping.

    Raises:
        ConfigError: the file is missing, unreadable as YAML/JSON, or not a mapping.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{what} {file} does not exist", fix=missing_fix)
    text = file.read_text(encoding="utf-8")
    try:
        loaded = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        kind = "JSON" if file.suffix.lower() == ".json" else "YAML"
        raise ConfigError(
            f"{what} {file} is not valid {kind}: {exc}", fix=f"fix the {kind} syntax at the place shown"
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {file} must hold a mapping", fix=shape_fix)
    return loaded
