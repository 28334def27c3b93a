"""``subledger rate``: a contract priced from files, and from the store, with the same result."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from subledger.commands import rate as rate_cmd
from subledger.core.connector import UsageEventIn
from subledger.core.errors import ConfigError
from subledger.core.model import Contract, CreditGrant, payload_hash, record_id
from subledger.core.store.usage import ingest_usage
from subledger.core.terms import load_document, parse_yaml, terms_hash, terms_to_document

CONTRACT = """\
id: acme-2026
customer: acme
name: Acme 2026
currency: USD
start_date: 2026-01-01
end_date: 2026-12-31
components:
  - {type: flat_fee, id: platform, amount: 50}
  - type: usage
    id: api
    meter: api_calls
    allotment: {quantity: 1000}
    price: {model: per_unit, unit_price: 0.01}
  - type: usage
    id: compute
    meter: compute_hours
    dimensions: [region]
    matrix:
      - values: {region: eu}
        price: {model: per_unit, unit_price: "2"}
    default_price: {model: per_unit, unit_price: "3"}
commitments:
  - {id: minimum, kind: minimum, amount: "100.00"}
"""

EVENTS = [
    # (event_id, customer, meter, quantity, timestamp, properties)
    ("e1", "acme", "api_calls", "800", "2026-03-01T00:00:00Z", {}),
    ("e2", "acme", "api_calls", "500", "2026-03-31T23:59:59+00:00", {}),
    ("e3", "acme", "api_calls", "9999", "2026-04-01T00:00:00Z", {}),  # next period
    ("e4", "acme", "api_calls", "9999", "2026-02-28T23:59:59Z", {}),  # previous period
    ("e5", "acme", "compute_hours", "1.5", "2026-03-10T12:00:00Z", {"region": "eu"}),
    ("e6", "acme", "compute_hours", "2", "2026-03-11T12:00:00Z", {"region": "us"}),
    ("e7", "globex", "api_calls", "5000", "2026-03-11T12:00:00Z", {}),  # another customer
]

# March: fee $50; api 1,300 - 1,000 included = 300 x $0.01 = $3; compute eu 1.5 x $2 = $3,
# us 2 x $3 = $6 (default price); charges $62; minimum $100 -> true-up $38.
EXPECTED_LINES = [
    ("platform", "flat_fee", {}, "1", "50.00"),
    ("api", "usage", {}, "300", "3.00"),
    ("compute", "usage", {"region": "eu"}, "1.5", "3.00"),
    ("compute", "usage", {"region": "us"}, "2", "6.00"),
    ("minimum", "minimum_true_up", {}, "1", "38.00"),
]


def app() -> typer.Typer:
    root = typer.Typer()
    rate_cmd.register(root)

    @root.command("noop")  # a second command keeps `rate` a sub-command, as in the real CLI
    def _noop() -> None:
        pass

    return root


def run(*args: str) -> Any:
    return CliRunner().invoke(app(), ["rate", *args])


def write_files(tmp_path: Path) -> tuple[Path, Path]:
    contract = tmp_path / "acme.yaml"
    contract.write_text(CONTRACT)
    usage = tmp_path / "usage.jsonl"
    lines = [
        json.dumps({"event_id": e, "customer": c, "meter": m, "quantity": q, "timestamp": t, "properties": p})
        for e, c, m, q, t, p in EVENTS
    ]
    lines.insert(2, '{"event_id": "bad", "customer": "acme", "meter": "api_calls", "quantity": "lots", '
                    '"timestamp": "2026-03-05T00:00:00Z"}')
    usage.write_text("\n".join(lines) + "\n")
    return contract, usage


def summary(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(ln["component"], ln["kind"], ln["dimension"], ln["quantity"], ln["amount"]) for ln in doc["lines"]]


def test_rate_contract_file_as_json(tmp_path: Path) -> None:
    contract, usage = write_files(tmp_path)
    result = run("--contract", str(contract), "--usage", str(usage), "--period", "2026-03", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["currency"] == "USD"
    assert doc["period"]["start"] == "2026-03-01" and doc["period"]["end"] == "2026-04-01"
    assert summary(doc) == EXPECTED_LINES
    assert doc["total"] == "100.00"
    assert doc["events_of_other_customers"] == 1
    [bad] = doc["rejected_lines"]
    assert bad["line"] == 3 and bad["field"] == "quantity"
    api = doc["lines"][1]
    assert api["usage"] == "1300" and api["included"] == "1000"
    assert api["evidence"][0]["object"] == "usage_aggregate" and api["evidence"][0]["events"] == 2


def test_rate_contract_file_with_csv_usage_and_a_table(tmp_path: Path) -> None:
    contract, _ = write_files(tmp_path)
    usage = tmp_path / "usage.csv"
    rows = ["event_id,customer,meter,quantity,timestamp,properties"]
    for e, c, m, q, t, p in EVENTS:
        props = json.dumps(p).replace('"', '""')
        rows.append(f'{e},{c},{m},{q},{t},"{props}"')
    usage.write_text("\n".join(rows) + "\n")
    result = run("--contract", str(contract), "--usage", str(usage), "--period", "2026-03")
    assert result.exit_code == 0, result.output
    assert "acme-2026 for acme: 2026-03-01 to 2026-04-01" in result.stdout
    assert "38.00" in result.stdout and "100.00" in result.stdout


def test_a_partial_first_period_is_prorated(tmp_path: Path) -> None:
    contract = tmp_path / "c.yaml"
    contract.write_text(CONTRACT.replace("start_date: 2026-01-01", "start_date: 2026-01-11")
                        .replace("components:", "billing: {anchor_day: 1}\ncomponents:"))
    result = run("--contract", str(contract), "--period", "2026-01", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["period"]["partial"] is True
    fee = doc["lines"][0]
    assert fee["proration"] == {"days": 21, "cycle_days": 31}
    assert fee["amount"] == "33.87"  # 50 x 21 / 31 = 33.870..., half up
    assert doc["lines"][-1]["amount"] == "33.87"  # the minimum is prorated the same way


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "needs either a contract file"),
        (("acme", "--contract", "x.yaml"), "needs either a contract file"),
        (("--contract", "{contract}", "--period", "2027-01"), "outside the contract term"),
        (("--contract", "{contract}", "--period", "March"), "is not YYYY-MM"),
        (("--contract", "{contract}", "--usage", "{missing}"), "does not exist"),
        (("--contract", "{bad}"), "bad.yaml: components[1].price.unit_price = -1: -1 is negative"),
        (("acme", "--usage", "{contract}"), "--usage goes with --contract"),
    ],
)
def test_user_errors_name_the_fix(tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    contract, _ = write_files(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONTRACT.replace("unit_price: 0.01", "unit_price: -1"))
    values = {"contract": str(contract), "missing": str(tmp_path / "none.jsonl"), "bad": str(bad)}
    argv = [a.format(**values) for a in args]
    if "--period" not in argv:
        argv += ["--period", "2026-03"]
    result = run(*argv)
    assert isinstance(result.exception, ConfigError), result.output
    assert said in str(result.exception)
    assert result.exception.fix


# ----------------------------------------------------------------------------- store


def seed_store(session: Session) -> None:
    document = load_document(parse_yaml(CONTRACT))
    terms = document.terms()
    session.add(Contract(
        id=record_id("ctr", "crm", document.id), system="crm", external_id=document.id,
        payload_hash=payload_hash(CONTRACT), customer_external_id=document.customer, name=document.name,
        currency=terms.currency, start_date=terms.start_date, end_date=terms.end_date,
        terms=terms_to_document(terms), terms_hash=terms_hash(terms),
    ))
    events = [
        UsageEventIn(e, c, m, Decimal(q), datetime.fromisoformat(t).astimezone(UTC), p, payload_hash([e, q]))
        for e, c, m, q, t, p in EVENTS
    ]
    ingest_usage(session, "meter-files", events)
    session.commit()


@pytest.fixture
def store(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setattr(rate_cmd, "open_store", lambda: engine)
    with Session(engine) as session:
        seed_store(session)
    return engine


@pytest.mark.parametrize("target", ["acme-2026", "acme"])
def test_rate_from_the_store_matches_the_files(store: Engine, tmp_path: Path, target: str) -> None:
    result = run(target, "--period", "2026-03", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert summary(doc) == EXPECTED_LINES and doc["total"] == "100.00"
    # The aggregate, with its event count from the rollups, then the events themselves.
    assert doc["lines"][1]["evidence"][0] == {
        "system": "store", "object": "usage_aggregate", "customer": "acme", "events": 2,
        "id": "api_calls:sum:2026-03-01T00:00:00+00:00/2026-04-01T00:00:00+00:00",
    }
    assert doc["lines"][1]["evidence"][-1] == {
        "system": "store", "object": "usage_events", "id": "acme", "first_event": "e1", "last_event": "e2",
    }
    contract, usage = write_files(tmp_path)
    from_files = json.loads(run("--contract", str(contract), "--usage", str(usage), "--period", "2026-03",
                                "--json").stdout)
    assert doc["total"] == from_files["total"]


def test_store_usage_can_be_limited_to_one_source(store: Engine) -> None:
    doc = json.loads(run("acme", "--period", "2026-03", "--usage-system", "elsewhere", "--json").stdout)
    assert [ln["quantity"] for ln in doc["lines"] if ln["kind"] == "usage"] == ["0", "0"]
    assert doc["total"] == "100.00"  # fee $50 + true-up $50


def test_store_credit_grants_pay_the_invoice(store: Engine) -> None:
    with Session(store) as session:
        session.add(CreditGrant(
            id="grant-1", system="billing", external_id="cg_1", customer_external_id="acme",
            currency="USD", amount_minor=2500, effective_at=datetime(2026, 3, 1, tzinfo=UTC),
        ))
        session.commit()
    doc = json.loads(run("acme-2026", "--period", "2026-03", "--json").stdout)
    credit = doc["lines"][-1]
    assert (credit["kind"], credit["component"], credit["amount"]) == ("credit", "billing:cg_1", "-25.00")
    assert doc["total"] == "75.00"
    assert [m["kind"] for m in doc["credit_movements"]] == ["grant", "draw_down"]


def test_unknown_target_in_the_store(store: Engine) -> None:
    result = run("nobody", "--period", "2026-03")
    assert isinstance(result.exception, ConfigError)
    assert "no contract or customer 'nobody'" in str(result.exception)
