"""Crash anywhere, re-run, exactly once: every writing connector, killed at every boundary.

Issue 15, Deliver 4. For each writing connector (Stripe, Salesforce, HubSpot, NetSuite,
files) a real applier process is killed with ``SIGKILL``

* right before its *k*-th request to the vendor sandbox is served, and right after the
  vendor committed it (the answer never read): the sandbox's ``kill`` fault;
* around each filesystem step of the files writer (temporary file, fsync, rename);
* after its claim committed (nothing sent), after the vendor's answer but before the local
  ``done`` commit, and after that commit (the step hook of ``apply_actions``);

then clean appliers re-run until every action settles, and the vendor's objects are
counted: 0 duplicates (one object, one committed update, per action; one line per invoice
line) and 0 lost actions (every action ``done``, its object complete). How the points are
made and counted: ``crash_support``; what each vendor's "exactly once" is: ``crash_vendors``.

**Default run** (bounded, in the suite): every first-order point of each connector's sample
variants on SQLite, a seeded sample of second-order points (the recovering applier killed
too), a seeded sample on PostgreSQL when ``SUBLEDGER_TEST_POSTGRES_URL`` is set, and the
installed ``subledger apply`` killed at one point per HTTP connector.

**Full run**: ``SUBLEDGER_CRASH_FULL=1`` runs every variant, every first- and second-order
point (at least 1,000 per connector, asserted), every first-order point on PostgreSQL, and
the CLI at every HTTP boundary of each connector's first sample variant::

    SUBLEDGER_CRASH_FULL=1 SUBLEDGER_CRASH_REPORT=/tmp/crash.jsonl \\
        .venv/bin/python -m pytest -n 2 -p no:cacheprovider tests/crash

``SUBLEDGER_CRASH_REPORT`` appends one JSON line of counts per test; ``SUBLEDGER_CRASH_SEED``
changes the samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_support import (
    FULL,
    Kill,
    Runner,
    Scenario,
    Tally,
    Zygote,
    cli_chain,
    migrated_sqlite,
    plain_store,
    record,
    run_scenario,
)
from crash_vendors import HARNESSES
from sqlalchemy import Engine, text

CONNECTORS = ["stripe", "salesforce", "hubspot", "netsuite", "files"]
MIN_POINTS_FULL = 1000
SECOND_ORDER_SAMPLE = 6
"""Second-order points per connector in the default run."""
POSTGRES_SAMPLE = 6
"""First-order points per variant on PostgreSQL in the default run."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    """The process that forks the appliers, warmed up on every variant this run will use."""
    warm = [(name, variant) for name in CONNECTORS
            for variant in (HARNESSES[name].variants if FULL else HARNESSES[name].sample)]
    process = Zygote(warm, tmp_path_factory.mktemp("zygote"))
    yield process
    process.close()


def spec_of(engine: Engine) -> tuple[str, str | None]:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name != "postgresql":
        return url, None
    with engine.connect() as conn:
        return url, conn.execute(text("SELECT current_schema()")).scalar_one()


def _assert_exactly_once(tally: Tally) -> None:
    record(tally)
    assert not tally.problems, f"{len(tally.problems)} problems in {tally.total} crash points:\n" + "\n".join(
        tally.problems[:60])
    assert tally.kills >= tally.total  # every point killed at least one applier


@pytest.mark.parametrize("name", CONNECTORS)
def test_an_applier_killed_at_any_boundary_then_rerun_writes_exactly_once(
    name: str, engine: Engine, zygote: Zygote, tmp_path: Path
) -> None:
    harness = HARNESSES[name]
    postgres = engine.dialect.name == "postgresql"
    tally = Tally(f"{name}{' on postgresql' if postgres else ''}")
    runner = Runner(zygote)
    for variant in harness.variants if FULL else harness.sample:
        scenario = Scenario(harness, variant, engine, spec_of(engine), tmp_path / variant)
        if postgres:
            run_scenario(runner, scenario, tally, first=None if FULL else POSTGRES_SAMPLE, second=0)
        else:
            per_variant = -(-SECOND_ORDER_SAMPLE // len(harness.sample))
            run_scenario(runner, scenario, tally, first=None, second=None if FULL else per_variant)
    _assert_exactly_once(tally)
    if FULL and not postgres:
        assert tally.total >= MIN_POINTS_FULL, tally.line()


def _write_boundary(requests: list[str]) -> int:
    """The 1-based index of the first request that writes (POST/PUT/PATCH other than a read or a login)."""
    reads = ("/batch/read", "/suiteql", "/Soap/", "/query")
    return next(n for n, r in enumerate(requests, 1)
                if r.split()[0] in ("POST", "PUT", "PATCH") and not any(x in r for x in reads))


@pytest.mark.parametrize("name", ["stripe", "netsuite"] if not FULL else ["stripe", "salesforce", "hubspot",
                                                                          "netsuite"])
def test_the_installed_cli_killed_at_a_boundary_then_rerun_writes_exactly_once(
    name: str, zygote: Zygote, tmp_path: Path
) -> None:
    """``subledger apply`` itself (the console script, on a store made by migrations)."""
    harness = HARNESSES[name]
    variant = harness.sample[0]
    engine, db = migrated_sqlite(tmp_path / "cli.sqlite")
    scenario = Scenario(harness, variant, engine, db, tmp_path / "worlds")
    clean = Runner(zygote).chain(scenario, ())
    assert not clean.problems
    if FULL:
        kills = [k for k in clean.probe.points() if k.where == "http"]
    else:
        kills = [Kill("http", _write_boundary(clean.probe.requests), "after")]
    tally = Tally(f"{name} (cli)")
    for kill in kills:
        cli_chain(scenario, kill, tally)
    _assert_exactly_once(tally)


def test_meter_events_of_a_busy_minute_are_not_lost_when_the_applier_dies_before_sending(
    zygote: Zygote, tmp_path: Path
) -> None:
    """A reproduction kept failing on purpose until the connector is fixed (issue 15, Deliver 4).

    The customer's own pipeline sent 1,000 API calls in the minute of a ``push_meter_events``
    action's two events (3 and 4 calls). The applier claims the action and is killed before it
    sends anything. The re-run looks the write up first (it was in flight): Stripe cannot list
    meter events, so ``_find_meter_events`` compares the minute's summary (1,000) with the
    action's quantity (7), concludes the events are there, and the action is marked ``done``
    with neither event in Stripe: lost usage.
    """
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    scenario = Scenario(HARNESSES["stripe"], "meter_events_busy_minute", plain_store(url, None), (url, None),
                        tmp_path / "worlds")
    result = Runner(zygote).chain(scenario, (Kill("step", 1, "after_outbox"),))
    assert result.fired == [True]
    assert result.problems == []
