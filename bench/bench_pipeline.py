"""Benchmark: the whole pipeline at scale (issue 10): pull, rate, reconcile, plan, revrec.

A company of ``--customers`` customers (default 10,000) on one hybrid contract each
(platform fee, graduated API overage over an allotment, monthly minimum with true-up), a
year of ``--events`` usage events (default 10,000,000) and one invoice per customer per
month (every 20th customer billed half its overage), written as files and pulled through
the files connector: a CRM folder (customers, contracts) and a billing folder (customers
linked by ``canonical_id``, subscriptions, invoices, usage JSONL). Every stage runs in its
own child process, so the peak RSS printed is that stage's own:

* pull records: customers, contracts and invoices of both folders (files connector -> store);
* pull usage: the usage JSONL (dedup, daily rollups, checkpoints), with a baseline measured
  in the same run: ``sqlite3.executemany`` / ``COPY`` of the same rows, already parsed, into
  a table with the same columns and indexes (insert time only);
* identity: the identity map (run once before rating; reconcile re-runs it);
* rate: the contract read model over every contract (``subledger.sync.contracts.ContractReadModel``);
* reconcile: ``subledger.sync.engine.reconcile`` with the built-in rules, with the plan's share;
* revrec: ``subledger.core.revrec.run_recognition`` through the last month.

File connectors make no API calls, so the pull prints the files opened and read calls
made per synced object instead. A smaller Stripe variant (``--stripe-customers``, default
200) pulls a seeded :class:`StripeSandbox` through the Stripe connector and the official SDK
over HTTP on 127.0.0.1, and prints the HTTP requests per synced object from the sandbox's
request log.

    .venv/bin/python bench/bench_pipeline.py --quick                  # ~100k events, SQLite + PostgreSQL
    .venv/bin/python bench/bench_pipeline.py [--customers 10000] [--events 10000000] [--backend sqlite]
    .venv/bin/python bench/bench_pipeline.py --postgres postgresql://postgres@127.0.0.1:5432/test --backend postgresql
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import traceback
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

YEAR = 2025
THROUGH = date(YEAR, 12, 31)  # revenue recognition
NOW = datetime(YEAR + 1, 1, 15, tzinfo=UTC)  # reconciliation (and rating) as of; every 2025 period has ended
CRM, BILLING = "crm", "billing"
TERMS: dict[str, Any] = {
    "currency": "USD", "start_date": f"{YEAR}-01-01", "end_date": f"{YEAR}-12-31", "billing": {"interval": "month"},
    "components": [
        {"type": "flat_fee", "id": "platform", "amount": "500.00"},
        {"type": "usage", "id": "api", "meter": "api_calls", "allotment": {"quantity": 10000},
         "price": {"model": "graduated", "tiers": [{"up_to": 100000, "unit_price": "0.002"},
                                                   {"up_to": None, "unit_price": "0.001"}]}},
    ],
    "commitments": [{"id": "min", "kind": "minimum", "amount": "600.00", "per": "period"}],
}
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


# -- the company, as files ---------------------------------------------------------------------


def _major(minor: int) -> str:
    """Minor units as exact major-unit text (money never goes through a float)."""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def monthly_calls(i: int, month: int) -> int:
    """API calls of customer ``i`` in ``month``: 10,000 to 59,999, so every month has an overage."""
    return 10000 + (i * 7919 + month * 104729) % 50000


def _month_end(month: int) -> date:
    return date(YEAR + (month == 12), month % 12 + 1, 1) - timedelta(days=1)


def write_company(root: Path, customers: int, events: int) -> dict[str, int]:
    """Write the CRM and billing folders; returns how many records of each kind."""
    from subledger.core.money import to_minor

    crm, billing = root / CRM, root / BILLING
    (crm / "contracts").mkdir(parents=True)
    (billing / "contracts").mkdir(parents=True)
    (billing / "usage").mkdir(parents=True)
    counts = {"customers": 0, "contracts": 0, "invoices": 0, "usage_events": 0}
    with (crm / "customers.jsonl").open("w") as c1, (billing / "customers.jsonl").open("w") as c2, \
            (crm / "contracts" / "contracts.jsonl").open("w") as k1, \
            (billing / "contracts" / "subscriptions.jsonl").open("w") as k2:
        for i in range(customers):
            cid = f"C{i:05d}"
            c1.write(json.dumps({"id": cid, "name": f"Company {i}", "email": f"ap@co{i}.example",
                                 "currency": "USD"}) + "\n")
            c2.write(json.dumps({"id": f"cus_{i}", "name": f"Company {i}", "email": f"ap@co{i}.example",
                                 "currency": "USD", "canonical_id": cid}) + "\n")
            k1.write(json.dumps({"id": f"K{i}", "customer": cid, "name": "Hybrid 2025", "status": "active",
                                 **TERMS}) + "\n")
            k2.write(json.dumps({"id": f"sub_{i}", "customer": f"cus_{i}", "name": "Hybrid 2025",
                                 "status": "active", **TERMS}) + "\n")
    counts["customers"] = counts["contracts"] = 2 * customers

    with (billing / "invoices.jsonl").open("w") as fh:
        for i in range(customers):
            for month in range(1, 13):
                start, end = date(YEAR, month, 1), _month_end(month)
                calls = monthly_calls(i, month)
                overage = to_minor((calls - 10000) * Decimal("0.002"), "USD")  # rounded as the rating engine does
                billed = overage if i % 20 else overage // 2  # every 20th customer is billed half
                true_up = max(0, 60000 - 50000 - overage)
                lines = [{"id": "fee", "kind": "recurring", "component": "platform", "amount": "500.00",
                          "description": "Platform fee"},
                         {"id": "api", "kind": "usage", "component": "api", "meter": "api_calls",
                          "quantity": str(calls - 10000), "amount": _major(billed), "description": "API overage"}]
                if true_up:
                    lines.append({"id": "min", "kind": "true_up", "amount": _major(true_up),
                                  "description": "Minimum commitment true-up"})
                for ln in lines:
                    ln["service_start"], ln["service_end"] = start.isoformat(), end.isoformat()
                fh.write(json.dumps({
                    "id": f"in_{i}_{month}", "customer": f"cus_{i}", "contract": f"sub_{i}", "currency": "USD",
                    "status": "paid", "issued_at": (end + timedelta(days=1)).isoformat(),
                    "period_start": start.isoformat(), "period_end": end.isoformat(), "lines": lines,
                }) + "\n")
                counts["invoices"] += 1

    # Usage: events spread evenly over customer-months; each month's events sum to monthly_calls.
    slots = customers * 12
    base, extra = divmod(events, slots)
    with (billing / "usage" / "events.jsonl").open("w") as fh:
        buf: list[str] = []
        for month in range(1, 13):
            days = _month_end(month).day
            for i in range(customers):
                k = base + (1 if (month - 1) * customers + i < extra else 0)
                if not k:
                    continue
                calls = monthly_calls(i, month)
                part, rest = divmod(calls, k)
                for j in range(k):
                    q = part + (1 if j < rest else 0)
                    second = j * 86400 * days // k
                    d, s = divmod(second, 86400)
                    buf.append(
                        f'{{"event_id":"e{i}-{month}-{j}","customer":"cus_{i}","meter":"api_calls","quantity":{q},'
                        f'"timestamp":"{YEAR}-{month:02d}-{d + 1:02d}T{s // 3600:02d}:{s % 3600 // 60:02d}:'
                        f'{s % 60:02d}Z","properties":{{"region":"{"eu" if j % 2 else "us"}"}}}}'
                    )
                if len(buf) >= 50_000:
                    fh.write("\n".join(buf) + "\n")
                    counts["usage_events"] += len(buf)
                    buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")
            counts["usage_events"] += len(buf)
    return counts


# -- children: one per stage ----------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine(url: str, schema: str | None):  # type: ignore[no-untyped-def]
    from subledger.core.store.engine import make_engine

    if schema:
        return make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    return make_engine(url)


def _settings():  # type: ignore[no-untyped-def]
    from subledger.sync.settings import SyncSettings

    return SyncSettings(roles={CRM: ["crm"], BILLING: ["billing", "metering"]})


class _CountingFile:
    """A file whose read calls and bytes are counted (the files connector's 'API calls')."""

    def __init__(self, raw: Any, tally: dict[str, int]) -> None:
        self._raw, self._tally = raw, tally

    def read(self, *a: Any) -> Any:
        data = self._raw.read(*a)
        self._tally["read_calls"] += 1
        self._tally["bytes"] += len(data)
        return data

    def __enter__(self) -> _CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()

    def __iter__(self) -> Any:
        for line in self._raw:
            self._tally["read_calls"] += 1
            self._tally["bytes"] += len(line)
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _count_file_reads(root: str) -> dict[str, int]:
    """Count opens and reads of files under ``root`` (not the SQLite database's own I/O)."""
    import pathlib

    tally = {"opens": 0, "read_calls": 0, "bytes": 0}
    original = pathlib.Path.open

    def counting_open(self: pathlib.Path, *a: Any, **kw: Any) -> Any:
        f = original(self, *a, **kw)
        if str(self).startswith(root) and "r" in (a[0] if a else kw.get("mode", "r")):
            tally["opens"] += 1
            return _CountingFile(f, tally)
        return f

    pathlib.Path.open = counting_open  # type: ignore[method-assign]
    return tally


def stage_setup(url: str, schema: str | None, root: str) -> dict[str, Any]:
    from sqlmodel import Session, SQLModel

    import subledger.core.model  # noqa: F401
    from subledger.core.model import Connection
    from subledger.core.plugins import get_connector_class
    from subledger.core.secrets import config_for_storage, load_config

    engine = _engine(url, schema)
    SQLModel.metadata.create_all(engine)
    cls = get_connector_class("files")
    with Session(engine) as s, s.begin():
        for name in (CRM, BILLING):
            cfg = load_config(cls.config_model, {"path": str(Path(root) / name)})
            s.add(Connection(name=name, plugin="files", config=config_for_storage(cfg)))
    return {}


def stage_pull_records(url: str, schema: str | None, root: str) -> dict[str, Any]:
    from subledger.sync.pull import pull

    engine = _engine(url, schema)
    tally = _count_file_reads(root)
    t = time.perf_counter()
    streams: dict[str, int] = {}
    rejected = 0
    for name in (CRM, BILLING):
        report = pull(engine, name, streams=["customers", "contracts", "invoices"])
        rejected += report.rejected
        for s in report.streams:
            streams[f"{name}.{s.stream}"] = s.records
    return {"seconds": time.perf_counter() - t, "records": sum(streams.values()), "streams": streams,
            "rejected": rejected, "io": tally}


def stage_pull_usage(url: str, schema: str | None, root: str) -> dict[str, Any]:
    from sqlmodel import Session

    from subledger.core.store.usage import count_events
    from subledger.sync.pull import pull

    engine = _engine(url, schema)
    tally = _count_file_reads(root)
    t = time.perf_counter()
    report = pull(engine, BILLING, streams=["usage_events"])
    seconds = time.perf_counter() - t
    with Session(engine) as s:
        stored = count_events(s)
    return {"seconds": seconds, "records": stored, "rejected": report.rejected, "io": tally}


def stage_identity(url: str, schema: str | None, root: str) -> dict[str, Any]:
    from sqlmodel import Session

    from subledger.sync.engine import connection_infos, master_system
    from subledger.sync.identity import resolve_identities

    engine = _engine(url, schema)
    settings = _settings()
    t = time.perf_counter()
    with Session(engine) as s, s.begin():
        master = master_system(settings, connection_infos(s, settings))
        result = resolve_identities(s, master=master, match_on=list(settings.identity.match_on), actor="bench",
                                    link_fields=settings.identity.link_field)
    return {"seconds": time.perf_counter() - t, "linked": result.linked, "issues": len(result.issues)}


def stage_rate(url: str, schema: str | None, root: str) -> dict[str, Any]:
    from sqlmodel import Session

    from subledger.sync.contracts import ContractReadModel, Roles

    engine = _engine(url, schema)
    t = time.perf_counter()
    contracts = periods = errors = 0
    total = 0
    with Session(engine) as s:
        roles = Roles(contract_systems=(CRM,), billing_systems=(BILLING,), usage_system=BILLING)
        for view in ContractReadModel(s, roles, as_of=NOW).views():
            contracts += 1
            errors += view.error is not None
            for p in view.periods:
                if p.ended:
                    periods += 1
                    total += p.rating.total
    return {"seconds": time.perf_counter() - t, "contracts": contracts, "periods": periods, "errors": errors,
            "expected_minor": total}


def stage_reconcile(url: str, schema: str | None, root: str) -> dict[str, Any]:
    from subledger.sync import engine as sync_engine
    from subledger.sync.rules.builtin import BUILTIN_RULES

    engine = _engine(url, schema)
    times: dict[str, float] = {}
    original_plan = sync_engine.plan_actions

    def timed_plan(*a: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = original_plan(*a, **kw)
        times["plan"] = time.perf_counter() - t0
        return out

    sync_engine.plan_actions = timed_plan  # type: ignore[assignment]
    t = time.perf_counter()
    report = sync_engine.reconcile(engine, settings=_settings(), actor="bench",
                                   now=NOW, rules=[r() for r in BUILTIN_RULES])
    seconds = time.perf_counter() - t
    opened = {k: v.opened for k, v in report.findings.items() if v.opened}
    return {"seconds": seconds, "plan_seconds": times.get("plan", 0.0), "opened": opened,
            "planned": report.plan.planned}


def stage_revrec(url: str, schema: str | None, root: str) -> dict[str, Any]:
    from sqlmodel import Session

    from subledger.core.revrec.run import run_recognition

    engine = _engine(url, schema)
    t = time.perf_counter()
    with Session(engine) as s, s.begin():
        result = run_recognition(s, through=THROUGH)
    return {"seconds": time.perf_counter() - t, "obligations": result.obligations,
            "entries": result.entries_posted, "schedule_changes": result.schedule_changes,
            "warnings": len(result.warnings)}


def _parsed_rows(lines: list[bytes], *, sqlite: bool, now: datetime) -> list[tuple]:
    import hashlib
    rows = []
    stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
    for line in lines:
        d = json.loads(line)
        at = datetime.fromisoformat(d["timestamp"])
        rows.append((
            BILLING, d["event_id"], d["customer"], d["meter"],
            str(d["quantity"]) if sqlite else Decimal(str(d["quantity"])),
            at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at, json.dumps(d.get("properties", {})),
            hashlib.sha256(line).hexdigest(), stamp if sqlite else now,
        ))
    return rows


def _chunks(jsonl: str, size: int = 200_000):  # type: ignore[no-untyped-def]
    with open(jsonl, "rb") as fh:
        buf = []
        for line in fh:
            buf.append(line.rstrip(b"\n"))
            if len(buf) == size:
                yield buf
                buf = []
        if buf:
            yield buf


def stage_baseline_sqlite(db: str, schema: str | None, jsonl: str) -> dict[str, Any]:
    """Insert time only: rows are parsed chunk by chunk outside the clock (10M rows do not fit in RAM)."""
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE usage_event (id INTEGER PRIMARY KEY, system TEXT, event_id TEXT, "
        "customer_external_id TEXT, meter TEXT, quantity TEXT, occurred_at TEXT, properties TEXT, "
        "payload_hash TEXT, fetched_at TEXT, UNIQUE (system, event_id))"
    )
    conn.execute("CREATE INDEX ix_time ON usage_event (occurred_at)")
    now, spent, n = datetime.now(UTC), 0.0, 0
    for chunk in _chunks(jsonl):
        rows = _parsed_rows(chunk, sqlite=True, now=now)
        t = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO usage_event (system, event_id, customer_external_id, meter, quantity, occurred_at, "
            "properties, payload_hash, fetched_at) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("COMMIT")
        spent += time.perf_counter() - t
        n += len(rows)
    conn.close()
    return {"seconds": spent, "records": n, "name": "sqlite3.executemany"}


def stage_baseline_pg(url: str, schema: str | None, jsonl: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {schema}.baseline_usage_event (id BIGSERIAL PRIMARY KEY, system TEXT, event_id TEXT, "
            "customer_external_id TEXT, meter TEXT, quantity NUMERIC, occurred_at TIMESTAMPTZ, "
            "properties JSONB, payload_hash TEXT, fetched_at TIMESTAMPTZ, UNIQUE (system, event_id))"
        )
        conn.execute(f"CREATE INDEX ON {schema}.baseline_usage_event (occurred_at)")
        now, spent, n = datetime.now(UTC), 0.0, 0
        for chunk in _chunks(jsonl):
            rows = _parsed_rows(chunk, sqlite=False, now=now)
            t = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                f"COPY {schema}.baseline_usage_event (system, event_id, customer_external_id, meter, quantity, "
                "occurred_at, properties, payload_hash, fetched_at) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            spent += time.perf_counter() - t
            n += len(rows)
        conn.execute(f"DROP TABLE {schema}.baseline_usage_event")
    return {"seconds": spent, "records": n, "name": "COPY"}


def stage_stripe(url: str, schema: str | None, customers_arg: str) -> dict[str, Any]:
    """Seed a Stripe sandbox, pull it through the Stripe connector, count HTTP requests."""
    from sqlmodel import Session, SQLModel

    import subledger.core.model  # noqa: F401
    from subledger.core.model import Connection
    from subledger.core.sandbox import SandboxServer
    from subledger.core.secrets import config_for_storage
    from subledger.plugins.stripe.config import StripeConfig
    from subledger.plugins.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox
    from subledger.sync.pull import pull

    n = int(customers_arg)
    now = int(time.time())
    day = 86400
    fixture: dict[str, Any] = {
        "customers": [{"id": f"cus_{i}", "name": f"Company {i}", "email": f"ap@co{i}.example",
                       "metadata": {"subledger_id": f"C{i:05d}"}, "created": now - 120 * day} for i in range(n)],
        "products": [{"id": "prod_api", "name": "API calls"}, {"id": "prod_platform", "name": "Platform"}],
        "meters": [{"id": "mtr_api", "display_name": "API calls", "event_name": "api_calls",
                    "default_aggregation": {"formula": "sum"}, "created": now - 130 * day}],
        "prices": [
            {"id": "price_platform", "product": "prod_platform", "currency": "usd", "unit_amount": 50000,
             "recurring": {"interval": "month"}},
            {"id": "price_api", "product": "prod_api", "currency": "usd", "billing_scheme": "tiered",
             "tiers_mode": "graduated",
             "recurring": {"interval": "month", "usage_type": "metered", "meter": "mtr_api"},
             "tiers": [{"up_to": 10000, "unit_amount": 0}, {"up_to": "inf", "unit_amount_decimal": "0.2"}]},
        ],
        "meter_events": [
            {"event_name": "api_calls", "timestamp": now - (5 + 7 * k) * day,
             "payload": {"stripe_customer_id": f"cus_{i}", "value": str(1000 + i * 37 % 900)},
             "identifier": f"seed-{i}-{k}"}
            for i in range(n) for k in range(3)],
        "subscriptions": [{"id": f"sub_{i}", "customer": f"cus_{i}", "created": now - 95 * day,
                           "items": [{"price": "price_platform"}, {"price": "price_api"}]} for i in range(n)],
    }
    sandbox = StripeSandbox(log_size=10_000_000)
    t = time.perf_counter()
    sandbox.seed(fixture)
    seeded = time.perf_counter() - t
    engine = _engine(url, schema)
    SQLModel.metadata.create_all(engine)
    with SandboxServer(sandbox) as server:
        config = StripeConfig(api_key=DEFAULT_API_KEY, api_base=server.url, meter_events_base=server.url)
        with Session(engine) as s, s.begin():
            s.add(Connection(name="stripe", plugin="stripe", config=config_for_storage(config)))
        sandbox.exchanges.clear()
        t = time.perf_counter()
        report = pull(engine, "stripe")
        seconds = time.perf_counter() - t
        exchanges = [e for e in sandbox.exchanges if not e.request.path.startswith("/_sandbox")]
        by_path: dict[str, int] = {}
        for e in exchanges:
            key = "/".join(p if not ("_" in p and p.split("_")[0] in ("cus", "in", "sub", "mtr")) else "{id}"
                           for p in e.request.path.split("?")[0].split("/"))
            by_path[key] = by_path.get(key, 0) + 1
        again = len(sandbox.exchanges)
        report2 = pull(engine, "stripe")
        requests_again = len(sandbox.exchanges) - again
    return {"seconds": seconds, "seed_seconds": seeded, "customers": n,
            "streams": {s.stream: s.records for s in report.streams}, "records": sum(s.records for s in report.streams),
            "rejected": report.rejected, "requests": len(exchanges), "by_path": by_path,
            "again_records": sum(s.records for s in report2.streams), "again_requests": requests_again}


def _child_main(target: str, args: tuple, out: Any) -> None:
    try:
        result = globals()[target](*args)
        result["rss_mb"] = _peak_rss_mb()
        out.put(result)
    except BaseException as exc:  # the parent prints it and goes on with the next stage
        out.put({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})


STAGE_TIMEOUT: float | None = None


def in_child(target: str, *args: Any) -> dict[str, Any]:
    """Run one stage in a fresh process (its own peak RSS); give up on it after ``STAGE_TIMEOUT`` seconds."""
    import queue

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_main, args=(target, args, q))
    started = time.perf_counter()
    p.start()
    try:
        result = q.get(timeout=STAGE_TIMEOUT)
    except queue.Empty:
        p.kill()  # its transaction rolls back; later stages see the store as it was
        result = {"error": f"did not finish within --stage-timeout ({time.perf_counter() - started:.0f} s); stopped",
                  "trace": ""}
    p.join()
    if "error" in result:
        print(f"  {target.removeprefix('stage_'):24s}  NOT DONE: {result['error']}", flush=True)
        if result["trace"]:
            print(result["trace"], file=sys.stderr)
    return result


# -- the run ------------------------------------------------------------------------------------


def _line(stage: str, r: dict[str, Any], note: str = "") -> None:
    if "error" in r:
        print(f"  {stage:24s}  FAILED: {r['error']}")
        return
    print(f"  {stage:24s} {r['seconds']:9.1f} s   peak RSS {r['rss_mb']:7.0f} MB   {note}", flush=True)


def run_backend(backend: str, url: str, schema: str | None, root: Path, jsonl: Path, counts: dict[str, int]) -> None:
    print(f"\n[{backend}]  {counts['customers'] // 2:,} customers, {counts['usage_events']:,} usage events, "
          f"{counts['invoices']:,} invoices", flush=True)
    in_child("stage_setup", url, schema, str(root))
    r = in_child("stage_pull_records", url, schema, str(root))
    if "error" not in r:
        io = r["io"]
        _line("pull records", r, f"{r['records']:,} records ({r['rejected']} rejected), "
              f"{r['records'] / r['seconds']:,.0f}/s; {io['opens']} files opened, {io['read_calls']:,} reads "
              f"({io['read_calls'] / max(1, r['records']):.5f} per object, {io['bytes'] / 1e6:.0f} MB)")
    r = in_child("stage_pull_usage", url, schema, str(root))
    if "error" not in r:
        io = r["io"]
        _line("pull usage", r, f"{r['records']:,} events stored ({r['rejected']} rejected), "
              f"{r['records'] / r['seconds']:,.0f} events/s; {io['opens']} file opened, {io['read_calls']:,} reads "
              f"({io['read_calls'] / max(1, r['records']):.5f} per event, {io['bytes'] / 1e6:.0f} MB)")
        if backend == "sqlite":
            b = in_child("stage_baseline_sqlite", str(root / "baseline.sqlite"), None, str(jsonl))
        else:
            b = in_child("stage_baseline_pg", url, schema, str(jsonl))
        if "error" not in b:
            _line(f"  baseline {b['name']}", b, f"{b['records'] / b['seconds']:,.0f} events/s (pre-parsed rows, "
                  f"insert only); subledger/baseline {b['seconds'] / r['seconds']:.2f}")
    r = in_child("stage_identity", url, schema, str(root))
    if "error" not in r:
        _line("identity", r, f"{r['linked']:,} linked, {r['issues']} issues")
    r = in_child("stage_rate", url, schema, str(root))
    if "error" not in r:
        _line("rate", r, f"{r['contracts']:,} contracts, {r['periods']:,} periods "
              f"({r['periods'] / r['seconds']:,.0f} periods/s), expected {_major(r['expected_minor'])} USD, "
              f"{r['errors']} errors")
    r = in_child("stage_reconcile", url, schema, str(root))
    if "error" not in r:
        _line("reconcile (all rules)", r, f"findings opened {r['opened']}; actions planned {r['planned']:,}")
        print(f"  {'  of which plan':24s} {r['plan_seconds']:9.1f} s   "
              f"({r['plan_seconds'] / r['seconds']:.0%} of reconcile)", flush=True)
    r = in_child("stage_revrec", url, schema, str(root))
    if "error" not in r:
        _line("revrec", r, f"{r['obligations']:,} obligations, {r['entries']:,} journal entries posted, "
              f"{r['schedule_changes']:,} schedule rows, {r['warnings']} warnings")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 customers, 100,000 events, 50 in Stripe")
    ap.add_argument("--postgres", default=os.environ.get("SUBLEDGER_TEST_POSTGRES_URL", DEFAULT_PG))
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both", "none"), default="both",
                    help="stores to run the files pipeline on (none: only the Stripe variant)")
    ap.add_argument("--stripe-customers", type=int, default=200, help="0 skips the Stripe variant")
    ap.add_argument("--stage-timeout", type=float, default=None, help="seconds after which a stage is stopped")
    ap.add_argument("--tmp", default=None, help="folder for the generated files (default: a temporary one)")
    args = ap.parse_args()
    global STAGE_TIMEOUT
    STAGE_TIMEOUT = args.stage_timeout
    if args.quick:
        args.customers, args.events, args.stripe_customers = 200, 100_000, min(args.stripe_customers, 50)
    with tempfile.TemporaryDirectory(prefix="subledger-bench-", dir=args.tmp) as tmp:
        root = Path(tmp)
        jsonl = root / BILLING / "usage" / "events.jsonl"
        counts: dict[str, int] = {}
        if args.backend != "none":
            t = time.perf_counter()
            counts = write_company(root, args.customers, args.events)
            print(f"generated {args.customers:,} customers x 12 months: {counts['usage_events']:,} events "
                  f"({jsonl.stat().st_size / 1e6:,.0f} MB), {counts['invoices']:,} invoices in "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
        if args.backend in ("sqlite", "both"):
            run_backend("sqlite", f"sqlite:///{root}/subledger.sqlite", None, root, jsonl, counts)
        if args.backend in ("postgresql", "both"):
            import psycopg

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.postgres, autocommit=True) as c:
                c.execute(f"CREATE SCHEMA {schema}")
            try:
                run_backend("postgresql", args.postgres, schema, root, jsonl, counts)
            finally:
                with psycopg.connect(args.postgres, autocommit=True) as c:
                    c.execute(f"DROP SCHEMA {schema} CASCADE")
        if args.stripe_customers:
            r = in_child("stage_stripe", f"sqlite:///{root}/stripe.sqlite", None, str(args.stripe_customers))
            print(f"\n[stripe sandbox, SQLite]  {args.stripe_customers} customers (seeded in "
                  f"{r.get('seed_seconds', 0):.1f}s)")
            if "error" not in r:
                _line("pull (all streams)", r, f"{r['records']:,} objects synced {r['streams']} "
                      f"({r['rejected']} rejected)")
                print(f"  HTTP requests: {r['requests']:,}  = {r['requests'] / max(1, r['records']):.3f} per synced "
                      f"object, {r['requests'] / r['customers']:.2f} per customer")
                top = sorted(r["by_path"].items(), key=lambda kv: -kv[1])[:6]
                print("  by endpoint: " + ", ".join(f"{k} {v}" for k, v in top))
                print(f"  re-pull (nothing changed): {r['again_records']} objects, {r['again_requests']} requests")


if __name__ == "__main__":
    main()
