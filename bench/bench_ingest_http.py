"""Usage ingest over HTTP on loopback (uvicorn, batches of 1,000) against direct store ingest.

    .venv/bin/python bench/bench_ingest_http.py [--events 50000] [--postgres postgresql://postgres@127.0.0.1:5432/test]

Prints events/s and p50/p99 batch latency for POST /v1/usage/events, with
:func:`ingest_usage` called directly on the same store as the baseline, measured in the same run.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import uvicorn
from sqlalchemy import text
from sqlmodel import Session, SQLModel

import subledger.core.model  # noqa: F401
from subledger.api import create_app
from subledger.api.keys import create_key
from subledger.api.settings import ServiceSettings
from subledger.core.connector import UsageEventIn
from subledger.core.model import ExternalRef, Meter
from subledger.core.store.engine import make_engine
from subledger.core.store.usage import ingest_usage

BATCH = 1000


def events(n: int, prefix: str) -> list[dict]:
    now = datetime.now(UTC) - timedelta(seconds=30)
    return [{"id": f"{prefix}{i}", "customer": f"cus_{i % 200}", "meter": ("api_calls", "storage")[i % 2],
             "quantity": str(i % 17 + 1), "timestamp": (now - timedelta(seconds=i % 3600)).isoformat()}
            for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(url: str, n: int) -> None:
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    token = create_key(engine, name="bench", scopes=["ingest"], actor="bench").token
    # Ingest quarantines usage of unknown customers and meters: make the bench's known (a
    # CRM record linked to each customer, and the two meters).
    with Session(engine) as s, s.begin():
        for i in range(200):
            s.add(ExternalRef(entity_type="customer", canonical_id=f"cus_{i}", system="crm", object_type="customer",
                              external_id=f"crm-{i}", method="source"))
        for m in ("api_calls", "storage"):
            s.add(Meter(id=f"mtr_{m}", system="metering", external_id=m, key=m))
    # Baseline: the store's own ingest, same events shape, same batch size.
    now = datetime.now(UTC) - timedelta(seconds=30)
    direct = [UsageEventIn(f"d{i}", f"cus_{i % 200}", "api_calls", Decimal(i % 17 + 1),
                           now - timedelta(seconds=i % 3600), {}, f"h{i}") for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, BATCH):
        with Session(engine) as s, s.begin():
            ingest_usage(s, "direct", direct[i : i + BATCH])
    base = n / (time.perf_counter() - t0)

    port = free_port()
    app = create_app(engine, ServiceSettings())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    bodies = [orjson.dumps({"events": chunk}) for chunk in
              (lambda evs: [evs[i : i + BATCH] for i in range(0, n, BATCH)])(events(n, uuid.uuid4().hex[:6]))]
    latencies = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}",
                                                                     "Content-Type": "application/json"}) as client:
        t0 = time.perf_counter()
        for body in bodies:
            s = time.perf_counter()
            r = client.post("/v1/usage/events", content=body)
            latencies.append(time.perf_counter() - s)
            assert r.status_code == 200 and r.json()["accepted"] == BATCH, r.text[:300]
        http = n / (time.perf_counter() - t0)
    server.should_exit = True
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    backend = engine.dialect.name
    print(f"{backend:10s} direct ingest_usage: {base:10,.0f} events/s (baseline)")
    print(f"{backend:10s} HTTP POST batches : {http:10,.0f} events/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms "
          f"per {BATCH}-event batch  ({http / base:.0%} of baseline)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench(f"sqlite:///{Path(tmp) / 'bench.sqlite'}", args.events)
    if args.postgres:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.postgres)
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            sep = "&" if "?" in args.postgres else "?"
            bench(f"{args.postgres}{sep}options=-csearch_path%3D{schema}", args.events)
        finally:
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
