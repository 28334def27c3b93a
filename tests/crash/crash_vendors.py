"""The writing connectors under crash test: their sandboxes, actions per variant, and checks.

Each harness says what "exactly once" means for its vendor's objects, counted in the
sandbox's own store (and, for updates, in its request log: a committed write per action):

* Stripe ``create_invoice``: one invoice per action (``metadata.subledger_action_id``, or the
  finding's invoice another action wrote), one invoice item per line on it, finalized when
  the connection finalizes; ``update_customer_metadata``: the values set by one committed
  update; ``push_meter_events``: every event recorded, each sent once.
* Salesforce and HubSpot ``update_customer_fields``: the fields hold the values, written by
  one committed update (none when they already held them).
* NetSuite ``create_customer``/``create_invoice``/``create_journal_entry``: one record per
  external id (and per source billing record for invoices).
* files ``create_invoice``: one invoice file per action, whole, read back by the files
  connector with no reject.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from crash_support import Harness, World, committed, key_for

from subledger.core.connector import WriteAction
from subledger.core.model import Action
from subledger.core.sandbox import Sandbox, SandboxClock

JAN_15 = 1768435200  # 2026-01-15T00:00:00Z


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


# -- Stripe -----------------------------------------------------------------------------------------------


class StripeHarness(Harness):
    name = "stripe"
    plugin = "stripe"
    variants = ("invoices", "invoices_no_idempotency", "invoices_finalized", "invoice_of_the_same_finding",
                "customer_metadata", "meter_events", "meter_events_no_idempotency", "meter_events_busy_minute")
    sample = ("invoices_no_idempotency", "customer_metadata", "meter_events")

    def make_sandbox(self, variant: str) -> Sandbox:
        from subledger.plugins.stripe.sandbox import StripeSandbox

        sandbox = StripeSandbox(random_seed=7, deliver_webhooks=False, clock=SandboxClock(frozen_at=JAN_15))
        fixture: dict[str, Any] = {
            "customers": [
                {"id": "cus_acme", "name": "Acme Corp", "email": "ap@acme.example",
                 "metadata": {"subledger_id": "acme"}},
                {"id": "cus_globex", "name": "Globex", "email": "ap@globex.example"},
                {"id": "cus_initech", "name": "Initech", "email": "ap@initech.example"},
            ],
            "meters": [{"id": "mtr_api", "display_name": "API calls", "event_name": "api_calls",
                        "default_aggregation": {"formula": "sum"}}],
        }
        if variant == "meter_events_busy_minute":
            # Usage the customer's own pipeline sent in the same minute as the action's events.
            fixture["meter_events"] = [{"event_name": "api_calls", "identifier": "pipeline-1",
                                        "timestamp": JAN_15 - 3600 + 5,
                                        "payload": {"stripe_customer_id": "cus_acme", "value": "1000"}}]
        sandbox.seed(fixture)
        if variant.endswith("no_idempotency"):
            sandbox.idempotency.ttl = 0  # keys forgotten (after 24 h): find-before-create alone stands
        return sandbox

    def config(self, variant: str, world: World) -> Any:
        from subledger.plugins.stripe.config import StripeConfig
        from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY

        return StripeConfig(api_key=DEFAULT_API_KEY, api_base=world.url,
                            finalize_invoices=variant == "invoices_finalized")

    def _invoice_payload(self, n: int, customer: str, lines: int, finding: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "customer_external_id": customer, "currency": "USD", "contract_external_id": f"ctr_{customer}",
            "description": f"Correction {n}",
            "lines": [{"description": f"API calls overage {n}.{i}", "amount_minor": 1000 * n + 10 * i + 1,
                       "quantity": str(100 * (i + 1)), "service_start": "2026-01-01", "service_end": "2026-01-31",
                       "component": "api_calls", "meter": "api_calls", "kind": "usage"} for i in range(lines)],
        }
        if finding:
            payload["metadata"] = {"subledger_finding": finding}
        return payload

    def actions(self, variant: str) -> list[Action]:
        if variant.startswith("invoices"):
            specs = [("cus_acme", 1), ("cus_globex", 3), ("cus_acme", 2)]
            if variant == "invoices_finalized":
                specs = [("cus_acme", 2), ("cus_globex", 1)]
            return [self.action(variant, n, "create_invoice", self._invoice_payload(n, customer, lines),
                                amount_minor=0, currency="USD") for n, (customer, lines) in enumerate(specs, 1)]
        if variant == "invoice_of_the_same_finding":
            # act_1's fix was already written by another action of its finding (prepare());
            # act_2 is new.
            return [self.action(variant, 1, "create_invoice", self._invoice_payload(1, "cus_acme", 2, "fnd_1")),
                    self.action(variant, 2, "create_invoice", self._invoice_payload(2, "cus_globex", 1, "fnd_2"))]
        if variant == "customer_metadata":
            return [self.action(variant, n, "update_customer_metadata", {"metadata": {"subledger_id": canonical}},
                                target_external_id=customer, base_version={"metadata": {"subledger_id": None}})
                    for n, (customer, canonical) in enumerate([("cus_globex", "globex"), ("cus_initech", "initech")],
                                                              1)]
        if variant == "meter_events_busy_minute":
            events = [self._event(variant, 1, i, "cus_acme", JAN_15 - 3600 + 10 + i, str(3 + i)) for i in range(2)]
            return [self.action(variant, 1, "push_meter_events", {"events": events})]
        return [self.action(variant, n, "push_meter_events", {"events": [
            self._event(variant, n, i, customer, JAN_15 - 3600 * n + 60 * i, str(10 * n + i)) for i in range(count)]})
            for n, (customer, count) in enumerate([("cus_acme", 3), ("cus_globex", 2)], 1)]

    @staticmethod
    def _event(variant: str, n: int, i: int, customer: str, ts: int, quantity: str) -> dict[str, Any]:
        return {"identifier": f"{variant}-{n}-{i}", "meter": "api_calls", "customer_external_id": customer,
                "quantity": quantity, "occurred_at": _iso(ts)}

    def prepare(self, variant: str, world: World) -> None:
        if variant != "invoice_of_the_same_finding":
            return
        from subledger.plugins.stripe.connector import StripeConnector

        # Another action (another key) of finding fnd_1 wrote exactly act_1's invoice earlier.
        other = WriteAction("create_invoice", key_for(self.name, variant, 99),
                            self._invoice_payload(1, "cus_acme", 2, "fnd_1"))
        StripeConnector(self.config(variant, world), connection=self.name).write(other)

    def check(self, variant: str, world: World, actions: dict[str, Action]) -> list[str]:
        from subledger.plugins.stripe.writes import ACTION_KEY, FINDING_KEY, LINE_KEY

        assert world.sandbox is not None
        store = world.sandbox.store
        problems: list[str] = []
        invoices = [i for i in store.collection("invoices").values() if i.get("status") != "deleted"]
        items = list(store.collection("invoiceitems").values())
        for action in actions.values():
            p = action.payload
            if action.kind == "create_invoice":
                finding = (p.get("metadata") or {}).get(FINDING_KEY)
                mine = [i for i in invoices if (i.get("metadata") or {}).get(ACTION_KEY) == action.idempotency_key
                        or (finding and (i.get("metadata") or {}).get(FINDING_KEY) == finding)]
                if len(mine) != 1:
                    problems.append(f"{action.id}: {len(mine)} invoices for the fix (want 1): "
                                    f"{[i['id'] for i in mine]}")
                    continue
                invoice = mine[0]
                if action.status == "done" and action.external_id != invoice["id"]:
                    problems.append(f"{action.id}: done with external_id {action.external_id}, the invoice is "
                                    f"{invoice['id']}")
                marker = invoice["metadata"][ACTION_KEY]
                lines = Counter((ii.get("metadata") or {}).get(LINE_KEY) for ii in items
                                if (ii.get("metadata") or {}).get(ACTION_KEY) == marker)
                want = Counter(str(n) for n in range(len(p["lines"])))
                if lines != want:
                    problems.append(f"{action.id}: invoice {invoice['id']} has lines {dict(lines)} (want each of "
                                    f"{sorted(want)} once)")
                stray = [ii["id"] for ii in items if (ii.get("metadata") or {}).get(ACTION_KEY) == marker
                         and ii.get("invoice") != invoice["id"]]
                if stray:
                    problems.append(f"{action.id}: invoice items outside invoice {invoice['id']}: {stray}")
                if variant == "invoices_finalized" and invoice.get("status") != "open":
                    problems.append(f"{action.id}: invoice {invoice['id']} is {invoice.get('status')}, not finalized")
            elif action.kind == "update_customer_metadata":
                target = action.target_external_id or ""
                have = (store.get("customers", target) or {}).get("metadata") or {}
                wanted = p["metadata"]
                if any(have.get(k) != v for k, v in wanted.items()):
                    problems.append(f"{action.id}: customer {target} metadata is {have} (want {wanted})")
                writes = [e for e in world.sandbox.exchanges
                          if e.request.method == "POST" and e.request.path == f"/v1/customers/{target}"
                          and committed(e) is not None]
                if len(writes) != 1:
                    problems.append(f"{action.id}: {len(writes)} committed updates of customer {target} (want 1)")
            else:
                for event in p["events"]:
                    stored = store.get("meter_events", event["identifier"])
                    if stored is None or stored["payload"].get("value") != event["quantity"]:
                        problems.append(f"{action.id}: meter event {event['identifier']} is "
                                        f"{'missing (lost)' if stored is None else stored['payload']}")
                    sent = [e for e in world.sandbox.exchanges if e.request.path == "/v1/billing/meter_events"
                            and committed(e) is not None and e.request.params().get("identifier")
                            == event["identifier"]]
                    if len(sent) > 1:
                        problems.append(f"{action.id}: meter event {event['identifier']} recorded {len(sent)} times")
            if action.status != "done":
                problems.append(f"{action.id}: {action.status} ({action.error})")
        return problems


# -- Salesforce -------------------------------------------------------------------------------------------

ACME, GLOBEX, INITECH = "0015g00000ACMEAAA", "0015g00000GLBXAAA", "0015g00000INTCAAA"
MORE = ["0015g00000UMBRAAA", "0015g00000HOOLAAA", "0015g00000STRKAAA"]
CONTRACTS = {ACME: "8005g00000ACMEAAA", GLOBEX: "8005g00000GLBXAAA"}


def _response_body(response: Any) -> Any:
    body = response.body
    if isinstance(body, bytes):
        return json.loads(body or b"null")
    return body


class SalesforceHarness(Harness):
    name = "salesforce"
    plugin = "salesforce"
    variants = ("accounts", "contracts", "already_written", "many_accounts")
    sample = ("accounts", "contracts")

    def make_sandbox(self, variant: str) -> Sandbox:
        from subledger.plugins.salesforce.sandbox import SalesforceSandbox

        accounts = [{"Id": ACME, "Name": "Acme Corp", "Subledger_Id__c": "acme", "CurrencyIsoCode": "USD"},
                    {"Id": GLOBEX, "Name": "Globex", "CurrencyIsoCode": "USD"},
                    {"Id": INITECH, "Name": "Initech", "CurrencyIsoCode": "USD"},
                    *({"Id": aid, "Name": f"Account {n}", "CurrencyIsoCode": "USD"} for n, aid in enumerate(MORE))]
        if variant == "already_written":
            accounts[0].update({"Usage_To_Date__c": "api_calls: 12500", "Overage_To_Date__c": "50.00"})
        contracts = [{"Id": cid, "AccountId": account, "Status": "Activated", "StartDate": "2026-01-01",
                      "ContractTerm": 12, "CurrencyIsoCode": "USD"} for account, cid in CONTRACTS.items()]
        return SalesforceSandbox(fixture={"Account": accounts, "Contract": contracts}, random_seed=7)

    def config(self, variant: str, world: World) -> Any:
        from subledger.plugins.salesforce.config import SalesforceConfig
        from subledger.plugins.salesforce.sandbox import DEFAULT_PASSWORD, DEFAULT_TOKEN, DEFAULT_USERNAME

        mapping = None
        if variant == "contracts":
            path = world.root / "salesforce.yaml"
            path.write_text("write_back:\n  object: Contract\n")
            mapping = str(path)
        return SalesforceConfig(username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD, security_token=DEFAULT_TOKEN,
                                base_url=world.url, mapping=mapping)

    def actions(self, variant: str) -> list[Action]:
        figures = [(ACME, {"usage_to_date": "api_calls: 12500", "overage_to_date": "50.00"}),
                   (GLOBEX, {"usage_to_date": "api_calls: 900", "overage_to_date": "0.00", "last_invoice": "INV-7",
                             "open_findings": "2"}),
                   (INITECH, {"open_findings": "1"})]
        if variant == "contracts":
            figures = figures[:2]
        if variant == "many_accounts":
            figures += [(aid, {"usage_to_date": f"api_calls: {n}00", "last_invoice": f"INV-{n}"})
                        for n, aid in enumerate(MORE, 1)]
        return [self.action(variant, n, "update_customer_fields", payload, target_external_id=account,
                            base_version=dict.fromkeys(payload))
                for n, (account, payload) in enumerate(figures, 1)]

    def check(self, variant: str, world: World, actions: dict[str, Action]) -> list[str]:
        from subledger.plugins.salesforce.writes import normalize

        assert world.sandbox is not None
        fields = {"usage_to_date": "Usage_To_Date__c", "overage_to_date": "Overage_To_Date__c",
                  "last_invoice": "Last_Invoice__c", "open_findings": "Open_Findings__c"}
        problems = []
        for action in actions.values():
            account = action.target_external_id or ""
            obj, rid = ("Contract", CONTRACTS[account]) if variant == "contracts" else ("Account", account)
            record = world.sandbox.store.get(obj, rid) or {}
            for name, value in action.payload.items():
                if normalize(record.get(fields[name])) != value:
                    problems.append(f"{action.id}: {obj} {rid} {fields[name]} is {record.get(fields[name])!r} "
                                    f"(want {value!r})")
            writes = 0
            for exchange in world.sandbox.exchanges:
                response = committed(exchange)
                if response is None or not exchange.request.path.endswith("/composite"):
                    continue
                sent = (exchange.request.json or {}).get("compositeRequest") or []
                answers = {r.get("referenceId"): r for r in _response_body(response).get("compositeResponse", [])}
                writes += sum(1 for sub in sent if sub.get("method") == "PATCH" and sub["url"].endswith(f"/{rid}")
                              and int(answers.get(sub.get("referenceId"), {}).get("httpStatusCode", 500)) < 300)
            want = 0 if variant == "already_written" and account == ACME else 1
            if writes != want:
                problems.append(f"{action.id}: {writes} committed updates of {obj} {rid} (want {want})")
            if action.status != "done":
                problems.append(f"{action.id}: {action.status} ({action.error})")
        return problems


# -- HubSpot ----------------------------------------------------------------------------------------------


class HubSpotHarness(Harness):
    name = "hubspot"
    plugin = "hubspot"
    variants = ("mirrored_on_deals", "companies", "already_written")
    sample = ("mirrored_on_deals",)

    def make_sandbox(self, variant: str) -> Sandbox:
        from subledger.plugins.hubspot.sandbox import HubSpotSandbox

        t0, minute = 1767225600000, 60_000
        company = {"101": {"name": "Acme Inc.", "domain": "acme.example", "subledger_id": "acme"},
                   "102": {"name": "Globex", "domain": "globex.example"},
                   "103": {"name": "Initech", "domain": "initech.example"}}
        if variant == "already_written":
            company["101"].update({"subledger_usage_to_date": "api_calls: 12000", "subledger_overage_to_date": "40.00"})
        deal = {"dealstage": "closedwon", "deal_currency_code": "USD", "subledger_term_start": "2026-01-01",
                "subledger_billing_interval": "monthly"}
        fixture = {
            "companies": [{"id": cid, "modified": t0 + n * minute, "properties": props}
                          for n, (cid, props) in enumerate(company.items())],
            "deals": [
                {"id": "9001", "modified": t0, "associations": {"companies": ["101"]},
                 "properties": {"dealname": "Acme 2026", **deal}},
                {"id": "9002", "modified": t0, "associations": {"companies": ["101"]},
                 "properties": {"dealname": "Acme add-on", **deal}},
                {"id": "9003", "modified": t0, "associations": {"companies": ["102"]},
                 "properties": {"dealname": "Globex pilot", "dealstage": "appointmentscheduled"}},
                {"id": "9004", "modified": t0, "associations": {"companies": ["102"]},
                 "properties": {"dealname": "Globex 2026", **deal}},
            ],
        }
        return HubSpotSandbox(fixture=fixture)

    def config(self, variant: str, world: World) -> Any:
        from subledger.plugins.hubspot.config import HubSpotConfig
        from subledger.plugins.hubspot.sandbox import DEFAULT_TOKEN

        mapping = {"deal_write_back": {"usage_to_date": "usage_so_far", "overage_to_date": "overage_so_far"}} \
            if variant == "mirrored_on_deals" else None
        return HubSpotConfig(access_token=DEFAULT_TOKEN, base_url=world.url, mapping=mapping)

    def actions(self, variant: str) -> list[Action]:
        figures = [("101", {"usage_to_date": "api_calls: 12000", "overage_to_date": "40.00"}),
                   ("102", {"usage_to_date": "api_calls: 900", "overage_to_date": "0.00", "last_invoice": "INV-7",
                            "open_findings": "2"}),
                   ("103", {"open_findings": "1"})]
        return [self.action(variant, n, "update_customer_fields", payload, target_external_id=company,
                            base_version=dict.fromkeys(payload))
                for n, (company, payload) in enumerate(figures, 1)]

    def check(self, variant: str, world: World, actions: dict[str, Action]) -> list[str]:
        assert world.sandbox is not None
        store = world.sandbox.store
        props = {"usage_to_date": "subledger_usage_to_date", "overage_to_date": "subledger_overage_to_date",
                 "last_invoice": "subledger_last_invoice", "open_findings": "subledger_open_findings"}
        mirrored = {"usage_to_date": "usage_so_far", "overage_to_date": "overage_so_far"}
        closed_won = {"101": ["9001", "9002"], "102": ["9004"], "103": []}

        def updates(kind: str, oid: str) -> int:
            count = 0
            for exchange in world.sandbox.exchanges:  # type: ignore[union-attr]
                if exchange.request.path != f"/crm/v3/objects/{kind}/batch/update" or committed(exchange) is None:
                    continue
                count += sum(1 for i in (exchange.request.json or {}).get("inputs", []) if i.get("id") == oid)
            return count

        problems = []
        for action in actions.values():
            company = action.target_external_id or ""
            have = (store.get("companies", company) or {}).get("properties") or {}
            for name, value in action.payload.items():
                if (have.get(props[name]) or "") != value:
                    problems.append(f"{action.id}: company {company} {props[name]} is {have.get(props[name])!r} "
                                    f"(want {value!r})")
            want = 0 if variant == "already_written" and company == "101" else 1
            if updates("companies", company) != want:
                problems.append(f"{action.id}: {updates('companies', company)} committed updates of company "
                                f"{company} (want {want})")
            if variant == "mirrored_on_deals":
                wanted = {mirrored[k]: v for k, v in action.payload.items() if k in mirrored}
                for deal_id in closed_won[company] if wanted else []:
                    deal = (store.get("deals", deal_id) or {}).get("properties") or {}
                    if any((deal.get(p) or "") != v for p, v in wanted.items()):
                        problems.append(f"{action.id}: deal {deal_id} holds {deal} (want {wanted})")
                    if updates("deals", deal_id) != 1:
                        problems.append(f"{action.id}: {updates('deals', deal_id)} committed updates of deal "
                                        f"{deal_id} (want 1)")
            if action.status != "done":
                problems.append(f"{action.id}: {action.status} ({action.error})")
        return problems


# -- NetSuite ---------------------------------------------------------------------------------------------

NETSUITE_MAPPING = """\
subsidiary: "1"
accounts:
  "1200": "12"
  "2400": "21"
  "2200": "22"
  revenue: "42"
