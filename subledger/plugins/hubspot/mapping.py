"""Which HubSpot properties carry the customer link, the contract terms and the write-back fields.

The defaults (:data:`DEFAULT_MAPPING_YAML`) fit a portal with the custom properties listed in
``docs/connectors/hubspot.md``; a connection may override any of them with a YAML file
(``mapping_file``) or inline (``mapping``). Unknown keys are refused, so a typo is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from subledger.core.config_files import read_mapping_file
from subledger.core.errors import ConfigError

DEFAULT_MAPPING_YAML = """\
# subledger HubSpot mapping: HubSpot property names (internal names) per term.
company:
  canonical_id: subledger_id            # the canonical customer id; empty: match by domain or name
  tax_id: null                          # a property holding the tax id, if the portal has one
write_back:                             # canonical field -> company property (docs/sync.md)
  usage_to_date: subledger_usage_to_date
  overage_to_date: subledger_overage_to_date
  last_invoice: subledger_last_invoice
  open_findings: subledger_open_findings
deal_write_back: {}                     # canonical field -> deal property, mirrored on the company's
                                        # closed-won deals (e.g. usage_to_date: subledger_usage_to_date)
deal:
  closed_won_stages: [closedwon]        # dealstage values read as signed contracts
  currency: deal_currency_code          # ISO code; a deal without one is rejected
  start_date: subledger_term_start      # first day of service
  end_date: subledger_term_end          # last day of service (inclusive); empty: open-ended
  billing_interval: subledger_billing_interval   # monthly, quarterly, annually (or month/quarter/year)
  minimum_commitment: subledger_minimum_commitment  # money per minimum_per
  minimum_per: period                   # period or term
  prepaid_credits: subledger_prepaid_credits       # money, usable over the term
  prepaid_credits_expire: subledger_prepaid_credits_expire  # first day the credits are gone; empty: day after term end
line_item:
  meter: subledger_meter                # set: a usage line; empty: a recurring flat fee
  included_units: subledger_included_units
  overage_rate: subledger_overage_rate  # price per unit above the included units
  package_size: subledger_package_size  # units per package: the overage rate is then a package's price (rounded up)
  tiers: subledger_tiers                # "1000:0.02; 10000:0.015; inf:0.01" (up_to:unit_price[+flat_fee])
  tier_model: subledger_tier_model      # graduated (default) or volume
  price: price
  quantity: quantity
  billing_frequency: recurringbillingfrequency
  product_id: hs_product_id
product:                                # read when the line item leaves the term empty
  meter: subledger_meter
  included_units: subledger_included_units
  overage_rate: subledger_overage_rate
  package_size: subledger_package_size
  tiers: subledger_tiers
"""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompanyMapping(_Strict):
    canonical_id: str | None = "subledger_id"
    tax_id: str | None = None


class WriteBackMapping(_Strict):
    usage_to_date: str = "subledger_usage_to_date"
    overage_to_date: str = "subledger_overage_to_date"
    last_invoice: str = "subledger_last_invoice"
    open_findings: str = "subledger_open_findings"

    def properties(self) -> dict[str, str]:
        """Canonical name -> company property."""
        return dict(self.model_dump())


class DealMapping(_Strict):
    closed_won_stages: list[str] = Field(default_factory=lambda: ["closedwon"], min_length=1)
    currency: str = "deal_currency_code"
    start_date: str = "subledger_term_start"
    end_date: str = "subledger_term_end"
    billing_interval: str = "subledger_billing_interval"
    minimum_commitment: str | None = "subledger_minimum_commitment"
    minimum_per: Literal["period", "term"] = "period"
    prepaid_credits: str | None = "subledger_prepaid_credits"
    prepaid_credits_expire: str | None = "subledger_prepaid_credits_expire"


class LineItemMapping(_Strict):
    meter: str = "subledger_meter"
    included_units: str = "subledger_included_units"
    overage_rate: str = "subledger_overage_rate"
    package_size: str | None = "subledger_package_size"
    tiers: str = "subledger_tiers"
    tier_model: str = "subledger_tier_model"
    price: str = "price"
    quantity: str = "quantity"
    billing_frequency: str = "recurringbillingfrequency"
    product_id: str = "hs_product_id"


class ProductMapping(_Strict):
    meter: str | None = "subledger_meter"
    included_units: str | None = "subledger_included_units"
    overage_rate: str | None = "subledger_overage_rate"
    package_size: str | None = "subledger_package_size"
    tiers: str | None = "subledger_tiers"


CANONICAL_FIELDS = ("usage_to_date", "overage_to_date", "last_invoice", "open_findings")


class HubSpotMapping(_Strict):
    """The whole mapping; every section and key is optional (defaults above)."""

    company: CompanyMapping = CompanyMapping()
    write_back: WriteBackMapping = WriteBackMapping()
    deal_write_back: dict[Literal[CANONICAL_FIELDS], str] = Field(default_factory=dict)  # type: ignore[valid-type]
    deal: DealMapping = DealMapping()
    line_item: LineItemMapping = LineItemMapping()
    product: ProductMapping = ProductMapping()

    def company_properties(self) -> list[str]:
        names = ["name", "domain", *self.write_back.properties().values()]
        names += [p for p in (self.company.canonical_id, self.company.tax_id) if p]
        return sorted(set(names))

    def deal_properties(self) -> list[str]:
        d = self.deal
        names = ["dealname", "dealstage", "closedate", d.currency, d.start_date, d.end_date, d.billing_interval]
        names += [p for p in (d.minimum_commitment, d.prepaid_credits, d.prepaid_credits_expire) if p]
        return sorted(set(names))

    def line_item_properties(self) -> list[str]:
        return sorted({"name", *(p for p in self.line_item.model_dump().values() if p)})

    def product_properties(self) -> list[str]:
        return sorted({"name", *(p for p in self.product.model_dump().values() if p)})


def load_mapping(raw: dict[str, Any] | None = None, path: str | Path | None = None) -> HubSpotMapping:
    """The mapping from a YAML file and/or an inline dict (inline wins), over the defaults.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown or has a bad value,
            naming the file and the key.
    """
    data: dict[str, Any] = {}
    source = "the connection's mapping"
    if path is not None:
        file = Path(path).expanduser()
        source = str(file)
        data = read_mapping_file(
            file, what="HubSpot mapping file",
            missing_fix="give mapping_file the path of a YAML file (see docs/connectors/hubspot.md)",
            shape_fix="start it with company:, deal: ...",
        )
    for section, values in (raw or {}).items():
        data[section] = {**(data.get(section) or {}), **(values or {})} if isinstance(values, dict) else values
    try:
        return HubSpotMapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: {problems}",
                          fix="use the keys and values of the default mapping in docs/connectors/hubspot.md") from None
