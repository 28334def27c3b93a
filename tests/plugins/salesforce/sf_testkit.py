"""A small org for the Salesforce tests: two customers under contract, one malformed deal.

Acme's closed-won opportunity sells API calls (10,000 included a month, then $0.02 a
call) and a $500 platform fee under an activated 12-month contract billed monthly with a
$100 minimum. Globex buys API calls on graduated tiers. Initech's deal carries a tier
string that is not JSON, so its contract is rejected naming the field.
"""

from __future__ import annotations

from typing import Any

ACME = "0015g00000ACMEAAA"
GLOBEX = "0015g00000GLBXAAA"
INITECH = "0015g00000INTCAAA"
ACME_OPP = "0065g00000ACMEAAA"
GLOBEX_OPP = "0065g00000GLBXAAA"
INITECH_OPP = "0065g00000INTCAAA"
ACME_CONTRACT = "8005g00000ACMEAAA"
API_PRODUCT = "01t5g00000APIAAAA"
PLATFORM_PRODUCT = "01t5g00000PLATAAA"
GLOBEX_TIERS = '[{"up_to": 100000, "unit_price": "0.002"}, {"up_to": null, "unit_price": "0.001"}]'


def org_fixture() -> dict[str, Any]:
    """The seed document of the test org."""
    return {
        "Product2": [
            {"Id": API_PRODUCT, "Name": "API calls", "ProductCode": "API", "Meter__c": "api_calls", "IsActive": True},
            {"Id": PLATFORM_PRODUCT, "Name": "Platform", "ProductCode": "PLATFORM", "IsActive": True},
        ],
        "Pricebook2": [{"Id": "01s5g00000STDAAAA", "Name": "Standard Price Book", "IsActive": True,
                        "IsStandard": True}],
        "PricebookEntry": [
            {"Id": "01u5g00000APIAAAA", "Pricebook2Id": "01s5g00000STDAAAA", "Product2Id": API_PRODUCT,
             "UnitPrice": 0, "IsActive": True, "CurrencyIsoCode": "USD"},
            {"Id": "01u5g00000PLTAAAA", "Pricebook2Id": "01s5g00000STDAAAA", "Product2Id": PLATFORM_PRODUCT,
             "UnitPrice": 500, "IsActive": True, "CurrencyIsoCode": "USD"},
        ],
        "Account": [
            {"Id": ACME, "Name": "Acme Corp", "Website": "https://www.acme.example", "Subledger_Id__c": "acme",
             "BillingCountryCode": "US", "CurrencyIsoCode": "USD"},
            {"Id": GLOBEX, "Name": "Globex", "Website": "globex.example", "CurrencyIsoCode": "USD"},
            {"Id": INITECH, "Name": "Initech", "CurrencyIsoCode": "USD"},
        ],
        "Contract": [
            {"Id": ACME_CONTRACT, "AccountId": ACME, "Status": "Activated", "StartDate": "2026-01-01",
             "ContractTerm": 12, "Billing_Interval__c": "Monthly", "Minimum_Commitment__c": "100.00",
             "CurrencyIsoCode": "USD"},
        ],
        "Opportunity": [
            {"Id": ACME_OPP, "AccountId": ACME, "Name": "Acme 2026", "StageName": "Closed Won",
             "CloseDate": "2025-12-15", "CurrencyIsoCode": "USD", "ContractId": ACME_CONTRACT},
            {"Id": GLOBEX_OPP, "AccountId": GLOBEX, "Name": "Globex 2026", "StageName": "Closed Won",
             "CloseDate": "2026-02-01", "CurrencyIsoCode": "USD", "Billing_Interval__c": "Quarterly"},
            {"Id": INITECH_OPP, "AccountId": INITECH, "Name": "Initech 2026", "StageName": "Closed Won",
             "CloseDate": "2026-03-01", "CurrencyIsoCode": "USD"},
            {"Id": "0065g00000LOSTAAA", "AccountId": GLOBEX, "Name": "Globex upsell", "StageName": "Closed Lost",
             "CloseDate": "2026-03-01", "CurrencyIsoCode": "USD"},
        ],
        "OpportunityLineItem": [
            {"Id": "00k5g00000ACM1AAA", "OpportunityId": ACME_OPP, "Product2Id": API_PRODUCT,
             "PricebookEntryId": "01u5g00000APIAAAA", "Quantity": 1, "UnitPrice": 0,
             "Included_Units__c": 10000, "Overage_Rate__c": "0.02"},
            {"Id": "00k5g00000ACM2AAA", "OpportunityId": ACME_OPP, "Product2Id": PLATFORM_PRODUCT,
             "PricebookEntryId": "01u5g00000PLTAAAA", "Quantity": 1, "UnitPrice": 500},
            {"Id": "00k5g00000GLX1AAA", "OpportunityId": GLOBEX_OPP, "Product2Id": API_PRODUCT,
             "PricebookEntryId": "01u5g00000APIAAAA", "Quantity": 1, "UnitPrice": 0,
             "Pricing_Tiers__c": GLOBEX_TIERS},
            {"Id": "00k5g00000INT1AAA", "OpportunityId": INITECH_OPP, "Product2Id": API_PRODUCT,
             "PricebookEntryId": "01u5g00000APIAAAA", "Quantity": 1, "UnitPrice": 0,
             "Pricing_Tiers__c": "0-1000: 0.02; 1001+: 0.01"},
        ],
    }
