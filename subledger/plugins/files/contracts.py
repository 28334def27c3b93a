"""Contract files (YAML or JSON) to :class:`~subledger.core.model.Contract`.

A contract file is a :class:`~subledger.core.terms.ContractDocument`: a header (``id``,
``customer``, ``name``, ``status``) and the contract terms, documented in
``docs/contract-terms.md``. A file holds one contract, a list of them, or several YAML
documents separated by ``---``. Credit grants stay inside the terms.

A contract that fails validation is rejected as a whole (a contract priced on half its
terms would be wrong); the reject names the first bad field, its line in a YAML file, and
every problem with its fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from subledger.core.connector import Rejected
from subledger.core.model import Contract, payload_hash, record_id
from subledger.core.terms import ContractDocument, describe_errors, field_path, terms_hash, terms_to_document
from subledger.plugins.files.documents import Row
from subledger.plugins.files.fields import RowError
from subledger.plugins.files.mapping import Mapped, RecordKind, Source


class Contracts(RecordKind):
    stream = "contracts"
    record_type = "contract"
    columns = ()
    required_columns = ()
    csv_allowed = False
    example = " (see docs/contract-terms.md)"

    def from_documents(self, rows: Iterable[Row], src: Source) -> Iterator[Mapped | Rejected]:
        for row in rows:
            if row.error is None and isinstance(row.data, dict):
                try:
                    yield self.mapped(row.line, self.map_document(row.data, src), row.end_line)
                except _InvalidContract as exc:
                    yield self.reject(src, row.line_of(exc.loc), exc.error, row.raw)
                continue
            yield from super().from_documents([row], src)

    def map_document(self, data: dict[str, Any], src: Source) -> Contract:
        try:
            document = ContractDocument.model_validate(data)
        except ValidationError as exc:
            described = describe_errors(exc, data, source=f"contract {data.get('id') or ''}".strip())
            loc = tuple(exc.errors()[0]["loc"])
            raise _InvalidContract(loc, RowError(field_path(loc, data), described.message,
                                                 described.fix or "see docs/contract-terms.md")) from None
        terms = document.terms()
        return Contract(
            id=record_id("ctr", src.system, document.id),
            system=src.system,
            external_id=document.id,
            fetched_at=src.fetched_at,
            payload_hash=payload_hash(data),
            customer_external_id=document.customer,
            name=document.name,
            status=document.status,
            currency=terms.currency,
            start_date=terms.start_date,
            end_date=terms.end_date,
            terms=terms_to_document(terms),
            terms_hash=terms_hash(terms),
        )


class _InvalidContract(Exception):
    def __init__(self, loc: tuple[int | str, ...], error: RowError) -> None:
        super().__init__(error.reason)
        self.loc = loc
        self.error = error
