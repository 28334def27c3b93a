"""Customer rows to :class:`~subledger.core.model.Customer`.

Fields (CSV columns or JSON keys): ``id`` (required, the customer's external id, which
usage events, contracts and invoices refer to), ``name`` (required), ``email``,
``tax_id``, ``currency``, ``country``, ``canonical_id`` (an explicit link to the
canonical customer, used first by identity resolution) and ``metadata`` (a JSON object,
or CSV columns ``metadata.NAME``).
"""

from __future__ import annotations

from typing import Any

from subledger.core.model import Customer, payload_hash, record_id
from subledger.plugins.files import fields
from subledger.plugins.files.mapping import RecordKind, Source


class Customers(RecordKind):
    stream = "customers"
    record_type = "customer"
    columns = ("id", "name", "email", "tax_id", "currency", "country", "canonical_id")
    required_columns = ("id", "name")
    metadata_columns = True
    example = ' such as {"id": "acme", "name": "Acme Corp"}'

    def map_document(self, data: dict[str, Any], src: Source) -> Customer:
        fields.check_keys(data, self.columns, metadata=True)
        external_id = fields.required_text(data, "id")
        email, domain = fields.email(data)
        return Customer(
            id=record_id("cus", src.system, external_id),
            system=src.system,
            external_id=external_id,
            fetched_at=src.fetched_at,
            payload_hash=payload_hash(data),
            name=fields.text(data, "name", max_length=512) or "",
            email=email,
            email_domain=domain,
            tax_id=fields.text(data, "tax_id", required=False, max_length=64),
            currency=fields.currency(data, required=False),
            country=fields.country(data),
            canonical_hint=fields.text(data, "canonical_id", required=False),
            attributes=fields.metadata(data),
        )

