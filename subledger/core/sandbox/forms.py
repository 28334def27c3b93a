"""Bracket-notation form and query decoding: ``a[b]=c``, ``a[0][b]=c``, ``a[]=x``.

Stripe, Rails and PHP-style APIs nest parameters with brackets. A vendor sandbox has to
read them exactly as the vendor does: numeric indices build lists, names build
objects, ``[]`` appends, and every leaf stays a string (the endpoint decides its type).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A parameter name or structure that cannot be decoded."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def split_key(name: str) -> list[str]:
    """``items[0][price]`` -> ``["items", "0", "price"]``; ``expand[]`` -> ``["expand", ""]``."""
    match = _KEY.match(name)
    if not match:
        raise FormError(f"invalid parameter name {name!r}", name)
    return [match.group(1), *_PART.findall(match.group(2))]


def parse_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest ``(name, value)`` pairs by their bracket paths.

    Numeric-keyed objects become lists in index order (gaps close up, as Stripe does).

    Raises:
        FormError: a name is malformed, or one name is used both as a value and an object.
    """
    root: dict[str, Any] = {}
    for name, value in pairs:
        parts = split_key(name)
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                # ``a[]=x``: append; a following part ``a[][b]`` is not supported by the vendors.
                if not last:
                    raise FormError(f"unsupported parameter name {name!r}", name)
                part = str(_next_index(node))
            if last:
                if isinstance(node.get(part), dict):
                    raise FormError(f"parameter {name!r} is both a value and an object", name)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise FormError(f"parameter {name!r} is both a value and an object", name)
                node = child
    return _listify(root)


def parse_form(text: str) -> dict[str, Any]:
    """Decode an ``application/x-www-form-urlencoded`` body or a query string."""
    return parse_pairs(parse_qsl(text, keep_blank_values=True))


def _next_index(node: dict[str, Any]) -> int:
    numeric = [int(k) for k in node if k.isdigit()]
    return max(numeric) + 1 if numeric else 0


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted
