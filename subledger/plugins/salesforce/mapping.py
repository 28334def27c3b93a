"""The mapping file: which Salesforce objects and fields hold customers, terms and write-back fields.

Every term is read from the first non-empty field of a list of ``Object.Field`` sources,
so one mapping serves orgs that keep a term on the line item, the product or the
contract. The defaults fit a standard org plus the custom fields listed in
``docs/connectors/salesforce.md``; ``preset: cpq`` reads Salesforce CPQ (``SBQQ__``)
line-item fields as well. A mapping file overrides any part::

    preset: cpq
    customer: {canonical_id_field: Subledger_Id__c}
    contracts: {default_currency: USD}
    terms:
      overage_rate: [OpportunityLineItem.Overage_Rate__c, PricebookEntry.Overage_Rate__c]
      tiers: []                      # not read
    write_back: {object: Account, fields: {usage_to_date: Usage_To_Date__c}}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from subledger.core.config_files import read_mapping_file
from subledger.core.errors import ConfigError

TERM_OBJECTS = ("Contract", "Opportunity", "OpportunityLineItem", "Product2", "PricebookEntry")
CONTRACT_LEVEL = ("start_date", "end_date", "currency", "billing_interval", "minimum_commitment",
                  "minimum_commitment_period", "prepaid_credits", "prepaid_credits_expire")
LINE_LEVEL = ("meter", "included_units", "overage_rate", "package_size", "tiers", "tier_mode", "quantity",
              "unit_price",
              "charge_type", "billing_timing")
WRITE_BACK_NAMES = ("usage_to_date", "overage_to_date", "last_invoice", "open_findings")
_SOURCE = re.compile(r"^(Contract|Opportunity|OpportunityLineItem|Product2|PricebookEntry)\.[A-Za-z][A-Za-z0-9_]*$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerMapping(_Strict):
    """Account fields of a canonical customer."""

    canonical_id_field: str | None = Field(
        default="Subledger_Id__c", description="external-id field holding the canonical customer id (the link)"
    )
    name_field: str = "Name"
    email_field: str | None = None
    website_field: str | None = Field(default="Website", description="its domain is matched when email is absent")
    tax_id_field: str | None = None
    country_field: str | None = "BillingCountryCode"
    currency_field: str | None = Field(default="CurrencyIsoCode", description="null in a single-currency org")

    @field_validator("canonical_id_field", "name_field", "email_field", "website_field", "tax_id_field",
                     "country_field", "currency_field")
    @classmethod
    def _api_name(cls, value: str | None) -> str | None:
        if value is not None and not _FIELD.match(value):
            raise ValueError(f"{value!r} is not a field API name (letters, digits, underscores: Subledger_Id__c)")
        return value


class ContractMapping(_Strict):
    """How closed-won opportunities become contracts."""

    default_currency: str | None = Field(
        default=None,
        description="the org currency of a single-currency org; null: a contract without a currency is rejected",
    )
    contract_field: str | None = Field(
        default="ContractId", description="the Opportunity lookup to the Contract whose dates and terms apply"
    )


def _sources(*items: str) -> list[str]:
    return list(items)


class TermsMapping(_Strict):
    """Where each term is read: a list of ``Object.Field``, the first non-empty value wins."""

    start_date: list[str] = Field(default_factory=lambda: _sources("Contract.StartDate", "Opportunity.CloseDate"))
    end_date: list[str] = Field(default_factory=lambda: _sources("Contract.EndDate"))
    currency: list[str] = Field(
        default_factory=lambda: _sources("Opportunity.CurrencyIsoCode", "Contract.CurrencyIsoCode"))
    billing_interval: list[str] = Field(
        default_factory=lambda: _sources("Contract.Billing_Interval__c", "Opportunity.Billing_Interval__c"))
    minimum_commitment: list[str] = Field(
        default_factory=lambda: _sources("Contract.Minimum_Commitment__c", "Opportunity.Minimum_Commitment__c"))
    minimum_commitment_period: list[str] = Field(
        default_factory=lambda: _sources("Contract.Minimum_Commitment_Period__c",
                                         "Opportunity.Minimum_Commitment_Period__c"))
    prepaid_credits: list[str] = Field(
        default_factory=lambda: _sources("Contract.Prepaid_Credits__c", "Opportunity.Prepaid_Credits__c"))
    prepaid_credits_expire: list[str] = Field(
        default_factory=lambda: _sources("Contract.Prepaid_Credits_Expire__c", "Opportunity.Prepaid_Credits_Expire__c"),
        description="the date the prepaid credits expire (at its start); default: the day after the term ends")
    meter: list[str] = Field(default_factory=lambda: _sources("OpportunityLineItem.Meter__c", "Product2.Meter__c"))
    included_units: list[str] = Field(default_factory=lambda: _sources("OpportunityLineItem.Included_Units__c"))
    overage_rate: list[str] = Field(
        default_factory=lambda: _sources("OpportunityLineItem.Overage_Rate__c", "PricebookEntry.Overage_Rate__c"))
    package_size: list[str] = Field(
        default_factory=lambda: _sources("OpportunityLineItem.Package_Size__c", "PricebookEntry.Package_Size__c"),
        description="units per package; the overage rate is then the price of one package (rounded up)")
    tiers: list[str] = Field(default_factory=lambda: _sources(
        "OpportunityLineItem.Pricing_Tiers__c", "PricebookEntry.Pricing_Tiers__c", "Product2.Pricing_Tiers__c"))
    tier_mode: list[str] = Field(
        default_factory=lambda: _sources("OpportunityLineItem.Tier_Mode__c", "Product2.Tier_Mode__c"))
    quantity: list[str] = Field(default_factory=lambda: _sources("OpportunityLineItem.Quantity"))
    unit_price: list[str] = Field(default_factory=lambda: _sources("OpportunityLineItem.UnitPrice"))
    charge_type: list[str] = Field(default_factory=list, description="CPQ: Usage, Recurring or One-Time")
    billing_timing: list[str] = Field(default_factory=list, description="CPQ: Advance or Arrears")

    @field_validator("*")
    @classmethod
    def _valid_sources(cls, value: list[str]) -> list[str]:
        for source in value:
            if not _SOURCE.match(source):
                raise ValueError(f"{source!r} is not Object.Field with Object one of {', '.join(TERM_OBJECTS)}")
        return value

    def fields_of(self, sobject: str) -> set[str]:
        """Every field of ``sobject`` some term is read from."""
        found: set[str] = set()
        for name in type(self).model_fields:
            for source in getattr(self, name):
                obj, field = source.split(".", 1)
                if obj == sobject:
                    found.add(field)
        return found


class WriteBackMapping(_Strict):
    """Where ``update_customer_fields`` writes (and the customers stream reads back)."""

    object: Literal["Account", "Contract"] = Field(
        default="Account", description="Contract: the account's latest activated contract"
    )
    fields: dict[str, str] = Field(default_factory=lambda: {
        "usage_to_date": "Usage_To_Date__c", "overage_to_date": "Overage_To_Date__c",
        "last_invoice": "Last_Invoice__c", "open_findings": "Open_Findings__c"})

    @field_validator("fields")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        for name, field in value.items():
            if name not in WRITE_BACK_NAMES:
                raise ValueError(f"{name!r} is not a write-back field; use {', '.join(WRITE_BACK_NAMES)}")
            if not _FIELD.match(field):
                raise ValueError(f"{field!r} is not a field API name")
        return value


CPQ_TERMS = {
    "charge_type": ["OpportunityLineItem.SBQQ__ChargeType__c"],
    "billing_timing": ["OpportunityLineItem.SBQQ__BillingType__c"],
    "billing_interval": ["OpportunityLineItem.SBQQ__BillingFrequency__c", "Contract.Billing_Interval__c"],
}


class SalesforceMapping(_Strict):
    """The whole mapping file."""

    preset: Literal["standard", "cpq"] = "standard"
    customer: CustomerMapping = CustomerMapping()
    contracts: ContractMapping = ContractMapping()
    terms: TermsMapping = TermsMapping()
    write_back: WriteBackMapping = WriteBackMapping()


def build_mapping(raw: dict[str, Any] | None, *, source: str = "mapping") -> SalesforceMapping:
    """Validate a mapping document, applying its preset under the terms it sets itself.

    Raises:
        ConfigError: naming the bad key and the fix.
    """
    raw = dict(raw or {})
    if raw.get("preset") == "cpq":
        terms = dict(CPQ_TERMS)
        terms.update(raw.get("terms") or {})
        raw["terms"] = terms
    try:
        return SalesforceMapping.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False))
        raise ConfigError(f"Salesforce {source}: {problems}",
                          fix="correct the mapping (see docs/connectors/salesforce.md#the-mapping-file)") from None


def load_mapping(path: str | None) -> SalesforceMapping:
    """The mapping from a YAML file, or the defaults when ``path`` is None."""
    if path is None:
        return SalesforceMapping()
    file = Path(path).expanduser()
    raw = read_mapping_file(
        file, what="Salesforce mapping file",
        missing_fix="set mapping to the path of a YAML mapping file, or remove it to use the defaults",
        shape_fix="write keys such as terms: {...}",
    )
    return build_mapping(raw, source=f"mapping file {file}")
