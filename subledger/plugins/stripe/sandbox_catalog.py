"""Stripe sandbox: customers, products and prices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from subledger.core.sandbox import Call, Router
from subledger.plugins.stripe.sandbox_support import (
    LIST_PARAMS,
    Params,
    created_filter,
    decimal_text,
    error,
    invalid,
    list_object,
    missing,
)

if TYPE_CHECKING:
    from subledger.plugins.stripe.sandbox import StripeSandbox

CUSTOMER_PARAMS = (
    "address", "balance", "description", "email", "invoice_prefix", "invoice_settings", "metadata", "name",
    "next_invoice_sequence", "phone", "preferred_locales", "shipping", "tax_exempt", "test_clock",
    "payment_method", "source",
)
PRODUCT_PARAMS = (
    "active", "description", "id", "images", "metadata", "name", "package_dimensions", "shippable",
    "statement_descriptor", "tax_code", "unit_label", "url", "features", "default_price_data",
)
PRICE_PARAMS = (
    "active", "billing_scheme", "currency", "custom_unit_amount", "lookup_key", "metadata", "nickname",
    "product", "product_data", "recurring", "tax_behavior", "tiers", "tiers_mode", "transfer_lookup_key",
    "transform_quantity", "unit_amount", "unit_amount_decimal", "currency_options",
)
ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")


def routes(sb: StripeSandbox, r: Router) -> None:
    r.add("POST", "/v1/customers", lambda c: create_customer(sb, _p(c, CUSTOMER_PARAMS), c))
    r.add("GET", "/v1/customers", lambda c: list_customers(sb, c))
    r.add("GET", "/v1/customers/{id}", lambda c: get_customer(sb, c))
    r.add("POST", "/v1/customers/{id}", lambda c: update_customer(sb, c))
    r.add("DELETE", "/v1/customers/{id}", lambda c: delete_customer(sb, c))
    r.add("POST", "/v1/products", lambda c: create_product(sb, _p(c, PRODUCT_PARAMS), c))
    r.add("GET", "/v1/products", lambda c: list_products(sb, c))
    r.add("GET", "/v1/products/{id}", lambda c: sb.respond("products", sb.require("products", c["id"], "product"),
                                                           Params(c.params, ())))
    r.add("POST", "/v1/products/{id}", lambda c: update_product(sb, c))
    r.add("DELETE", "/v1/products/{id}", lambda c: delete_product(sb, c))
    r.add("POST", "/v1/prices", lambda c: create_price(sb, _p(c, PRICE_PARAMS), c))
    r.add("GET", "/v1/prices", lambda c: list_prices(sb, c))
    r.add("GET", "/v1/prices/{id}", lambda c: sb.respond("prices", sb.require("prices", c["id"], "price"),
                                                         Params(c.params, ())))
    r.add("POST", "/v1/prices/{id}", lambda c: update_price(sb, c))


def _p(call: Call, allowed: tuple[str, ...]) -> Params:
    return Params(call.params, allowed)


def _address(p: Params, key: str) -> dict[str, Any] | None:
    sub = p.hash(key, ADDRESS_KEYS)
    if sub is None:
        return None
    return {k: sub.str(k) for k in ADDRESS_KEYS}


# -- customers --------------------------------------------------------------------------


def create_customer(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    cid = overrides.get("id") or sb.new_id("cus_", 14)
    if sb.store.get("customers", cid):
        raise error(400, f"Customer already exists: {cid}", param="id", code="resource_already_exists")
    prefix = p.str("invoice_prefix") or cid[4:12].upper().replace("_", "X")
    customer = {
        "id": cid,
        "object": "customer",
        "address": _address(p, "address"),
        "balance": p.int("balance") or 0,
        "created": overrides.get("created") or sb.now(),
        "currency": overrides.get("currency"),
        "default_source": None,
        "delinquent": False,
        "description": p.str("description"),
        "discount": None,
        "email": p.str("email", max_length=512),
        "invoice_prefix": prefix,
        "invoice_settings": {
            "custom_fields": None, "default_payment_method": p.str("payment_method"), "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": p.metadata(),
        "name": p.str("name", max_length=256),
        "next_invoice_sequence": p.int("next_invoice_sequence", minimum=1) or 1,
        "phone": p.str("phone", max_length=20),
        "preferred_locales": [str(v) for v in p.array("preferred_locales") or []],
        "shipping": None,
        "tax_exempt": p.enum("tax_exempt", ("exempt", "none", "reverse"), default="none"),
        "test_clock": None,
    }
    sb.store.put("customers", customer)
    sb.emit("customer.created", "customers", customer, request=call.request if call else None)
    return sb.respond("customers", customer, p)


def get_customer(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ())
    obj = sb.store.get("customers", call["id"])
    if obj is None:
        deleted = sb.store.get("deleted", call["id"])
        if deleted is not None:
            return deleted
        raise error(404, f"No such customer: '{call['id']}'", param="id", code="resource_missing")
    return sb.respond("customers", obj, p)


def list_customers(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "created", "email", "test_clock"))
    email = p.str("email", max_length=512)
    created = created_filter(p)

    def where(o: dict[str, Any]) -> bool:
        return created(o) and (email is None or o.get("email") == email)

    return list_object(sb, p, "customers", "/v1/customers", where=where, label="customer")


def update_customer(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, CUSTOMER_PARAMS)
    customer = sb.require("customers", call["id"], "customer")
    before = {k: customer[k] for k in ("email", "name", "description", "metadata", "phone", "address", "balance")}
    for key, size in (("email", 512), ("name", 256), ("description", 5000), ("phone", 20)):
        if p.has(key):
            customer[key] = p.str(key, max_length=size) or None
    if p.has("address"):
        customer["address"] = _address(p, "address") if p.raw("address") != "" else None
    if p.has("balance"):
        customer["balance"] = p.int("balance")
    if p.has("invoice_prefix"):
        customer["invoice_prefix"] = p.str("invoice_prefix")
    if p.has("tax_exempt"):
        customer["tax_exempt"] = p.enum("tax_exempt", ("exempt", "none", "reverse"))
    customer["metadata"] = p.metadata(customer["metadata"])
    previous = {k: v for k, v in before.items() if customer[k] != v}
    if previous:
        sb.emit("customer.updated", "customers", customer, previous, request=call.request)
    return sb.respond("customers", customer, p)


def delete_customer(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    customer = sb.require("customers", call["id"], "customer")
    for sub in sb.store.collection("subscriptions").values():
        if sub["customer"] == customer["id"] and sub["status"] not in ("canceled", "incomplete_expired"):
            sub["status"] = "canceled"
            sub["canceled_at"] = sub["ended_at"] = sb.now()
            sb.emit("customer.subscription.deleted", "subscriptions", sub, request=call.request)
    sb.store.delete("customers", customer["id"])
    tombstone = {"id": customer["id"], "object": "customer", "deleted": True}
    sb.store.put("deleted", tombstone)
    sb.emit("customer.deleted", "customers", customer, request=call.request)
    return tombstone


# -- products ---------------------------------------------------------------------------


def create_product(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    pid = p.str("id") or overrides.get("id") or sb.new_id("prod_", 14)
    if sb.store.get("products", pid):
        raise error(400, f"Product already exists: {pid}", param="id", code="resource_already_exists")
    now = overrides.get("created") or sb.now()
    product = {
        "id": pid,
        "object": "product",
        "active": p.bool("active", True),
        "created": now,
        "default_price": None,
        "description": p.str("description"),
        "features": [{"name": str(f.get("name", ""))} for f in (p.array("features") or []) if isinstance(f, dict)],
        "images": [str(i) for i in p.array("images") or []],
        "livemode": False,
        "metadata": p.metadata(),
        "name": p.str("name", required=True),
        "package_dimensions": None,
        "shippable": p.bool("shippable"),
        "statement_descriptor": p.str("statement_descriptor"),
        "tax_code": p.str("tax_code"),
        "unit_label": p.str("unit_label"),
        "updated": now,
        "url": p.str("url"),
    }
    sb.store.put("products", product)
    sb.emit("product.created", "products", product, request=call.request if call else None)
    default = p.hash("default_price_data", ("currency", "unit_amount", "unit_amount_decimal", "recurring",
                                             "tax_behavior", "currency_options"))
    if default is not None:
        values = dict(default.values, product=pid)
        price = create_price(sb, Params(values, PRICE_PARAMS), call)
        product["default_price"] = price["id"]
    return sb.respond("products", product, p)


def list_products(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "active", "created", "ids", "shippable", "url"))
    active = p.bool("active")
    ids = p.array("ids")
    created = created_filter(p)

    def where(o: dict[str, Any]) -> bool:
        return created(o) and (active is None or o["active"] == active) and (not ids or o["id"] in ids)

    return list_object(sb, p, "products", "/v1/products", where=where, label="product")


def update_product(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*PRODUCT_PARAMS,))
    product = sb.require("products", call["id"], "product")
    before = dict(product)
    for key in ("name", "description", "unit_label", "statement_descriptor", "url", "tax_code"):
        if p.has(key):
            product[key] = p.str(key) or (None if key != "name" else product["name"])
    if p.has("active"):
        product["active"] = p.bool("active")
    if p.has("default_price"):
        product["default_price"] = p.str("default_price")
    product["metadata"] = p.metadata(product["metadata"])
    product["updated"] = sb.now()
    previous = {k: v for k, v in before.items() if product.get(k) != v and k != "updated"}
    if previous:
        sb.emit("product.updated", "products", product, previous, request=call.request)
    return sb.respond("products", product, p)


def delete_product(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    product = sb.require("products", call["id"], "product")
    if any(pr["product"] == product["id"] for pr in sb.store.collection("prices").values()):
        raise error(400, "This product cannot be deleted because it has one or more user-created prices.")
    sb.store.delete("products", product["id"])
    sb.emit("product.deleted", "products", product, request=call.request)
    return {"id": product["id"], "object": "product", "deleted": True}


# -- prices -----------------------------------------------------------------------------


def _tiers(p: Params) -> list[dict[str, Any]]:
    raw = p.array("tiers") or []
    tiers: list[dict[str, Any]] = []
    previous = 0
    for i, item in enumerate(raw):
        t = Params(item, ("up_to", "unit_amount", "unit_amount_decimal", "flat_amount", "flat_amount_decimal"),
                   f"tiers[{i}]")
        up_raw = t.raw("up_to")
        if up_raw is None:
            raise missing(f"tiers[{i}][up_to]")
        if up_raw == "inf":
            up_to = None
        else:
            up_to = t.int("up_to", minimum=1)
            if up_to is not None and up_to <= previous:
                raise invalid(f"tiers[{i}][up_to]", "Tiers must be given in increasing order of up_to.")
            previous = up_to or previous
        if i < len(raw) - 1 and up_to is None:
            raise invalid(f"tiers[{i}][up_to]", "Only the last tier may have up_to set to inf.")
        unit, unit_dec = _amount_pair(t, "unit_amount")
        flat, flat_dec = _amount_pair(t, "flat_amount")
        if unit_dec is None and flat_dec is None:
            raise missing(f"tiers[{i}][unit_amount]")
        tiers.append({
            "flat_amount": flat, "flat_amount_decimal": flat_dec,
            "unit_amount": unit, "unit_amount_decimal": unit_dec, "up_to": up_to,
        })
    if tiers and tiers[-1]["up_to"] is not None:
        raise invalid(f"tiers[{len(tiers) - 1}][up_to]", "The last tier must have up_to set to inf.")
    return tiers


def _amount_pair(p: Params, key: str) -> tuple[int | None, str | None]:
    """``unit_amount`` / ``unit_amount_decimal``: one or the other, each implying both."""
    integer = p.int(key, minimum=0)
    dec = p.decimal(f"{key}_decimal")
    if integer is not None and dec is not None:
        raise error(400, f"You may only specify one of these parameters: {key}, {key}_decimal.",
                    param=f"{p.name(key)}_decimal")
    if integer is not None:
        return integer, str(integer)
    if dec is not None:
        if dec < 0:
            raise invalid(p.name(f"{key}_decimal"), f"Invalid {key}_decimal: must be positive")
        whole = int(dec) if dec == dec.to_integral_value() else None
        return whole, decimal_text(dec)
    return None, None


def create_price(sb: StripeSandbox, p: Params, call: Call | None = None, **overrides: Any) -> dict[str, Any]:
    currency = (p.str("currency", required=True) or "").lower()
    product_id = p.str("product")
    product_data = p.hash("product_data", ("name", "active", "metadata", "unit_label", "statement_descriptor",
                                           "tax_code", "id"))
    if product_id is None and product_data is None:
        raise missing("product")
    if product_id is not None:
        sb.require("products", product_id, "product", "product")
    else:
        assert product_data is not None
        product_id = create_product(sb, product_data, call)["id"]
    scheme = p.enum("billing_scheme", ("per_unit", "tiered"), default="per_unit")
    recurring = None
    rec = p.hash("recurring", ("interval", "interval_count", "usage_type", "aggregate_usage", "meter",
                               "trial_period_days"))
    if rec is not None:
        usage_type = rec.enum("usage_type", ("licensed", "metered"), default="licensed")
        meter = rec.str("meter")
        if meter is not None:
            if usage_type != "metered":
                raise invalid("recurring[meter]", "A meter can only be set on a metered price.")
            sb.require("meters", meter, "billing meter", "recurring[meter]")
        aggregate = rec.enum("aggregate_usage", ("last_during_period", "last_ever", "max", "sum"))
        if aggregate is not None and usage_type != "metered":
            raise invalid("recurring[aggregate_usage]", "aggregate_usage is only allowed on metered prices.")
        if usage_type == "metered" and aggregate is None and meter is None:
            aggregate = "sum"
        recurring = {
            "aggregate_usage": aggregate,
            "interval": rec.enum("interval", ("day", "month", "week", "year"), required=True),
            "interval_count": rec.int("interval_count", minimum=1) or 1,
            "usage_type": usage_type,
        }
        if meter is not None:
            recurring["meter"] = meter
    unit, unit_dec = _amount_pair(p, "unit_amount")
    tiers: list[dict[str, Any]] = []
    tiers_mode = None
    transform = None
    custom = p.hash("custom_unit_amount", ("enabled", "maximum", "minimum", "preset"))
    if scheme == "tiered":
        tiers_mode = p.enum("tiers_mode", ("graduated", "volume"), required=True)
        tiers = _tiers(p)
        if not tiers:
            raise missing("tiers")
        if unit is not None or unit_dec is not None:
            raise invalid("unit_amount", "unit_amount cannot be set on a tiered price; set the amounts in tiers.")
    else:
        if p.has("tiers") or p.has("tiers_mode"):
            raise invalid("tiers", "Tiers can only be set when billing_scheme is tiered.")
        if unit_dec is None and custom is None:
            raise error(400, "Missing required param: unit_amount.", param="unit_amount", code="parameter_missing")
    tq = p.hash("transform_quantity", ("divide_by", "round"))
    if tq is not None:
        if scheme == "tiered":
            raise invalid("transform_quantity", "transform_quantity cannot be combined with tiers.")
        transform = {
            "divide_by": tq.int("divide_by", required=True, minimum=1),
            "round": tq.enum("round", ("down", "up"), required=True),
        }
    pid = overrides.get("id") or sb.new_id("price_")
    if sb.store.get("prices", pid):
        raise error(400, f"Price already exists: {pid}", param="id", code="resource_already_exists")
    lookup_key = p.str("lookup_key", max_length=200)
    if lookup_key:
        for other in sb.store.collection("prices").values():
            if other.get("lookup_key") == lookup_key:
                if p.bool("transfer_lookup_key"):
                    other["lookup_key"] = None
                else:
                    raise invalid("lookup_key", f"A price (`{other['id']}`) already uses that lookup key.")
    price = {
        "id": pid,
        "object": "price",
        "active": p.bool("active", True),
        "billing_scheme": scheme,
        "created": overrides.get("created") or sb.now(),
        "currency": currency,
        "custom_unit_amount": None if custom is None else {
            "maximum": custom.int("maximum"), "minimum": custom.int("minimum"), "preset": custom.int("preset"),
        },
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": p.metadata(),
        "nickname": p.str("nickname"),
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": p.enum("tax_behavior", ("exclusive", "inclusive", "unspecified"), default="unspecified"),
        "tiers": tiers if scheme == "tiered" else None,
        "tiers_mode": tiers_mode,
        "transform_quantity": transform,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit if scheme == "per_unit" else None,
        "unit_amount_decimal": unit_dec if scheme == "per_unit" else None,
    }
    if price["tiers"] is None:
        del price["tiers"]
    currency_options = p.raw("currency_options")
    if isinstance(currency_options, dict):
        price["currency_options"] = {
            cur.lower(): _currency_option(Params(opt, ("unit_amount", "unit_amount_decimal", "tax_behavior", "tiers",
                                                       "custom_unit_amount"), f"currency_options[{cur}]"))
            for cur, opt in currency_options.items()
        }
    sb.store.put("prices", price)
    sb.emit("price.created", "prices", price, request=call.request if call else None)
    return sb.respond("prices", price, p)


def _currency_option(p: Params) -> dict[str, Any]:
    unit, unit_dec = _amount_pair(p, "unit_amount")
    return {
        "custom_unit_amount": None,
        "tax_behavior": p.enum("tax_behavior", ("exclusive", "inclusive", "unspecified"), default="unspecified"),
        "unit_amount": unit,
        "unit_amount_decimal": unit_dec,
    }


def list_prices(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, (*LIST_PARAMS, "active", "created", "currency", "lookup_keys", "product", "recurring",
                             "type"))
    active = p.bool("active")
    currency = (p.str("currency") or "").lower() or None
    product = p.str("product")
    ptype = p.enum("type", ("one_time", "recurring"))
    lookup_keys = p.array("lookup_keys")
    rec = p.hash("recurring", ("interval", "usage_type", "meter"))
    interval = rec.enum("interval", ("day", "month", "week", "year")) if rec else None
    usage_type = rec.enum("usage_type", ("licensed", "metered")) if rec else None
    created = created_filter(p)

    def where(o: dict[str, Any]) -> bool:
        r = o.get("recurring") or {}
        return (
            created(o)
            and (active is None or o["active"] == active)
            and (currency is None or o["currency"] == currency)
            and (product is None or o["product"] == product)
            and (ptype is None or o["type"] == ptype)
            and (not lookup_keys or o.get("lookup_key") in lookup_keys)
            and (interval is None or r.get("interval") == interval)
            and (usage_type is None or r.get("usage_type") == usage_type)
        )

    return list_object(sb, p, "prices", "/v1/prices", where=where, label="price")


def update_price(sb: StripeSandbox, call: Call) -> dict[str, Any]:
    p = Params(call.params, ("active", "lookup_key", "metadata", "nickname", "tax_behavior", "transfer_lookup_key",
                             "currency_options"))
    price = sb.require("prices", call["id"], "price")
    before = {k: price.get(k) for k in ("active", "lookup_key", "metadata", "nickname", "tax_behavior")}
    if p.has("active"):
        price["active"] = p.bool("active")
    if p.has("nickname"):
        price["nickname"] = p.str("nickname") or None
    if p.has("lookup_key"):
        price["lookup_key"] = p.str("lookup_key") or None
    if p.has("tax_behavior"):
        price["tax_behavior"] = p.enum("tax_behavior", ("exclusive", "inclusive", "unspecified"))
    price["metadata"] = p.metadata(price["metadata"])
    previous = {k: v for k, v in before.items() if price.get(k) != v}
    if previous:
        sb.emit("price.updated", "prices", price, previous, request=call.request)
    return sb.respond("prices", price, p)
