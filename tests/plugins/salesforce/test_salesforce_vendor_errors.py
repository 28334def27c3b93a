"""Salesforce failures classified whatever the answer looks like (issue 15, failure F).

Salesforce publishes no OpenAPI document for its REST/SOAP API (see
``../shared/vendor-specs/README.md``), so these run against the Salesforce sandbox with
injected faults (``subledger.core.sandbox.faults``), the official ``simple-salesforce`` SDK
talking HTTP to it on 127.0.0.1. Faults with their own ``body`` answer the way a proxy or
gateway in front of Salesforce does: an HTML page, ``{"error": "..."}``, plain text, an empty
body; others answer in Salesforce's own formats (a SOAP fault on the login).

* A 429 or 5xx on the login (SOAP or OAuth), whatever its body, is transient: retried under
  the shared policy (``Retry-After`` honoured), then reported as transient with its fix; never
  "check username, password and security_token".
* Only Salesforce's own refusal (``INVALID_LOGIN``, ``invalid_grant``) says to check them, and
  no message carries an unformatted ``{content}``.
* A 429 or 5xx on a query, whatever its body, is retried, then reported as transient.
"""

from __future__ import annotations

import re

import pytest

from subledger.core.connector import Rejected
from subledger.core.errors import ConfigError, FailureKind, TransientError
from subledger.core.sandbox import SandboxServer
from subledger.core.sandbox.faults import FOREIGN_BODIES
from subledger.plugins.salesforce.config import SalesforceConfig
from subledger.plugins.salesforce.connector import SalesforceConnector
from subledger.plugins.salesforce.sandbox import (
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SalesforceSandbox,
    _soap_fault,
)
from subledger.testing import FakeClock

SOAP = "/services/Soap/u/*"
TOKEN = "/services/oauth2/token"
QUERY = "/services/data/v*/query*"
CREDENTIALS = re.compile(r"username|password|security_token|consumer_secret", re.IGNORECASE)
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def login_requests(sandbox: SalesforceSandbox, path: str) -> int:
    return sum(1 for ex in sandbox.exchanges if ex.request.path.startswith(path))


def names(connector: SalesforceConnector) -> list[str]:
    return sorted(c.name for c in connector.read("customers", None) if hasattr(c, "name"))


def assert_readable(err: BaseException) -> None:
    text = str(err)
    assert not PLACEHOLDER.search(text), f"unformatted placeholder in: {text}"
    assert "<html" not in text.lower() and "<!doctype" not in text.lower(), text


@pytest.mark.parametrize("shape", sorted(FOREIGN_BODIES))
def test_a_503_on_the_soap_login_is_retried_whatever_its_body(
    connector: SalesforceConnector, sandbox: SalesforceSandbox, fake_clock: FakeClock, shape: str
) -> None:
    body, content_type = FOREIGN_BODIES[shape]
    sandbox.faults.inject("server_error", method="POST", path=SOAP, status=503, times=2, body=body,
                          content_type=content_type, headers={"Retry-After": "3"})

    assert names(connector) == ["Acme Corp", "Globex", "Initech"]
    assert login_requests(sandbox, "/services/Soap") == 3
    assert fake_clock.sleeps == [3.0, 3.0], "Retry-After is waited exactly"


@pytest.mark.parametrize(("status", "code"), [(429, None), (500, "SERVER_UNAVAILABLE"), (503, None),
                                              (500, "REQUEST_LIMIT_EXCEEDED")])
def test_a_login_that_keeps_failing_for_now_is_transient_never_check_credentials(
    config: SalesforceConfig, sandbox: SalesforceSandbox, fake_clock: FakeClock, status: int, code: str | None
) -> None:
    """Failure F: a 429 or 503 on the login was reported as bad credentials, with a literal {content}."""
    body, content_type = (_soap_fault(f"sf:{code}", "Try again later").decode(), "text/xml") if code else \
        FOREIGN_BODIES["html"]
    sandbox.faults.inject("server_error", method="POST", path=SOAP, status=status, times=99, body=body,
                          content_type=content_type)

    with pytest.raises(TransientError) as raised:
        names(SalesforceConnector(config, connection="salesforce"))

    err = raised.value
    assert err.kind is FailureKind.TRANSIENT and "gave up after 5 attempts" in err.message
    assert login_requests(sandbox, "/services/Soap") == 5
    assert not CREDENTIALS.search(err.fix or ""), err.fix
    assert_readable(err)
    check = SalesforceConnector(config, connection="salesforce").check()
    assert not check.ok and check.details["kind"] == "transient"
    assert not CREDENTIALS.search(check.message) and not PLACEHOLDER.search(check.message)


