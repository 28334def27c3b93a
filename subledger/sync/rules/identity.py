"""Rule ``identity``: customer records that could not be tied to one canonical customer."""

from __future__ import annotations

from collections.abc import Iterable

from subledger.core.model.base import evidence_ref
from subledger.sync.rules.base import Drift, Rule, RuleContext


class IdentityRule(Rule):
    """A record matching several canonical customers, or none, is a finding, never a guess."""

    name = "identity"
    reads = ("crm", "billing", "metering", "erp")
    description = "customer records with no canonical customer, or with several candidates"

    def evaluate(self, ctx: RuleContext) -> Iterable[Drift]:
        for issue in ctx.identity_issues:
            if issue.kind == "ambiguous":
                summary = (
                    f"{issue.system} customer {issue.external_id} ({issue.name}) matches "
                    f"{len(issue.candidates)} customers on {issue.matched_on}: {', '.join(issue.candidates)}"
                )
                fix = "link it by hand: subledger link SYSTEM EXTERNAL_ID CANONICAL_ID"
            else:
                summary = f"{issue.system} customer {issue.external_id} ({issue.name}) is not linked to any customer"
                fix = "add the canonical id to its link field, or run: subledger link SYSTEM EXTERNAL_ID CANONICAL_ID"
            yield Drift(
                key=f"{issue.kind}:{issue.system}:{issue.external_id}",
                summary=summary,
                customer=None,
                evidence=[evidence_ref(issue.system, "customer", issue.external_id)],
                details={"kind": issue.kind, "candidates": issue.candidates, "fix": fix},
            )
