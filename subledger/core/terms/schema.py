"""The published JSON Schema of a contract file (``docs/contract-terms.schema.json``)."""

from __future__ import annotations

import json
from typing import Any

from subledger.core.terms.contract import ContractDocument

SCHEMA_ID = "https://subledger.dev/schemas/contract-terms.schema.json"


def contract_file_schema() -> dict[str, Any]:
    """The JSON Schema of a contract file: the header fields plus the terms."""
    schema = ContractDocument.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "subledger contract file",
    }


def contract_file_schema_text() -> str:
    """The schema as the checked-in file holds it (sorted keys, two-space indent, newline)."""
    return json.dumps(contract_file_schema(), indent=2, sort_keys=True) + "\n"