periods:
  "2026-01": "201"
"""


class NetSuiteHarness(Harness):
    name = "netsuite"
    plugin = "netsuite"
    variants = ("records", "invoice_under_another_external_id")
    sample = ("records",)

    def make_sandbox(self, variant: str) -> Sandbox:
        from subledger.plugins.netsuite.sandbox import NetSuiteSandbox, standard_fixture

        fixture = standard_fixture()
        fixture["clock"] = JAN_15
        fixture["customers"] = [{"id": "1001", "externalId": "acme", "companyName": "Acme Corp",
                                 "subsidiary": {"id": "1"}, "currency": {"id": "1"}}]
        if variant == "invoice_under_another_external_id":
            # An earlier version wrote in_1's copy under the action's key as external id.
            fixture["invoices"] = [{"id": "2001", "externalId": "legacy-key-of-in_1", "tranId": "INV-1",
                                    "entity": {"id": "1001"}, "currency": {"id": "1"}, "tranDate": "2026-01-05",
                                    "custbody_subledger_source_system": "stripe",
                                    "custbody_subledger_source_id": "in_1",
                                    "item": {"items": [{"item": {"id": "501"}, "amount": "10.01"}]}}]
        clock = SandboxClock()
        clock.freeze(0)
        return NetSuiteSandbox(clock=clock, fixture=fixture)

    def config(self, variant: str, world: World) -> Any:
        from subledger.core.secrets import load_config
        from subledger.plugins.netsuite.config import NetSuiteConfig
        from subledger.plugins.netsuite.sandbox import (
            DEFAULT_ACCOUNT,
            DEFAULT_CONSUMER_KEY,
            DEFAULT_CONSUMER_SECRET,
            DEFAULT_TOKEN_ID,
            DEFAULT_TOKEN_SECRET,
        )

        mapping = world.root / "netsuite-accounts.yaml"
        mapping.write_text(NETSUITE_MAPPING)
        return load_config(NetSuiteConfig, {
            "account_id": DEFAULT_ACCOUNT, "base_url": world.url, "consumer_key": DEFAULT_CONSUMER_KEY,
            "consumer_secret": DEFAULT_CONSUMER_SECRET, "token_id": DEFAULT_TOKEN_ID,
            "token_secret": DEFAULT_TOKEN_SECRET, "invoice_item_id": "501", "account_mapping": str(mapping)})

    @staticmethod
    def _invoice(source: str, lines: int) -> dict[str, Any]:
        return {"customer": "acme", "currency": "USD", "source_system": "stripe", "source_external_id": source,
                "number": f"INV-{source}", "issued_at": "2026-01-10",
                "lines": [{"description": f"line {i}", "amount_minor": 1001 + i, "quantity": "1",
                           "service_start": "2026-01-01", "service_end": "2026-01-31"} for i in range(lines)]}

    def actions(self, variant: str) -> list[Action]:
        if variant == "invoice_under_another_external_id":
            return [self.action(variant, 1, "create_invoice", self._invoice("in_1", 1)),
                    self.action(variant, 2, "create_invoice", self._invoice("in_2", 2))]
        journal = {"external_id": "invoice:stripe:in_1:0f3a", "key": "invoice:stripe:in_1", "kind": "invoice",
                   "entry_date": "2026-01-10", "period": "2026-01", "currency": "USD", "memo": "invoice in_1",
                   "reverses_entry_id": None, "lines": [
                       {"line_no": 1, "role": "accounts_receivable", "account": "1200", "debit_minor": 10825,
                        "credit_minor": 0, "currency": "USD"},
                       {"line_no": 2, "role": "contract_liability", "account": "2400", "debit_minor": 0,
                        "credit_minor": 10000, "currency": "USD"},
                       {"line_no": 3, "role": "tax_payable", "account": "2200", "debit_minor": 0,
                        "credit_minor": 825, "currency": "USD"}]}
        return [
            self.action(variant, 1, "create_customer", {"external_id": "globex", "name": "Globex",
                                                        "email": "ap@globex.example", "currency": "USD"}),
            self.action(variant, 2, "create_invoice", self._invoice("in_1", 2)),
            self.action(variant, 3, "create_journal_entry", journal),
            self.action(variant, 4, "create_invoice", self._invoice("in_2", 1)),
        ]

    def check(self, variant: str, world: World, actions: dict[str, Action]) -> list[str]:
        assert world.sandbox is not None
        store = world.sandbox.store
        problems = []
        for action in actions.values():
            p = action.payload
            if action.kind == "create_invoice":
                mine = [r for r in store.collection("invoice").values()
                        if r.get("custbody_subledger_source_id") == p["source_external_id"]
                        and r.get("custbody_subledger_source_system") == p["source_system"]]
                what = f"invoices copying stripe {p['source_external_id']}"
            else:
                rtype = "customer" if action.kind == "create_customer" else "journalEntry"
                mine = [r for r in store.collection(rtype).values() if r.get("externalId") == p["external_id"]]
                what = f"{rtype} records with external id {p['external_id']}"
            if len(mine) != 1:
                problems.append(f"{action.id}: {len(mine)} {what} (want 1)")
            elif action.status == "done" and action.external_id != str(mine[0]["id"]):
                problems.append(f"{action.id}: done with external_id {action.external_id}, the record is "
                                f"{mine[0]['id']}")
            if action.status != "done":
                problems.append(f"{action.id}: {action.status} ({action.error})")
        return problems


# -- files ------------------------------------------------------------------------------------------------


class FilesHarness(Harness):
    name = "files"
    plugin = "files"
    files = True
    variants = ("invoices", "written_before", "many_invoices")
    sample = ("invoices",)

    def config(self, variant: str, world: World) -> Any:
        from subledger.plugins.files.connector import FilesConfig

        folder = world.root / "folder"
        folder.mkdir(exist_ok=True)
        return FilesConfig(path=folder)

    def actions(self, variant: str) -> list[Action]:
        def payload(n: int, lines: int) -> dict[str, Any]:
            return {"customer_external_id": "acme", "currency": "USD", "contract_external_id": "ctr_acme",
                    "period_start": "2026-01-01", "period_end": "2026-01-31",
                    "lines": [{"description": f"overage {n}.{i}", "amount_minor": 1000 * n + i, "kind": "usage",
                               "meter": "api_calls", "component": "api_calls", "quantity": str(10 * (i + 1)),
                               "service_start": "2026-01-01", "service_end": "2026-01-31"} for i in range(lines)]}

        sizes = {"invoices": [1, 3, 2], "written_before": [2, 1], "many_invoices": [1, 2, 3, 1, 2, 1]}[variant]
        return [self.action(variant, n, "create_invoice", payload(n, lines)) for n, lines in enumerate(sizes, 1)]

    def prepare(self, variant: str, world: World) -> None:
        if variant != "written_before":
            return
        from subledger.plugins.files.writes import write_invoice

        # act_1's invoice was written by an apply whose outcome was never recorded.
        folder = self.config(variant, world).path
        action = self.actions(variant)[0]
        write_invoice(folder, WriteAction(action.kind, action.idempotency_key, action.payload))

    def check(self, variant: str, world: World, actions: dict[str, Action]) -> list[str]:
        from subledger.core.connector import RecordGroup, Rejected
        from subledger.core.model import Invoice
        from subledger.plugins.files.connector import FilesConnector
        from subledger.plugins.files.writes import WRITE_DIR

        config = self.config(variant, world)
        problems = []
        written = config.path / WRITE_DIR
        visible = sorted(p.name for p in written.glob("*") if not p.name.startswith(".")) if written.exists() else []
        want = sorted(f"{a.idempotency_key}.json" for a in actions.values())
        if visible != want:
            problems.append(f"invoice files {visible} (want {want})")
        read = list(FilesConnector(config, connection=self.name).read("invoices", None))
        rejects = [r for r in read if isinstance(r, Rejected)]
        if rejects:
            problems.append(f"{len(rejects)} rejects reading the invoices back: {rejects[:2]}")
        invoices = Counter(g.record.external_id for g in read
                           if isinstance(g, RecordGroup) and isinstance(g.record, Invoice))
        for action in actions.values():
            path = written / f"{action.idempotency_key}.json"
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                problems.append(f"{action.id}: invoice file {path.name} unreadable: {exc}")
                continue
            if len(doc.get("lines", [])) != len(action.payload["lines"]):
                problems.append(f"{action.id}: invoice file has {len(doc.get('lines', []))} lines")
            if action.status == "done" and action.external_id != doc["id"]:
                problems.append(f"{action.id}: done with external_id {action.external_id}, the file is {doc['id']}")
            if invoices[doc["id"]] != 1:
                problems.append(f"{action.id}: read back {dict(invoices)} (want one invoice for it)")
            if action.status != "done":
                problems.append(f"{action.id}: {action.status} ({action.error})")
        return problems

    def notes(self, world: World) -> dict[str, int]:
        """Temporary files a killed writer left behind (hidden, so never read as invoices)."""
        from subledger.plugins.files.writes import WRITE_DIR

        folder = world.root / "folder" / WRITE_DIR
        left = len(list(folder.glob(".tmp-*"))) if folder.exists() else 0
        return {"leftover_temporary_files": left} if left else {}


# -- registry ---------------------------------------------------------------------------------------------


HARNESSES: dict[str, Harness] = {h.name: h for h in (StripeHarness(), SalesforceHarness(), HubSpotHarness(),
                                                       NetSuiteHarness(), FilesHarness())}
