"""Benchmark: load usage events from JSONL through the files connector into the store.

Prints events/s and peak RSS for subledger's full path (files connector -> pull engine ->
usage ingest with dedup and rollups), and, measured in the same run, a raw baseline:
``sqlite3.executemany`` (SQLite) or ``COPY`` (PostgreSQL) of the same rows, already parsed,
into a table with the same columns and indexes. Each measurement runs in its own process
so peak RSS is its own.

    .venv/bin/python bench/bench_ingest.py                 # 1,000,000 events, SQLite
    .venv/bin/python bench/bench_ingest.py --events 200000 --postgres postgresql://postgres@127.0.0.1/test

Targets (issue 2): >= 150,000 events/s, ratio to the baseline >= 0.3, peak RSS <= 400 MB.
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
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CUSTOMERS = 1000
METERS = ("api_calls", "storage_gb", "seats")


def write_events(path: Path, n: int) -> None:
    """Stream ``n`` synthetic events (one month, 1,000 customers, 3 meters) to JSONL."""
    step = timedelta(seconds=31 * 86400 / n)
    with path.open("w") as fh:
        at = T0
        buf = []
        for i in range(n):
            buf.append(
                json.dumps(
                    {
                        "event_id": f"evt_{i:09d}",
                        "customer": f"cus_{i * 7919 % CUSTOMERS:04d}",
                        "meter": METERS[i % 3],
                        "quantity": str(Decimal(i % 500) / 4),
                        "timestamp": at.isoformat(),
                        "properties": {"region": "eu" if i % 2 else "us"},
                    },
                    separators=(",", ":"),
                )
            )
            at += step
            if len(buf) == 10_000:
                fh.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_subledger(url: str, folder: str, out: mp.Queue) -> None:
    from sqlmodel import Session, SQLModel

    import subledger.core.model  # noqa: F401
    from subledger.core.model import Connection
    from subledger.core.plugins import get_connector_class
    from subledger.core.secrets import config_for_storage, load_config
    from subledger.core.store.engine import make_engine
    from subledger.core.store.usage import count_events
    from subledger.sync.pull import pull

    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    cls = get_connector_class("files")
    with Session(engine) as s, s.begin():
        cfg = load_config(cls.config_model, {"path": folder})
        s.add(Connection(name="bench", plugin="files", config=config_for_storage(cfg)))
    t = time.perf_counter()
    report = pull(engine, "bench", streams=["usage_events"])
    elapsed = time.perf_counter() - t
    with Session(engine) as s:
        stored = count_events(s)
    out.put({"seconds": elapsed, "stored": stored, "rejected": report.rejected, "rss_mb": _peak_rss_mb()})


def run_sqlite_baseline(db: str, jsonl: str, out: mp.Queue) -> None:
    import sqlite3

    rows = _parsed_rows(jsonl, sqlite=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE usage_event (id INTEGER PRIMARY KEY, system TEXT, event_id TEXT, "
        "customer_external_id TEXT, meter TEXT, quantity TEXT, occurred_at TEXT, properties TEXT, "
        "payload_hash TEXT, fetched_at TEXT, UNIQUE (system, event_id))"
    )
    conn.execute("CREATE INDEX ix_time ON usage_event (occurred_at)")
    t = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO usage_event (system, event_id, customer_external_id, meter, quantity, occurred_at, "
        "properties, payload_hash, fetched_at) VALUES (?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.execute("COMMIT")
    out.put({"seconds": time.perf_counter() - t, "rss_mb": _peak_rss_mb()})


def run_pg_baseline(url: str, jsonl: str, out: mp.Queue) -> None:
    import psycopg

    rows = _parsed_rows(jsonl, sqlite=False)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(
                f"CREATE TABLE {schema}.usage_event (id BIGSERIAL PRIMARY KEY, system TEXT, event_id TEXT, "
                "customer_external_id TEXT, meter TEXT, quantity NUMERIC, occurred_at TIMESTAMPTZ, "
                "properties JSONB, payload_hash TEXT, fetched_at TIMESTAMPTZ, UNIQUE (system, event_id))"
            )
            conn.execute(f"CREATE INDEX ON {schema}.usage_event (occurred_at)")
            t = time.perf_counter()
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(
                    f"COPY {schema}.usage_event (system, event_id, customer_external_id, meter, quantity, "
                    "occurred_at, properties, payload_hash, fetched_at) FROM STDIN"
                ) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            out.put({"seconds": time.perf_counter() - t, "rss_mb": _peak_rss_mb()})
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _parsed_rows(jsonl: str, *, sqlite: bool) -> list[tuple]:
    import hashlib

    now = datetime.now(UTC)
    rows = []
    with open(jsonl, "rb") as fh:
        for line in fh:
            d = json.loads(line)
            at = datetime.fromisoformat(d["timestamp"])
            rows.append(
                (
                    "bench",
                    d["event_id"],
                    d["customer"],
                    d["meter"],
                    d["quantity"] if sqlite else Decimal(d["quantity"]),
                    at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at,
                    json.dumps(d["properties"]),
                    hashlib.sha256(line).hexdigest(),
                    now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else now,
                )
            )
    return rows


def _in_child(target, *args) -> dict:  # type: ignore[no-untyped-def]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    if p.exitcode:
        sys.exit(f"{target.__name__} failed with exit code {p.exitcode}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument(
        "--postgres",
        default=os.environ.get("SUBLEDGER_TEST_POSTGRES_URL"),
        help="also run on this PostgreSQL URL",
    )
    args = ap.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory(prefix="subledger-bench-") as tmp:
        folder = Path(tmp) / "data"
        (folder / "usage").mkdir(parents=True)
        jsonl = folder / "usage" / "events.jsonl"
        t = time.perf_counter()
        write_events(jsonl, n)
        print(
            f"generated {n:,} events ({jsonl.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s"
        )

        targets = [("sqlite", f"sqlite:///{tmp}/subledger.sqlite")]
        if args.postgres:
            targets.append(("postgresql", args.postgres))
        for backend, url in targets:
            if backend == "postgresql":
                schema = f"bench_{uuid.uuid4().hex[:8]}"
                import psycopg

                with psycopg.connect(url, autocommit=True) as c:
                    c.execute(f"CREATE SCHEMA {schema}")
                sl_url = url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
                ours = _in_child(run_subledger, sl_url, str(folder))
                with psycopg.connect(url, autocommit=True) as c:
                    c.execute(f"DROP SCHEMA {schema} CASCADE")
                base = _in_child(run_pg_baseline, url, str(jsonl))
                base_name = "COPY"
            else:
                ours = _in_child(run_subledger, url, str(folder))
                base = _in_child(run_sqlite_baseline, f"{tmp}/baseline.sqlite", str(jsonl))
                base_name = "sqlite3.executemany"
            assert ours["stored"] == n, f"stored {ours['stored']} of {n} events ({ours['rejected']} rejected)"
            ours_rate = n / ours["seconds"]
            base_rate = n / base["seconds"]
            print(f"\n[{backend}]")
            print(
                f"  subledger pull (files -> store): {ours_rate:12,.0f} events/s  "
                f"({ours['seconds']:.2f}s, peak RSS {ours['rss_mb']:.0f} MB)"
            )
            print(
                f"  baseline {base_name:21s}: {base_rate:12,.0f} events/s  "
                f"({base['seconds']:.2f}s, pre-parsed rows, insert only)"
            )
            print(
                f"  ratio subledger/baseline: {ours_rate / base_rate:.2f}   "
                f"(targets: >= 150,000 events/s, ratio >= 0.3, RSS <= 400 MB)"
            )


if __name__ == "__main__":
    main()
