"""Loading terms from plain data, with errors that name the field, the value and the fix."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date
from typing import Any, TypeVar

from pydantic import ValidationError

from subledger.core.errors import ConfigError
from subledger.core.model.base import payload_hash
from subledger.core.terms.contract import ContractDocument, ContractTerms
from subledger.core.terms.decimals import TermError

M = TypeVar("M", ContractTerms, ContractDocument)

# Generic fixes for pydantic's own error types.
_FIXES = {
    "missing": "add the field",
    "extra_forbidden": "remove the field or correct its spelling (see docs/contract-terms.md)",
    "literal_error": "use one of the allowed values",
    "enum": "use one of the allowed values",
    "union_tag_invalid": "use one of the allowed values",
    "union_tag_not_found": "add the field that says which kind this is",
    "date_from_datetime_parsing": "write a date as YYYY-MM-DD",
    "date_parsing": "write a date as YYYY-MM-DD",
    "date_type": "write a date as YYYY-MM-DD",
    "too_short": "add at least one entry",
    "string_pattern_mismatch": "use letters, digits and _ . : - only",
    "greater_than_equal": "use a larger number",
    "less_than_equal": "use a smaller number",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "bool_parsing": "write true or false",
    "dict_type": "write a mapping of names to values",
    "list_type": "write a list",
    "model_type": "write a mapping of fields",
    "string_type": "write text",
}


def field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """``('components', 0, 'usage', 'price', 'graduated', 'tiers', 1)`` -> ``components[0].price.tiers[1]``.

    pydantic puts the discriminator value (``usage``, ``graduated``) into the location
    of a tagged union; it is dropped by walking the input alongside the location.
    """
    parts: list[str] = []
    node = data
    for segment in loc:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
            node = node[segment] if isinstance(node, list) and -len(node) <= segment < len(node) else None
            continue
        if isinstance(node, Mapping) and segment not in node and segment in (node.get("type"), node.get("model")):
            continue
        if "[" in segment or "(" in segment:  # a validator's internal name, not a field
            continue
        parts.append(("." if parts else "") + segment)
        node = node.get(segment) if isinstance(node, Mapping) else None
    return "".join(parts) or "(top level)"


def _short(value: Any) -> str:
    text = repr(value.isoformat() if isinstance(value, date) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_errors(exc: ValidationError, data: Any, *, source: str = "contract terms") -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one :class:`ConfigError` naming every problem."""
    problems: list[str] = []
    fixes: list[str] = []
    for err in exc.errors(include_url=False):
        path = field_path(tuple(err["loc"]), data)
        original = (err.get("ctx") or {}).get("error")
        shown = "" if err["type"] == "missing" else f" = {_short(err['input'])}"
        if isinstance(err["input"], Mapping):  # whole-object checks: the message names the field
            shown = ""
        if isinstance(original, TermError):
            message, fix = str(original), original.fix
            if original.at:
                path = original.at if path == "(top level)" else f"{path}.{original.at}"
                shown = "" if original.value is None else f" = {_short(original.value)}"
        else:
            message = err["msg"].removeprefix("Value error, ")
            fix = _FIXES.get(err["type"], "correct the value")
            if err["type"] == "string_pattern_mismatch" and path == "id":
                fix = "remove the spaces at the start and end of the contract id"
            if err["type"] == "extra_forbidden":
                fix = f"remove {path.rsplit('.', 1)[-1]!r} or correct its spelling (see docs/contract-terms.md)"
        problems.append(f"{path}{shown}: {message}")
        fixes.append(fix)
    count = len(problems)
    head = f"{source}: {count} problem{'s' if count > 1 else ''}: " if count > 1 else f"{source}: "
    unique_fixes = list(dict.fromkeys(fixes))
    return ConfigError(head + "; ".join(problems), fix="; ".join(unique_fixes))


def _validate(model: type[M], data: Any, meters: Collection[str] | None, source: str) -> M:
    if isinstance(data, model):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping of fields, got {type(data).__name__}",
            fix="write the terms as a YAML or JSON object (see docs/contract-terms.md)",
        )
    context = {"meters": frozenset(meters)} if meters is not None else None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise describe_errors(exc, data, source=source) from None


def load_terms(
    data: Mapping[str, Any] | ContractTerms, *, meters: Collection[str] | None = None,
    source: str = "contract terms",
) -> ContractTerms:
    """Validate a terms document (e.g. ``Contract.terms``) into :class:`ContractTerms`.

    Args:
        data: the document; numbers as ints, decimal strings or ``Decimal`` (not floats).
        meters: when given, the meter keys usage components may name.
        source: what to call the document in errors (a file name, a contract id).

    Raises:
        ConfigError: naming each bad field's path, its value and the fix.
    """
    if isinstance(data, ContractDocument):
        return data.terms()
    return _validate(ContractTerms, data, meters, source)


def load_document(
    data: Mapping[str, Any], *, meters: Collection[str] | None = None, source: str = "contract file"
) -> ContractDocument:
    """Validate a whole contract file (header and terms) into :class:`ContractDocument`.

    Raises:
        ConfigError: naming each bad field's path, its value and the fix.
    """
    return _validate(ContractDocument, data, meters, source)


def terms_to_document(terms: ContractTerms) -> dict[str, Any]:
    """The JSON-safe document of ``terms`` (decimals as strings) to store in ``Contract.terms``.

    A :class:`ContractDocument` is stored without its header. ``load_terms`` of the
    result gives back equal terms.
    """
    if isinstance(terms, ContractDocument):
        terms = terms.terms()
    return terms.model_dump(mode="json", exclude_none=True)


def document_to_dict(document: ContractDocument) -> dict[str, Any]:
    """The JSON-safe dict of a whole contract file (header and terms)."""
    return document.model_dump(mode="json", exclude_none=True)


def terms_hash(terms: ContractTerms) -> str:
    """A stable hash of the terms document (for ``Contract.terms_hash`` and drift checks)."""
    return payload_hash(terms_to_document(terms))


__all__ = [
    "describe_errors",
    "document_to_dict",
    "field_path",
    "load_document",
    "load_terms",
    "terms_hash",
    "terms_to_document",
]
