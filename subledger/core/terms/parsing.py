"""Reading YAML and JSON text with every number exact, strictly.

Both formats hand ``0.05`` to most programs as a binary float. These readers return
``Decimal`` for every non-integer number instead, so a contract file means exactly what
it says. The files connector and ``subledger rate`` read contract files through here.

They read strictly, like every settings file (:mod:`subledger.core.config_files`): a
key written twice in one mapping (a second ``currency:``) is refused rather than the last
one silently winning, and so are YAML alias bombs, recursive aliases and values nested
more than :data:`~subledger.core.config_files.MAX_DEPTH` levels deep. A number is only
turned into a ``Decimal`` when its text is short enough to be bounded
(:mod:`subledger.core.terms.bounds`); longer text is left as text for validation to refuse.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from subledger.core.config_files import StrictLoader, decode_text, parse_json_text, parse_yaml_text
from subledger.core.errors import ConfigError
from subledger.core.terms.bounds import MAX_NUMBER_TEXT


class ExactYamlLoader(StrictLoader):
    """A strict, safe YAML loader whose floats are ``Decimal``."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")
    if len(text) > MAX_NUMBER_TEXT:
        return text  # validation refuses it as too long a number, without building it
    try:
        value = Decimal(text)
    except InvalidOperation:
        # .inf / .nan: keep YAML's meaning; validation then refuses a non-finite number.
        return yaml.SafeLoader.construct_yaml_float(loader, node)
    return value


ExactYamlLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def _exact_float(text: str) -> Any:
    # A JSON number with a fraction or exponent; over-long text stays text (refused as too long).
    return text if len(text) > MAX_NUMBER_TEXT else Decimal(text)


def parse_yaml(text: str, *, source: str = "<yaml>") -> Any:
    """Parse YAML with exact decimals, strictly (one document).

    Raises:
        ConfigError: the text is not valid YAML, or holds a key twice, an alias bomb or
            too deep nesting (naming the line and column).
    """
    return parse_yaml_text(text, source=source, loader=ExactYamlLoader)


def parse_json(text: str, *, source: str = "<json>") -> Any:
    """Parse JSON with exact decimals, strictly.

    Raises:
        ConfigError: the text is not valid JSON (naming the line and column), or holds a
            key twice in one object, or nests too deep.
    """
    return parse_json_text(text, source=source, parse_float=_exact_float)


def parse_terms_text(text: str, *, source: str = "<terms>", fmt: str | None = None) -> Any:
    """Parse a contract file's text; ``fmt`` is ``json`` or ``yaml`` (guessed from ``source``)."""
    fmt = fmt or ("json" if str(source).lower().endswith(".json") else "yaml")
    if fmt == "json":
        return parse_json(text, source=source)
    return parse_yaml(text, source=source)


def read_terms_file(path: str | Path) -> Any:
    """Read and parse a YAML or JSON contract file with exact decimals.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8, or not valid YAML/JSON.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", fix="check the path and its permissions") from None
    return parse_terms_text(decode_text(data, source=str(path)), source=str(path))
