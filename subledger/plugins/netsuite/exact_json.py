"""JSON with exact decimals: NetSuite sends and takes amounts as JSON numbers.

``json`` would turn ``12.34`` into a float; here numbers with a fraction decode to
``Decimal`` and ``Decimal`` encodes as the same digits, so no amount ever passes
through binary floating point.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def loads(text: str | bytes) -> Any:
    """Decode JSON, numbers with a fraction or exponent as ``Decimal``."""
    return json.loads(text, parse_float=Decimal)


def dumps(value: Any) -> str:
    """Encode JSON; a ``Decimal`` is written as its digits (a JSON number)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        text = format(value, "f")
        return text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("refusing to encode a float; money and quantities are Decimal")
    return json.dumps(value)
