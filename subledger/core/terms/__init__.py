"""Contract terms: the validated document that says how a contract is priced.

See ``docs/contract-terms.md`` for the file format and ``docs/contract-terms.schema.json``
for its JSON Schema. Import from here::

    from subledger.core.terms import ContractDocument, ContractTerms, load_terms, terms_to_document
"""

from subledger.core.terms.billing import BillingCycle, Cadence
from subledger.core.terms.commitments import Commitment
from subledger.core.terms.components import (
    Aggregation,
    Allotment,
    Component,
    FlatFee,
    MatrixCell,
    UsageComponent,
)
from subledger.core.terms.contract import HEADER_FIELDS, TERMS_VERSION, ContractDocument, ContractTerms
from subledger.core.terms.credits import CreditGrantTerms, TopUp
from subledger.core.terms.decimals import TermError, exact_decimal
from subledger.core.terms.discounts import Discount
from subledger.core.terms.loading import (
    describe_errors,
    document_to_dict,
    field_path,
    load_document,
    load_terms,
    terms_hash,
    terms_to_document,
)
from subledger.core.terms.parsing import parse_json, parse_terms_text, parse_yaml, read_terms_file
from subledger.core.terms.prices import (
    GraduatedPrice,
    PackagePrice,
    PercentagePrice,
    PerUnitPrice,
    PriceModel,
    Tier,
    VolumePrice,
)

__all__ = [
    "HEADER_FIELDS",
    "TERMS_VERSION",
    "Aggregation",
    "Allotment",
    "BillingCycle",
    "Cadence",
    "Commitment",
    "Component",
    "ContractDocument",
    "ContractTerms",
    "CreditGrantTerms",
    "Discount",
    "FlatFee",
    "GraduatedPrice",
    "MatrixCell",
    "PackagePrice",
    "PerUnitPrice",
    "PercentagePrice",
    "PriceModel",
    "TermError",
    "Tier",
    "TopUp",
    "UsageComponent",
    "VolumePrice",
    "describe_errors",
    "document_to_dict",
    "exact_decimal",
    "field_path",
    "load_document",
    "load_terms",
    "parse_json",
    "parse_terms_text",
    "parse_yaml",
    "read_terms_file",
    "terms_hash",
    "terms_to_document",
]
