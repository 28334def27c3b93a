"""The canonical model: one table class per concept, all importable from here."""

from subledger.core.model.action import Action
from subledger.core.model.apikey import ApiKey
from subledger.core.model.audit import AuditEntry
from subledger.core.model.base import Provenance, evidence_ref, payload_hash, record_id
from subledger.core.model.baseline import Baseline
from subledger.core.model.contract import Contract
from subledger.core.model.coverage import CoverageWindow
from subledger.core.model.credit import CreditGrant, CreditLedgerEntry
from subledger.core.model.credit_note import CreditNote
from subledger.core.model.customer import Customer
from subledger.core.model.finding import Finding, FindingEvent
from subledger.core.model.identity import ExternalRef
from subledger.core.model.invoice import Invoice, InvoiceLine
from subledger.core.model.journal import JournalEntry, JournalLine
from subledger.core.model.meter import Meter
from subledger.core.model.notification import Notification
from subledger.core.model.payment import Payment, PaymentApplication
from subledger.core.model.period import AccountingPeriod, ClosedPeriodError
from subledger.core.model.revenue import RevenueScheduleLine
from subledger.core.model.run import SyncRun
from subledger.core.model.schedule import Lock, Schedule
from subledger.core.model.sync_state import Connection, Reject, StreamState
from subledger.core.model.usage import UsageEvent, UsageRollup
from subledger.core.model.webhook_event import WebhookEvent

__all__ = [
    "AccountingPeriod",
    "Action",
    "ApiKey",
    "AuditEntry",
    "Baseline",
    "ClosedPeriodError",
    "Connection",
    "Contract",
    "CoverageWindow",
    "CreditGrant",
    "CreditLedgerEntry",
    "CreditNote",
    "Customer",
    "ExternalRef",
    "Finding",
    "FindingEvent",
    "Invoice",
    "InvoiceLine",
    "JournalEntry",
    "JournalLine",
    "Lock",
    "Meter",
    "Notification",
    "Payment",
    "PaymentApplication",
    "Provenance",
    "Reject",
    "RevenueScheduleLine",
    "Schedule",
    "StreamState",
    "SyncRun",
    "UsageEvent",
    "UsageRollup",
    "WebhookEvent",
    "evidence_ref",
    "payload_hash",
    "record_id",
]
