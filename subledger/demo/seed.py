"""The company as each vendor sandbox's seed document (Salesforce, Stripe, NetSuite).

Each builder is a pure function from the :class:`~subledger.demo.company.Company` to the
documented fixture format of that sandbox (see each connector's doc). NetSuite's copy of
the invoices is built from what Stripe actually billed, read from the Stripe sandbox after
seeding it, the way a real billing-to-ERP export would work.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from subledger.demo.company import (
    AS_OF,
    CREDIT_EXPIRES,
    CURRENCY,
    METER,
    YEAR_START,
    Company,
    Customer,
    Leak,
    Plan,
    month_starts,
)

API_PRODUCT = "01t5g00000DEMOAPI"
PLATFORM_PRODUCT = "01t5g00000DEMOPLT"
PRICEBOOK = "01s5g00000DEMOSTD"
API_ENTRY = "01u5g00000DEMOAPI"
PLATFORM_ENTRY = "01u5g00000DEMOPLT"
STRIPE_METER = "mtr_demo_api_calls"


def ts(d: date, hour: int = 0) -> int:
    """Unix seconds of ``d`` at ``hour`` UTC."""
    return int(datetime.combine(d, time(hour), tzinfo=UTC).timestamp())


def _sf_tiers(plan: Plan) -> str:
    return json.dumps([{"up_to": t.up_to, "unit_price": str(t.unit_price)} for t in plan.tiers])


# -- Salesforce ---------------------------------------------------------------------------


def salesforce_fixture(company: Company) -> dict[str, Any]:
    """Accounts, activated contracts and closed-won opportunities with their line items."""
    doc: dict[str, Any] = {
        "Product2": [
            {"Id": API_PRODUCT, "Name": "API calls", "ProductCode": "API", "Meter__c": METER, "IsActive": True},
            {"Id": PLATFORM_PRODUCT, "Name": "Platform", "ProductCode": "PLATFORM", "IsActive": True},
        ],
        "Pricebook2": [{"Id": PRICEBOOK, "Name": "Standard Price Book", "IsActive": True, "IsStandard": True}],
        "PricebookEntry": [
            {"Id": API_ENTRY, "Pricebook2Id": PRICEBOOK, "Product2Id": API_PRODUCT, "UnitPrice": 0,
             "IsActive": True, "CurrencyIsoCode": CURRENCY},
            {"Id": PLATFORM_ENTRY, "Pricebook2Id": PRICEBOOK, "Product2Id": PLATFORM_PRODUCT, "UnitPrice": 0,
             "IsActive": True, "CurrencyIsoCode": CURRENCY},
        ],
        "Account": [], "Contract": [], "Opportunity": [], "OpportunityLineItem": [],
    }
    for c in company.customers:
        if c.crm != "salesforce":
            continue
        doc["Account"].append({"Id": c.account_id, "Name": c.name, "Website": f"https://www.{c.domain}",
                               "Subledger_Id__c": c.canonical_id, "BillingCountryCode": "US",
                               "CurrencyIsoCode": CURRENCY})
        contract: dict[str, Any] = {"Id": c.contract_id, "AccountId": c.account_id, "Status": "Activated",
                                    "StartDate": YEAR_START.isoformat(), "Billing_Interval__c": "Monthly",
                                    "CurrencyIsoCode": CURRENCY}
        if c.plan.minimum is not None:
            contract["Minimum_Commitment__c"] = f"{c.plan.minimum:.2f}"
        if c.plan.prepaid_credit is not None:
            contract["Prepaid_Credits__c"] = f"{c.plan.prepaid_credit:.2f}"
            contract["Prepaid_Credits_Expire__c"] = CREDIT_EXPIRES.isoformat()
        doc["Contract"].append(contract)
        doc["Opportunity"].append({"Id": c.opportunity_id, "AccountId": c.account_id, "Name": f"{c.name} 2026",
                                   "StageName": "Closed Won", "CloseDate": "2025-10-20", "CurrencyIsoCode": CURRENCY,
                                   "ContractId": c.contract_id})
        usage_line: dict[str, Any] = {"Id": f"00k5g0000{c.n:05d}DMA1"[:18], "OpportunityId": c.opportunity_id,
                                      "Product2Id": API_PRODUCT, "PricebookEntryId": API_ENTRY, "Quantity": 1,
                                      "UnitPrice": 0}
        if c.plan.unit_price is not None:
            usage_line["Overage_Rate__c"] = str(c.plan.unit_price)
        elif c.plan.package_price is not None:
            usage_line["Overage_Rate__c"] = str(c.plan.package_price)  # the price of one package
            usage_line["Package_Size__c"] = c.plan.package_size
        else:
            usage_line["Pricing_Tiers__c"] = _sf_tiers(c.plan)
            if c.plan.model == "volume":
                usage_line["Tier_Mode__c"] = "Volume"
        doc["OpportunityLineItem"].append(usage_line)
        if c.plan.platform_fee is not None:
            doc["OpportunityLineItem"].append({
                "Id": f"00k5g0000{c.n:05d}DMA2"[:18], "OpportunityId": c.opportunity_id,
                "Product2Id": PLATFORM_PRODUCT, "PricebookEntryId": PLATFORM_ENTRY, "Quantity": 1,
                "UnitPrice": int(c.plan.platform_fee)})
    return doc


# -- Stripe -------------------------------------------------------------------------------


def _cents_text(dollars: Decimal) -> str:
    return format((dollars * 100).normalize(), "f")


def _stripe_price(c: Customer) -> dict[str, Any]:
    recurring = {"interval": "month", "usage_type": "metered", "meter": STRIPE_METER}
    base = {"id": f"price_demo{c.n:05d}_api", "product": "prod_demo_api", "currency": CURRENCY.lower(),
            "recurring": recurring}
    if c.plan.unit_price is not None:
        rate = c.stripe_unit_price or c.plan.unit_price
        return {**base, "billing_scheme": "per_unit", "unit_amount_decimal": _cents_text(rate)}
    if c.plan.package_price is not None:
        return {**base, "billing_scheme": "per_unit", "unit_amount_decimal": _cents_text(c.plan.package_price),
                "transform_quantity": {"divide_by": c.plan.package_size, "round": "up"}}
    tiers = [{"up_to": t.up_to if t.up_to is not None else "inf", "unit_amount_decimal": _cents_text(t.unit_price)}
             for t in c.plan.tiers]
    mode = "volume" if c.plan.model == "volume" else "graduated"
    return {**base, "billing_scheme": "tiered", "tiers_mode": mode, "tiers": tiers}


def stripe_fixture(company: Company) -> dict[str, Any]:
    """Customers, the meter, per-customer prices, a year of meter events and subscriptions.

    The sandbox bills each subscription month by month up to its clock (``AS_OF``) from the
    meter events seeded before it. Late usage is seeded separately (:func:`stripe_late_usage`).
    """
    start = ts(YEAR_START)
    doc: dict[str, Any] = {
        "clock": int(AS_OF.timestamp()),
        "customers": [],
        "products": [{"id": "prod_demo_api", "name": "API calls"}, {"id": "prod_demo_platform", "name": "Platform"}],
        "meters": [{"id": STRIPE_METER, "display_name": "API calls", "event_name": METER,
                    "default_aggregation": {"formula": "sum"}, "created": start - 86400}],
        "prices": [], "meter_events": [], "subscriptions": [],
    }
    for c in company.customers:
        doc["customers"].append({"id": c.stripe_id, "name": c.name, "email": f"billing@{c.domain}",
                                 "metadata": {"subledger_id": c.canonical_id}, "address": {"country": "US"},
                                 "invoice_prefix": f"DM{c.n:05d}",
                                 "created": start - 86400})
        price = _stripe_price(c)
        doc["prices"].append(price)
        items: list[dict[str, Any]] = [{"price": price["id"]}]
        if c.plan.platform_fee is not None:
            fee = {"id": f"price_demo{c.n:05d}_platform", "product": "prod_demo_platform",
                   "currency": CURRENCY.lower(), "unit_amount": int(c.plan.platform_fee * 100),
                   "recurring": {"interval": "month"}}
            doc["prices"].append(fee)
            items.append({"price": fee["id"], "quantity": 1})
        for m, qty in c.usage.items():
            # Two reports a month keep the volume small (Stripe usage is read as daily summaries).
            first = qty // 2000 * 1000
            for day, value in ((7, first), (21, qty - first)):
                if value:
                    doc["meter_events"].append({
                        "event_name": METER, "timestamp": ts(m.replace(day=day), 12),
                        "identifier": f"demo-{c.n}-{m:%Y%m}-{day}",
                        "payload": {"stripe_customer_id": c.stripe_id, "value": str(value)}})
        if c.plan.prepaid_credit is not None:
            _prepaid(doc, c, start)
        sub: dict[str, Any] = {"id": f"sub_demo{c.n:05d}", "customer": c.stripe_id, "created": start, "items": items}
        if c.send_invoice:
            sub.update(collection_method="send_invoice", days_until_due=30)
        doc["subscriptions"].append(sub)
    doc["customers"].append({"id": "cus_demo_pilot", "name": company.unlinked_name, "email": "pilot@gmail.com",
                             "created": start + 90 * 86400})
    return doc


def _prepaid(doc: dict[str, Any], c: Customer, start: int) -> None:
    """A paid credit grant usable until ``CREDIT_EXPIRES``, and the paid invoice that bought it.

    The invoice item names the grant (``metadata.subledger_credit_grant``), which is how
    revenue recognition knows the purchase is the grant's price, a contract liability.
    Stripe applies credit when it finalizes an invoice, and the last covered month's
    invoice is finalized the moment the month ends; so the grant carries one day of grace
    past the contract's expiry date, as a Stripe admin would set it.
    """
    assert c.plan.prepaid_credit is not None
    grant_id = f"credgr_demo{c.n:05d}"
    cents = int(c.plan.prepaid_credit * 100)
    doc.setdefault("credit_grants", []).append({
        "id": grant_id, "customer": c.stripe_id, "category": "paid", "name": "Prepaid API credit",
        "amount": {"type": "monetary", "monetary": {"currency": CURRENCY.lower(), "value": cents}},
        "applicability_config": {"scope": {"price_type": "metered"}},
        "created": start, "effective_at": start, "expires_at": ts(CREDIT_EXPIRES + timedelta(days=1))})
    doc.setdefault("invoices", []).append({
        "id": f"in_demo{c.n:05d}_credit", "customer": c.stripe_id, "created": start, "paid": True,
        "items": [{"amount": cents, "currency": CURRENCY.lower(),
                   "description": f"Prepaid API credit, {c.plan.prepaid_credit:,.2f} USD",
                   "metadata": {"subledger_credit_grant": grant_id}}]})


def stripe_late_usage(company: Company) -> dict[str, Any]:
    """Meter events for months Stripe already invoiced: they will never be billed by Stripe."""
    return {"meter_events": [
        {"event_name": METER, "timestamp": ts(lu.month.replace(day=15), 9), "identifier": f"demo-late-{lu.customer.n}",
         "payload": {"stripe_customer_id": lu.customer.stripe_id, "value": str(lu.quantity)}}
        for lu in company.late_usage]}


# -- NetSuite -----------------------------------------------------------------------------


def _major(minor: int) -> str:
    return f"{Decimal(minor) / 100:.2f}"


def _day(seconds: int | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).date().isoformat()


def _last_day(start: int, end: int) -> str:
    return datetime.fromtimestamp(end - 1, UTC).date().isoformat() if end > start else _day(start) or ""


def _ns_items(line: dict[str, Any]) -> list[dict[str, Any]]:
    """A Stripe invoice line as NetSuite item lines: the charge, then any prepaid credit it used."""
    dates = {"revRecStartDate": _day(line["period"]["start"]),
             "revRecEndDate": _last_day(line["period"]["start"], line["period"]["end"])}
    items = [{"item": {"id": "501"}, "description": line.get("description") or "", "quantity": 1,
              "amount": _major(line["amount"]), **dates}]
    for credit in line.get("pretax_credit_amounts") or []:
        items.append({"item": {"id": "501"}, "description": "Prepaid credit applied", "quantity": 1,
                      "amount": _major(-int(credit["amount"])), **dates})
    return items


def netsuite_fixture(company: Company, stripe_invoices: list[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """NetSuite's books: every customer, a copy of every billed Stripe invoice, the payments.

    ``stripe_invoices`` are the Stripe sandbox's invoice objects, each with its ``lines``
    list. ``base`` is the account (``standard_fixture()``); periods before 2026 are added.
    Planted here: the latest invoice of each ``missing_erp_invoice_customers`` is left out,
    and one paid invoice of each ``unapplied_payment_customers`` gets a payment applied to
    nothing. Both amounts are added to ``company.leaks``.
    """
    doc = dict(base)
    doc["clock"] = int(AS_OF.timestamp())
    doc["accounting_periods"] = [
        {"id": "191", "periodName": "Nov 2025", "startDate": "2025-11-01", "endDate": "2025-11-30"},
        {"id": "192", "periodName": "Dec 2025", "startDate": "2025-12-01", "endDate": "2025-12-31"},
        *base["accounting_periods"],
    ]
    by_stripe = {c.stripe_id: c for c in company.customers}
    ns_customer = {c.stripe_id: str(10000 + c.n) for c in company.customers}
    doc["customers"] = [{"id": ns_customer[c.stripe_id], "externalId": c.canonical_id, "companyName": c.name,
                         "email": f"billing@{c.domain}", "subsidiary": {"id": "1"}, "currency": {"id": "1"}}
                        for c in company.customers]
    invoices: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for inv in sorted(stripe_invoices, key=lambda i: (i["customer"], i["created"], i["id"])):
        if inv["customer"] in by_stripe and inv["status"] in ("open", "paid") and inv["total"] > 0:
            invoices[inv["customer"]].append(inv)
    doc["invoices"], doc["customer_payments"] = [], []
    next_id = 20000
    missing = set(company.missing_erp_invoice_customers)
    unapplied = set(company.unapplied_payment_customers)
    for stripe_id, invs in invoices.items():
        c = by_stripe[stripe_id]
        if c.canonical_id in missing:
            left_out = invs.pop()  # the latest, still open in Stripe: never exported
            company.leaks.append(Leak("invoice_missing_from_erp", c.canonical_id, left_out["total"],
                                      f"Stripe invoice {left_out['number']} never reached NetSuite",
                                      fixable=True))
        applied: list[dict[str, Any]] = []
        for inv in invs:
            next_id += 1
            ns_id = str(next_id)
            doc["invoices"].append({
                "id": ns_id, "tranId": inv["number"], "entity": {"id": ns_customer[stripe_id]},
                "currency": {"id": "1"}, "tranDate": _day(inv["created"]),
                "custbody_subledger_source_system": "stripe", "custbody_subledger_source_id": inv["id"],
                "item": {"items": [item for ln in inv["lines"] if ln["amount"] for item in _ns_items(ln)]}})
            if inv["status"] == "paid":
                applied.append({"doc": {"id": ns_id}, "apply": True, "amount": _major(inv["total"]),
                                "_total": inv["total"], "_number": inv["number"]})
        if c.canonical_id in unapplied and applied:
            stray = applied.pop(len(applied) // 2)
            next_id += 1
            doc["customer_payments"].append({
                "id": str(next_id), "customer": {"id": ns_customer[stripe_id]}, "currency": {"id": "1"},
                "payment": stray["amount"], "tranDate": (AS_OF.date()).replace(day=2).isoformat(),
                "apply": {"items": []}})
            company.leaks.append(Leak("unapplied_payment", c.canonical_id, stray["_total"],
                                      f"payment for {stray['_number']} recorded in NetSuite but not applied"))
            company.leaks.append(Leak("paid_in_billing_open_in_erp", c.canonical_id, stray["_total"],
                                      f"{stray['_number']} paid in Stripe, open in NetSuite"))
        if applied:
            next_id += 1
            total = sum(a["_total"] for a in applied)
            doc["customer_payments"].append({
                "id": str(next_id), "customer": {"id": ns_customer[stripe_id]}, "currency": {"id": "1"},
                "payment": _major(total), "tranDate": AS_OF.date().replace(day=2).isoformat(),
                "apply": {"items": [{k: v for k, v in a.items() if not k.startswith("_")} for a in applied]}})
    return doc


__all__ = ["month_starts", "netsuite_fixture", "salesforce_fixture", "stripe_fixture", "stripe_late_usage"]
