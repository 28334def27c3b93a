"""The built-in reconciliation rules, registered through the ``subledger`` entry point
exactly as a third party's rules would be (``rules = "subledger.sync.rules.builtin"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from subledger.core.hookspecs import hookimpl
from subledger.sync.rules.billing import OverBillingRule, UnbilledUsageRule, UnmatchedInvoiceLineRule
from subledger.sync.rules.cash import PaidInBillingOpenInErpRule, UnappliedPaymentRule
from subledger.sync.rules.credits import ExpiredCreditUnrecognizedRule
from subledger.sync.rules.crm_fields import CrmUsageFieldsRule
from subledger.sync.rules.identity import IdentityRule
from subledger.sync.rules.journal import JournalNotInErpRule
from subledger.sync.rules.orphans import (
    BillingCustomerWithoutContractRule,
    ContractWithoutBillingRule,
    CustomerMissingFromErpRule,
    InvoiceMissingFromErpRule,
)
from subledger.sync.rules.terms_drift import TermsDriftRule
from subledger.sync.rules.thresholds import ThresholdRule
from subledger.sync.rules.usage_drift import UsageDriftRule

BUILTIN_RULES = (
    IdentityRule,
    UnbilledUsageRule,
    OverBillingRule,
    UnmatchedInvoiceLineRule,
    ContractWithoutBillingRule,
    BillingCustomerWithoutContractRule,
    InvoiceMissingFromErpRule,
    CustomerMissingFromErpRule,
    UnappliedPaymentRule,
    PaidInBillingOpenInErpRule,
    UsageDriftRule,
    TermsDriftRule,
    ThresholdRule,
    CrmUsageFieldsRule,
    JournalNotInErpRule,
    ExpiredCreditUnrecognizedRule,
)


@hookimpl
def register_rules(register: Callable[[Any], None]) -> None:
    for rule in BUILTIN_RULES:
        register(rule)
