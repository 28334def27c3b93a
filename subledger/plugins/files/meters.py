"""Meter rows to :class:`~subledger.core.model.Meter` (optional: only if a folder declares meters).

Fields: ``key`` (required: the name usage events use in ``meter``), ``name``, ``unit``
(default ``unit``), ``aggregation`` (sum, count, max, unique_count or latest; default
sum) and ``unique_property`` (the event property a unique_count counts).
"""

from __future__ import annotations

import re
from typing import Any

from subledger.core.model import Meter, payload_hash, record_id
from subledger.plugins.files import fields
from subledger.plugins.files.mapping import RecordKind, Source

AGGREGATIONS = ("sum", "count", "max", "unique_count", "latest")
_KEY = re.compile(r"^[A-Za-z0-9_.:-]+$")


class Meters(RecordKind):
    stream = "meters"
    record_type = "meter"
    columns = ("key", "name", "unit", "aggregation", "unique_property")
    required_columns = ("key",)
    id_field = "key"
    example = ' such as {"key": "api_calls", "unit": "call"}'

    def map_document(self, data: dict[str, Any], src: Source) -> Meter:
        fields.check_keys(data, self.columns)
        key = fields.required_text(data, "key", max_length=128)
        if not _KEY.match(key):
            raise fields.RowError("key", f"key {key!r} has characters a meter key cannot use",
                                  "use letters, digits and _ . : - only, e.g. api_calls")
        aggregation = fields.choice(data, "aggregation", AGGREGATIONS, default="sum")
        unique_property = fields.text(data, "unique_property", required=False, max_length=128)
        if aggregation == "unique_count" and unique_property is None:
            raise fields.RowError("unique_property", "a unique_count meter needs unique_property",
                                  "name the event property whose distinct values are counted")
        return Meter(
            id=record_id("mtr", src.system, key),
            system=src.system,
            external_id=key,
            fetched_at=src.fetched_at,
            payload_hash=payload_hash(data),
            key=key,
            name=fields.text(data, "name", required=False) or key,
            unit=fields.text(data, "unit", required=False, max_length=64) or "unit",
            aggregation=aggregation,
            unique_property=unique_property,
        )
