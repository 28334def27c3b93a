"""Shared pieces of the Stripe sandbox: parameters, errors, lists, expansion, rendering.

Stripe conventions reproduced here:

* unknown parameters are refused (``parameter_unknown``), missing ones name the param;
* form values arrive as strings; integers, booleans and enums are checked like Stripe
  checks them;
* lists are newest first with ``limit`` 1..100 (default 10), ``starting_after`` and
  ``ending_before`` cursors, ``created`` range filters, and ``url``/``has_more``;
* ``expand[]`` replaces an id with the object, through dotted paths (``data.customer``);
  price ``tiers`` only appear when expanded, as on Stripe.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from subledger.core.sandbox import SandboxError, cursor_page

if TYPE_CHECKING:
    from subledger.plugins.stripe.sandbox import StripeSandbox

API_VERSION = "2023-08-16"
"""The API version whose object shapes the sandbox serves (that of the bundled v1 spec)."""

MAX_LIMIT = 100
_INT = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")

# Which collection an id belongs to, by prefix.
PREFIXES: dict[str, str] = {
    "cus_": "customers",
    "prod_": "products",
    "price_": "prices",
    "sub_": "subscriptions",
    "si_": "subscription_items",
    "in_": "invoices",
    "ii_": "invoiceitems",
    "cn_": "credit_notes",
    "ch_": "charges",
    "pi_": "payment_intents",
    "re_": "refunds",
    "evt_": "events",
    "mtr_": "meters",
    "credgr_": "credit_grants",
    "cbtxn_": "credit_balance_transactions",
    "we_": "webhook_endpoints",
}

# Fields that ``expand[]`` may replace by the object, per object type.
EXPANDABLE: dict[str, set[str]] = {
    "customer": set(),
    "product": {"default_price"},
    "price": {"product", "tiers", "currency_options"},
    "subscription": {"customer", "latest_invoice"},
    "subscription_item": set(),
    "invoice": {"customer", "subscription", "charge", "payment_intent"},
    "line_item": {"invoice_item", "subscription", "subscription_item"},
    "invoiceitem": {"customer", "invoice", "subscription"},
    "credit_note": {"customer", "invoice", "refund"},
    "credit_note_line_item": set(),
    "charge": {"customer", "invoice", "payment_intent", "refunds"},
    "payment_intent": {"customer", "invoice", "latest_charge"},
    "refund": {"charge", "payment_intent"},
    "billing.credit_grant": {"customer"},
    "billing.credit_balance_transaction": {"credit_grant"},
    "billing.credit_balance_summary": {"customer"},
    # entries of lists inside an object (``lines.data.pretax_credit_amounts.credit_balance_transaction``)
    "line_item.pretax_credit_amounts": {"credit_balance_transaction"},
    "invoice.total_pretax_credit_amounts": {"credit_balance_transaction"},
    "billing.meter": set(),
    "event": set(),
    "list": {"data"},
}


def error(
    status: int, message: str, *, param: str | None = None, code: str | None = None,
    kind: str = "invalid_request_error", headers: dict[str, str] | None = None,
) -> SandboxError:
    """A Stripe API error (``type`` defaults to ``invalid_request_error``)."""
    return SandboxError(status, message, code=code, param=param, kind=kind, headers=headers)


def missing(param: str) -> SandboxError:
    return error(400, f"Missing required param: {param}.", param=param, code="parameter_missing")


def invalid(param: str, message: str, code: str = "parameter_invalid") -> SandboxError:
    return error(400, message, param=param, code=code)


def not_found(label: str, oid: str, param: str = "id") -> SandboxError:
    return error(404, f"No such {label}: '{oid}'", param=param, code="resource_missing")


class Params:
    """Typed, Stripe-checked access to one request's (or one nested hash's) parameters.

    Args:
        values: the decoded parameters.
        allowed: the names this endpoint accepts; others are refused as Stripe does.
        prefix: the name of the enclosing hash, for error messages (``recurring``).
    """

    def __init__(self, values: Any, allowed: Iterable[str] | None = None, prefix: str = "") -> None:
        if values == "":
            values = {}
        if not isinstance(values, dict):
            raise invalid(prefix or "params", f"Invalid hash: {prefix or 'params'} must be a hash")
        self.values = values
        self.prefix = prefix
        if allowed is not None:
            known = set(allowed) | {"expand"}
            for name in values:
                if name not in known:
                    full = self.name(name)
                    raise error(400, f"Received unknown parameter: {full}", param=full, code="parameter_unknown")

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def has(self, key: str) -> bool:
        return key in self.values

    def raw(self, key: str) -> Any:
        return self.values.get(key)

    def str(self, key: str, *, required: bool = False, max_length: int = 5000) -> str | None:
        value = self.values.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return None
        if not isinstance(value, str):
            raise invalid(self.name(key), f"Invalid string: {self.name(key)} must be a string")
        if len(value) > max_length:
            raise invalid(self.name(key), f"Invalid string: {self.name(key)} must be at most {max_length} characters")
        return value

    def int(self, key: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        value = self.values.get(key)
        if value is None or value == "":
            if required:
                raise missing(self.name(key))
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and _INT.match(value):
            number = int(value)
        else:
            raise invalid(self.name(key), f"Invalid integer: {value}", code="parameter_invalid_integer")
        if minimum is not None and number < minimum:
            raise invalid(
                self.name(key), f"Invalid {self.name(key)}: must be greater than or equal to {minimum}",
                code="parameter_invalid_integer",
            )
        return number

    def decimal(self, key: str, *, required: bool = False) -> Decimal | None:
        """A ``*_decimal`` parameter (up to 12 decimal places on Stripe)."""
        value = self.values.get(key)
        if value is None or value == "":
            if required:
                raise missing(self.name(key))
            return None
        text = str(value)
        if not _DECIMAL.match(text):
            raise invalid(self.name(key), f"Invalid decimal: {value}")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise invalid(self.name(key), f"Invalid decimal: {value}") from None
        if number.as_tuple().exponent < -12:  # type: ignore[operator]
            raise invalid(self.name(key), f"Invalid decimal: {value} has more than 12 decimal places")
        return number

    def bool(self, key: str, default: bool | None = None) -> bool | None:
        value = self.values.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise invalid(self.name(key), f"Invalid boolean: {value}")

    def enum(
        self, key: str, choices: Iterable[str], *, default: str | None = None, required: bool = False
    ) -> str | None:
        options = list(choices)
        value = self.str(key, required=required)
        if value is None:
            return default
        if value not in options:
            listed = ", ".join(options[:-1]) + (f", or {options[-1]}" if len(options) > 1 else options[0])
            raise invalid(self.name(key), f"Invalid {self.name(key)}: must be one of {listed}")
        return value

    def timestamp(self, key: str, now: int, *, required: bool = False) -> int | None:
        if self.values.get(key) == "now":
            return now
        return self.int(key, required=required)

    def hash(self, key: str, allowed: Iterable[str] | None = None, *, required: bool = False) -> Params | None:
        value = self.values.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return None
        return Params(value, allowed, self.name(key))

    def array(self, key: str, *, required: bool = False) -> list[Any] | None:
        value = self.values.get(key)
        if value is None or value == "":
            if required:
                raise missing(self.name(key))
            return None if value is None else []
        if isinstance(value, dict):  # a[5]=x with gaps decodes as a hash of indices
            value = [value[k] for k in sorted(value, key=lambda k: int(k) if k.isdigit() else 0)]
        if not isinstance(value, list):
            raise invalid(self.name(key), f"Invalid array: {self.name(key)} must be an array")
        return value

    def expand(self) -> list[str]:
        return [str(v) for v in (self.array("expand") or [])]

    def metadata(self, current: dict[str, str] | None = None) -> dict[str, str]:
        """Stripe metadata semantics: keys merge; an empty value unsets a key; ``""`` clears all."""
        result = dict(current or {})
        if "metadata" not in self.values:
            return result
        value = self.values["metadata"]
        if value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid(self.name("metadata"), "Invalid hash: metadata must be a hash")
        for k, v in value.items():
            if len(k) > 40:
                raise invalid(f"metadata[{k}]", f"Metadata keys can have up to 40 characters; {k!r} has {len(k)}")
            if not isinstance(v, str):
                raise invalid(f"metadata[{k}]", "Metadata values must be strings")
            if len(v) > 500:
                raise invalid(f"metadata[{k}]", "Metadata values can have up to 500 characters")
            if v == "":
                result.pop(k, None)
            else:
                result[k] = v
        if len(result) > 50:
            raise invalid("metadata", "You can have up to 50 metadata keys")
        return result


# -- lists ------------------------------------------------------------------------------


def created_filter(p: Params, key: str = "created") -> Callable[[dict[str, Any]], bool]:
    """A predicate for Stripe's range filter: ``created=N`` or ``created[gte]=N`` etc."""
    raw = p.raw(key)
    if raw is None:
        return lambda obj: True
    if isinstance(raw, str):
        exact = p.int(key)
        return lambda obj: obj.get(key) == exact
    bounds = Params(raw, ("gt", "gte", "lt", "lte"), key)
    gt, gte, lt, lte = (bounds.int(k) for k in ("gt", "gte", "lt", "lte"))

    def check(obj: dict[str, Any]) -> bool:
        value = obj.get(key)
        if value is None:
            return False
        return not (
            (gt is not None and value <= gt)
            or (gte is not None and value < gte)
            or (lt is not None and value >= lt)
            or (lte is not None and value > lte)
        )

    return check


