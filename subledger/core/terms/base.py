"""The base every terms model shares: strict fields, immutable values."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

Identifier = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$"),
]
"""An id inside a contract (component, commitment, grant, discount): letters, digits, ``_.:-``."""


class TermsModel(BaseModel):
    """Base of the contract-terms models: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)
