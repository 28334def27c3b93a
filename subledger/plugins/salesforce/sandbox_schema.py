"""The objects and fields the Salesforce sandbox knows: a standard org plus subledger's custom fields.

Field types are Salesforce's describe types (``id``, ``string``, ``textarea``, ``reference``,
``picklist``, ``currency``, ``double``, ``int``, ``percent``, ``boolean``, ``date``,
``datetime``, ``url``). The custom fields are the ones ``docs/connectors/salesforce.md``
tells an admin to create, plus the Salesforce CPQ (``SBQQ__``) fields of line items.
"""

from __future__ import annotations

from typing import Any

_AUDIT = {
    "Id": "id", "IsDeleted": "boolean", "CreatedDate": "datetime", "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
}

TERMS_FIELDS = {
    "Included_Units__c": "double",
    "Overage_Rate__c": "double",
    "Pricing_Tiers__c": "textarea",
    "Tier_Mode__c": "picklist",
    "Minimum_Commitment__c": "currency",
    "Minimum_Commitment_Period__c": "picklist",
    "Prepaid_Credits__c": "currency",
    "Prepaid_Credits_Expire__c": "date",
    "Package_Size__c": "double",
    "Billing_Interval__c": "picklist",
}

CPQ_LINE_FIELDS = {
    "SBQQ__ChargeType__c": "picklist",
    "SBQQ__BillingType__c": "picklist",
    "SBQQ__BillingFrequency__c": "picklist",
    "SBQQ__QuoteLine__c": "reference",
}

WRITE_BACK_FIELDS = {
    "Usage_To_Date__c": "textarea",
    "Overage_To_Date__c": "string",
    "Last_Invoice__c": "string",
    "Open_Findings__c": "string",
}

SOBJECTS: dict[str, dict[str, Any]] = {
    "Account": {
        "prefix": "001", "label": "Account",
        "fields": {**_AUDIT, "Name": "string", "Website": "url", "BillingCountryCode": "picklist",
                   "CurrencyIsoCode": "picklist", "Subledger_Id__c": "string", "Tax_Id__c": "string",
                   "Billing_Email__c": "email", **WRITE_BACK_FIELDS},
        "required": ["Name"],
    },
    "Contract": {
        "prefix": "800", "label": "Contract",
        "fields": {**_AUDIT, "AccountId": "reference", "ContractNumber": "string", "Status": "picklist",
                   "StatusCode": "picklist", "StartDate": "date", "EndDate": "date", "ContractTerm": "int",
                   "CurrencyIsoCode": "picklist", **TERMS_FIELDS, **WRITE_BACK_FIELDS},
        "required": ["AccountId"],
    },
    "Opportunity": {
        "prefix": "006", "label": "Opportunity",
        "fields": {**_AUDIT, "AccountId": "reference", "Name": "string", "StageName": "picklist",
                   "IsClosed": "boolean", "IsWon": "boolean", "CloseDate": "date", "Amount": "currency",
                   "CurrencyIsoCode": "picklist", "ContractId": "reference", "Pricebook2Id": "reference",
                   **TERMS_FIELDS},
        "required": ["Name", "StageName", "CloseDate"],
    },
    "OpportunityLineItem": {
        "prefix": "00k", "label": "Opportunity Product",
        "fields": {**_AUDIT, "OpportunityId": "reference", "PricebookEntryId": "reference",
                   "Product2Id": "reference", "Name": "string", "Quantity": "double", "UnitPrice": "currency",
                   "TotalPrice": "currency", "ServiceDate": "date", "Description": "textarea",
                   "CurrencyIsoCode": "picklist", "Meter__c": "string", **TERMS_FIELDS, **CPQ_LINE_FIELDS},
        "required": ["OpportunityId", "Quantity"],
    },
    "Product2": {
        "prefix": "01t", "label": "Product",
        "fields": {**_AUDIT, "Name": "string", "ProductCode": "string", "Family": "picklist",
                   "IsActive": "boolean", "QuantityUnitOfMeasure": "picklist", "Meter__c": "string",
                   "Pricing_Tiers__c": "textarea", "Tier_Mode__c": "picklist"},
        "required": ["Name"],
    },
    "PricebookEntry": {
        "prefix": "01u", "label": "Price Book Entry",
        "fields": {**_AUDIT, "Pricebook2Id": "reference", "Product2Id": "reference", "UnitPrice": "currency",
                   "IsActive": "boolean", "CurrencyIsoCode": "picklist", "Overage_Rate__c": "double",
                   "Pricing_Tiers__c": "textarea", "Package_Size__c": "double"},
        "required": ["Product2Id", "UnitPrice"],
    },
    "Pricebook2": {
        "prefix": "01s", "label": "Price Book",
        "fields": {**_AUDIT, "Name": "string", "IsActive": "boolean", "IsStandard": "boolean"},
        "required": ["Name"],
    },
}

NUMERIC = frozenset({"currency", "double", "int", "percent"})
READ_ONLY = frozenset({"Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsClosed", "IsWon",
                       "TotalPrice", "ContractNumber", "StatusCode", "EndDate"})


def describe_field(name: str, kind: str) -> dict[str, Any]:
    """One entry of a describe's ``fields`` (the attributes connectors read)."""
    return {
        "name": name,
        "label": name.removesuffix("__c").replace("_", " "),
        "type": kind,
        "custom": name.endswith("__c"),
        "updateable": name not in READ_ONLY,
        "createable": name not in READ_ONLY,
        "nillable": name != "Id",
        "length": 255 if kind in ("string", "url", "email", "picklist") else (131072 if kind == "textarea" else 0),
        "precision": 18 if kind in NUMERIC else 0,
        "scale": 6 if kind in ("double", "percent") else (2 if kind == "currency" else 0),
        "referenceTo": [],
        "externalId": name == "Subledger_Id__c",
        "filterable": kind != "textarea",
        "sortable": kind != "textarea",
    }