def test_a_wrong_password_is_refused_at_once_with_the_credentials_fix(
    config: SalesforceConfig, sandbox: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    wrong = config.model_copy(update={"password": config.password.__class__("not-the-password")})

    with pytest.raises(ConfigError) as raised:
        names(SalesforceConnector(wrong, connection="salesforce"))

    err = raised.value
    assert "INVALID_LOGIN" in err.message and "security_token" in (err.fix or "")
    assert login_requests(sandbox, "/services/Soap") == 1 and fake_clock.sleeps == []
    assert_readable(err)


def test_the_oauth_token_endpoint_busy_is_retried_and_its_refusal_is_not(
    server: SandboxServer, sandbox: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    config = SalesforceConfig(username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD,
                              consumer_key=DEFAULT_CONSUMER_KEY, consumer_secret=DEFAULT_CONSUMER_SECRET,
                              base_url=server.url)
    body, content_type = FOREIGN_BODIES["json_error_string"]
    sandbox.faults.inject("server_error", method="POST", path=TOKEN, status=502, times=1, body=body,
                          content_type=content_type)
    sandbox.faults.inject("rate_limit", method="POST", path=TOKEN, times=1, body="", retry_after=2)

    assert names(SalesforceConnector(config, connection="salesforce")) == ["Acme Corp", "Globex", "Initech"]
    assert login_requests(sandbox, TOKEN) == 3 and fake_clock.sleeps[-1] == 2.0

    wrong = config.model_copy(update={"consumer_secret": config.consumer_secret.__class__("nope")})
    with pytest.raises(ConfigError) as raised:
        names(SalesforceConnector(wrong, connection="salesforce"))
    assert "invalid_client" in raised.value.message and "consumer_secret" in (raised.value.fix or "")
    assert login_requests(sandbox, TOKEN) == 4
    assert_readable(raised.value)


@pytest.mark.parametrize("shape", sorted(FOREIGN_BODIES))
def test_a_5xx_or_429_on_a_query_is_retried_whatever_its_body(
    connector: SalesforceConnector, sandbox: SalesforceSandbox, fake_clock: FakeClock, shape: str
) -> None:
    body, content_type = FOREIGN_BODIES[shape]
    sandbox.faults.inject("server_error", method="GET", path=QUERY, status=502, times=1, body=body,
                          content_type=content_type)
    sandbox.faults.inject("rate_limit", method="GET", path=QUERY, times=1, body=body, content_type=content_type,
                          retry_after=4)

    assert names(connector) == ["Acme Corp", "Globex", "Initech"]
    assert 4.0 in fake_clock.sleeps and len(fake_clock.sleeps) == 2


def test_a_query_that_keeps_failing_is_reported_as_transient_with_its_fix(
    connector: SalesforceConnector, sandbox: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    body, content_type = FOREIGN_BODIES["html"]
    sandbox.faults.inject("server_error", method="GET", path=QUERY, status=503, times=99, body=body,
                          content_type=content_type)

    with pytest.raises(TransientError) as raised:
        names(connector)

    err = raised.value
    assert "HTTP 503" in err.message and "503 Service Temporarily Unavailable" in err.message
    assert "gave up after 5 attempts" in err.message and "retries" in (err.fix or "")
    assert_readable(err)


def test_a_401_that_is_not_salesforces_points_at_the_proxy_not_only_the_credentials(
    connector: SalesforceConnector, sandbox: SalesforceSandbox, fake_clock: FakeClock
) -> None:
    body, content_type = FOREIGN_BODIES["html"]
    sandbox.faults.inject("server_error", method="GET", path=QUERY, status=401, times=99, body=body,
                          content_type=content_type)

    with pytest.raises(ConfigError) as raised:
        names(connector)

    assert "HTTP 401" in raised.value.message and "proxy" in (raised.value.fix or "")
    assert fake_clock.sleeps == []
    assert_readable(raised.value)


OPTIONAL = ("Website", "BillingCountryCode", "ContractTerm", "ContractId", "Description", "ServiceDate",
            "ProductCode", "CurrencyIsoCode", "Discount", "ListPrice")


def test_records_with_every_optional_field_empty_are_read_or_rejected_never_a_crash(
    connector: SalesforceConnector, sandbox: SalesforceSandbox
) -> None:
    """SOQL returns an empty field as null: every custom field and optional standard field empty."""
    for sobject in ("Account", "Contract", "Opportunity", "OpportunityLineItem", "Product2", "PricebookEntry"):
        for record in sandbox.store.collection(sobject).values():
            for name in list(record):
                if name.endswith("__c") or name in OPTIONAL:
                    record[name] = None

    customers = list(connector.read("customers", None))
    contracts = list(connector.read("contracts", None))

    assert sorted(c.name for c in customers if hasattr(c, "name")) == ["Acme Corp", "Globex", "Initech"]
    for item in contracts:
        if isinstance(item, Rejected):
            assert item.reason and item.fix and item.location.startswith("salesforce:"), item
    assert any(isinstance(item, Rejected) for item in contracts)