LIST_PARAMS = ("limit", "starting_after", "ending_before")


def list_object(
    sb: StripeSandbox,
    p: Params,
    collection: str,
    url: str,
    *,
    where: Callable[[dict[str, Any]], bool] | None = None,
    items: list[dict[str, Any]] | None = None,
    label: str = "object",
) -> dict[str, Any]:
    """A Stripe list response over a collection (or an explicit newest-first ``items`` list)."""
    limit = p.int("limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("limit", f"Invalid limit: must be between 1 and {MAX_LIMIT}", code="parameter_invalid_integer")
    ordered = items if items is not None else sb.store.ordered(collection, where=where)
    page = cursor_page(
        ordered, limit=limit, starting_after=p.str("starting_after"), ending_before=p.str("ending_before"),
        label=label,
    )
    body = {
        "object": "list",
        "data": [sb.render(collection, o) for o in page.items],
        "has_more": page.has_more,
        "url": url,
    }
    return sb.expand(body, p.expand())


def list_of(
    sb: StripeSandbox, collection: str, objs: list[dict[str, Any]], url: str, *, first: int = 10
) -> dict[str, Any]:
    """An embedded list (``invoice.lines``, ``subscription.items``): the first ``first`` entries."""
    return {
        "object": "list",
        "data": [sb.render(collection, o) for o in objs[:first]],
        "has_more": len(objs) > first,
        "total_count": len(objs),
        "url": url,
    }


# -- expansion --------------------------------------------------------------------------

_KEEP = "__keep"
# Fields Stripe leaves out unless ``expand[]`` names them ("includable" fields).
HIDDEN: dict[str, tuple[str, ...]] = {"price": ("tiers", "currency_options")}


def expand(sb: StripeSandbox, body: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Apply ``expand[]`` paths to a freshly rendered object (changed in place and returned);
    then drop the includable fields not asked for."""
    result = body
    for path in paths:
        if path.count(".") > 3:
            raise invalid("expand", f"You cannot expand more than 4 levels of a property: {path}")
        _expand_path(sb, result, path.split("."), path)
    _strip_hidden(result)
    return result


def _expand_path(sb: StripeSandbox, obj: Any, parts: list[str], full: str, kind: str | None = None) -> None:
    if not parts or not isinstance(obj, dict):
        return
    head, rest = parts[0], parts[1:]
    if kind is None:
        kind = obj.get("object", "")
        kind = kind if isinstance(kind, str) else ""
    entries = obj.get(head)
    if rest and f"{kind}.{head}" in EXPANDABLE:
        # a list of plain hashes, e.g. a line's pretax credit amounts (absent when there are none)
        for entry in entries if isinstance(entries, list) else []:
            _expand_path(sb, entry, rest, full, f"{kind}.{head}")
        return
    if kind == "list" and head == "data":
        for item in obj.get("data", []):
            _expand_path(sb, item, rest, full)
        return
    hidden = HIDDEN.get(kind, ())
    if head not in obj and head not in hidden:
        raise invalid("expand", f"This property cannot be expanded ({head}).")
    if head not in EXPANDABLE.get(kind, set()) and not (isinstance(obj.get(head), dict) and rest):
        raise invalid("expand", f"This property cannot be expanded ({head}).")
    if head in hidden:
        obj.setdefault(_KEEP, []).append(head)
        return
    value = obj.get(head)
    if isinstance(value, str):
        target = sb.lookup(value)
        if target is not None:
            obj[head] = value = sb.render(target[0], target[1])
    _expand_path(sb, value, rest, full)


def _strip_hidden(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _strip_hidden(item)
    elif isinstance(node, dict):
        keep = node.pop(_KEEP, [])
        kind = node.get("object")
        for name in HIDDEN.get(kind, ()) if isinstance(kind, str) else ():
            if name not in keep:
                node.pop(name, None)
        for value in node.values():
            _strip_hidden(value)


def collection_of(oid: str) -> str | None:
    """The collection an id's prefix points to."""
    for prefix, name in PREFIXES.items():
        if oid.startswith(prefix):
            return name
    return None


def decimal_text(value: Decimal | int) -> str:
    """Stripe's decimal strings: plain notation, no trailing zeros (``"0.5"``, ``"1200"``)."""
    d = Decimal(value)
    text = format(d.normalize(), "f")
    return text if text != "-0" else "0"
