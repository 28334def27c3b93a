"""Reading YAML and JSON text with every number exact.

Both formats hand ``0.05`` to most programs as a binary float. These readers return
``Decimal`` for every non-integer number instead, so a contract file means exactly what
it says. The files connector and ``subledger rate`` read contract files through here.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from subledger.core.errors import ConfigError


class ExactYamlLoader(yaml.SafeLoader):
    """A safe YAML loader whose floats are ``Decimal``."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        # .inf / .nan: keep YAML's meaning; validation then refuses a non-finite number.
        return yaml.SafeLoader.construct_yaml_float(loader, node)
    return value


ExactYamlLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def parse_yaml(text: str, *, source: str = "<yaml>") -> Any:
    """Parse YAML with exact decimals.

    Raises:
        ConfigError: the text is not valid YAML (naming the line and column).
    """
    try:
        return yaml.load(text, Loader=ExactYamlLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML ({problem})", fix="correct the YAML syntax at that line") from None


def parse_json(text: str, *, source: str = "<json>") -> Any:
    """Parse JSON with exact decimals.

    Raises:
        ConfigError: the text is not valid JSON (naming the line and column).
    """
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})",
            fix="correct the JSON syntax at that line",
        ) from None


def parse_terms_text(text: str, *, source: str = "<terms>", fmt: str | None = None) -> Any:
    """Parse a contract file's text; ``fmt`` is ``json`` or ``yaml`` (guessed from ``source``)."""
    fmt = fmt or ("json" if str(source).lower().endswith(".json") else "yaml")
    if fmt == "json":
        return parse_json(text, source=source)
    return parse_yaml(text, source=source)


def read_terms_file(path: str | Path) -> Any:
    """Read and parse a YAML or JSON contract file with exact decimals.

    Raises:
        ConfigError: the file is missing, unreadable, or not valid YAML/JSON.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", fix="check the path and its permissions") from None
    return parse_terms_text(text, source=str(path))
