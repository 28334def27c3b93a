"""Revenue recognition (ASC 606 / IFRS 15): schedules and a balanced, immutable journal.

Pure pieces (no I/O): :mod:`.amortization`, :mod:`.curves`, :mod:`.schedule`,
:mod:`.usage`, :mod:`.credits`, :mod:`.commitments`, :mod:`.obligation`,
:mod:`.journal`, :mod:`.posting`, :mod:`.reports`, :mod:`.chart`. Store edge:
:mod:`.sources` (invoices, credit notes, grants, payments), :mod:`.contracts` (terms rated
by the rating engine), :mod:`.ledger` (posting, closing), :mod:`.run`.
"""

from subledger.core.revrec.accounts import AccountRole, ChartOfAccounts
from subledger.core.revrec.amortization import AmortizationPolicy, ServicePeriod
from subledger.core.revrec.calendar import Month
from subledger.core.revrec.commitments import CommitmentPolicy, commitment_curve
from subledger.core.revrec.credits import BreakagePolicy, breakage_curve, redemptions_curve
from subledger.core.revrec.curves import Incurred, Ratable
from subledger.core.revrec.journal import Document, EntryDraft, PaymentIn, build_entries
from subledger.core.revrec.obligation import Billing, LineKind, Obligation, Recognition, Treatment
from subledger.core.revrec.policy import RevrecPolicy
from subledger.core.revrec.posting import plan_postings
from subledger.core.revrec.run import RunResult, run_recognition

__all__ = [
    "AccountRole",
    "AmortizationPolicy",
    "Billing",
    "BreakagePolicy",
    "ChartOfAccounts",
    "CommitmentPolicy",
    "Document",
    "EntryDraft",
    "Incurred",
    "LineKind",
    "Month",
    "Obligation",
    "PaymentIn",
    "Ratable",
    "Recognition",
    "RevrecPolicy",
    "RunResult",
    "ServicePeriod",
    "Treatment",
    "breakage_curve",
    "build_entries",
    "commitment_curve",
    "plan_postings",
    "redemptions_curve",
    "run_recognition",
]
