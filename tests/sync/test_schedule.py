"""Schedules: durations, cron, the next run, retry backoff, and the `subledger schedule` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select
from typer.testing import CliRunner, Result

from subledger.commands.schedule import register
from subledger.core.errors import ConfigError
from subledger.core.model import AuditEntry, Connection, Schedule
from subledger.core.store.engine import get_engine
from subledger.sync.schedule import (
    CronSpec,
    add_schedule,
    format_duration,
    new_schedule,
    next_interval_run,
    next_run,
    parse_cron,
    parse_duration,
    period,
    record_failure,
    record_success,
    remove_schedule,
    retry_delay,
    set_enabled,
)

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday
M = timedelta(minutes=1)
S = timedelta(seconds=1)


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400), ("2w", 1209600), ("1h30m", 5400), ("1.5s", 1.5)],
)
def test_durations_are_a_number_and_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["15", "m", "15 minutes", "15min", "-5m", "", "1h-30m", "15M"])
def test_a_malformed_duration_names_the_option_and_the_form(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration(text, option="--poll")
    assert f"--poll {text!r}" in str(err.value)
    assert "15m" in err.value.fix  # type: ignore[operator]


def test_a_zero_duration_is_refused() -> None:
    with pytest.raises(ConfigError, match="zero"):
        parse_duration("0s")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (30, "30s"),
        (900, "15m"),
        (5400, "1h30m"),
        (86400, "1d"),
        (90061, "1d1h1m1s"),
        (1.5, "1.5s"),
    ],
)
def test_durations_print_in_their_shortest_form(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


@given(st.integers(min_value=1, max_value=10 * 365 * 86400))
def test_printing_then_parsing_a_duration_gives_it_back(seconds: int) -> None:
    span = timedelta(seconds=seconds)
    assert parse_duration(format_duration(span)) == span


# -- interval schedules -----------------------------------------------------------------------


def test_interval_runs_stay_on_the_grid_of_their_creation_time() -> None:
    every = 15 * M
    assert next_interval_run(T0, every, T0 - M) == T0  # not started yet: the anchor itself
    assert next_interval_run(T0, every, T0) == T0 + 15 * M  # strictly after
    assert next_interval_run(T0, every, T0 + 14 * M + 59 * S) == T0 + 15 * M
    # a sync that took 46 minutes skips the slots it overran, then rejoins the grid
    assert next_interval_run(T0, every, T0 + 46 * M) == T0 + 60 * M


@given(
    anchor_offset=st.integers(min_value=0, max_value=10**9),
    every_s=st.integers(min_value=1, max_value=30 * 86400),
    after_offset=st.integers(min_value=0, max_value=10**9),
)
def test_the_next_interval_run_is_the_first_grid_point_after_now(
    anchor_offset: int, every_s: int, after_offset: int
) -> None:
    anchor = T0 + timedelta(seconds=anchor_offset)
    every = timedelta(seconds=every_s)
    after = anchor + timedelta(seconds=after_offset)
    nxt = next_interval_run(anchor, every, after)
    assert after < nxt <= after + every
    assert (nxt - anchor) % every == timedelta(0)


# -- cron schedules ---------------------------------------------------------------------------


def test_cron_is_read_in_utc_by_default() -> None:
    cron = parse_cron("*/15 * * * *")
    assert cron == CronSpec("*/15 * * * *", "UTC")
    assert cron.next_after(T0 + 7 * M) == T0 + 15 * M
    assert cron.next_after(T0 + 15 * M) == T0 + 30 * M


def test_cron_in_a_time_zone_follows_its_daylight_saving_time() -> None:
    cron = parse_cron("0 6 * * *", zone="Europe/Paris")
    assert cron.stored == "CRON_TZ=Europe/Paris 0 6 * * *"
    winter = datetime(2026, 3, 1, tzinfo=UTC)
    summer = datetime(2026, 7, 1, tzinfo=UTC)
    assert cron.next_after(winter) == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)  # 06:00 CET = 05:00 UTC
    assert cron.next_after(summer) == datetime(2026, 7, 1, 4, 0, tzinfo=UTC)  # 06:00 CEST = 04:00 UTC
    # the stored form reads back the same, and the prefix may be typed by hand
    assert parse_cron(cron.stored) == cron
    assert parse_cron("CRON_TZ=Europe/Paris   0 6 * * *") == cron


def test_cron_aliases_are_accepted() -> None:
    assert parse_cron("@hourly").next_after(T0 + M) == T0 + 60 * M


@pytest.mark.parametrize(
    ("text", "zone", "complaint"),
    [
        ("*/15 * * *", None, "has 4 field(s), not 5"),
        ("0 */15 * * * ?", None, "has 6 field(s), not 5"),  # Quartz style: seconds first
        ("0 0 * * * 30", None, "has 6 field(s), not 5"),
        ("61 * * * *", None, "not a valid cron expression"),
        ("0 0 30 2 *", None, "never fires"),
        ("0 6 * * *", "Mars/Olympus", "time zone 'Mars/Olympus' is unknown"),
        ("CRON_TZ=Europe/Paris 0 6 * * *", "UTC", "give the zone once"),
    ],
)
def test_a_bad_cron_is_refused_with_the_fix(text: str, zone: str | None, complaint: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_cron(text, zone=zone)
    assert complaint in str(err.value)
    assert err.value.fix


def test_a_cron_schedule_period_is_the_gap_between_its_next_two_firings() -> None:
    weekdays = new_schedule("acme", cron=parse_cron("0 9 * * 1-5"), now=T0)
    thursday_noon = datetime(2026, 3, 5, 12, tzinfo=UTC)
    assert period(weekdays, thursday_noon) == timedelta(days=3)  # Friday 9:00 -> Monday 9:00
    assert period(weekdays, T0) == timedelta(days=1)  # Monday 9:00 -> Tuesday 9:00


# -- retries ----------------------------------------------------------------------------------


def test_retries_double_from_30s_up_to_the_schedule_period() -> None:
    delays = [retry_delay(n, period=15 * M) for n in range(1, 8)]
    assert delays == [30 * S, 1 * M, 2 * M, 4 * M, 8 * M, 15 * M, 15 * M]


def test_retries_of_a_daily_schedule_stop_growing_at_an_hour() -> None:
    delays = [retry_delay(n, period=timedelta(days=1)) for n in range(1, 10)]
    assert delays == [30 * S, 1 * M, 2 * M, 4 * M, 8 * M, 16 * M, 32 * M, 60 * M, 60 * M]


def test_a_schedule_faster_than_the_first_retry_retries_at_its_own_pace() -> None:
    assert retry_delay(1, period=10 * S) == 10 * S


@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=1, max_value=400 * 86400))
def test_retry_delays_grow_but_never_past_their_cap(failures: int, period_s: int) -> None:
    every = timedelta(seconds=period_s)
    delay = retry_delay(failures, period=every)
    assert timedelta(0) < delay <= min(every, timedelta(hours=1))
    assert retry_delay(failures + 1, period=every) >= delay


def test_retry_delay_is_only_for_failures() -> None:
    with pytest.raises(ValueError, match="at least once"):
        retry_delay(0, period=M)


def test_failures_push_the_next_run_back_and_a_success_resets_them() -> None:
    row = new_schedule("acme", every=15 * M, now=T0)
    assert row.id == "acme-every-15m" and row.next_run_at == T0  # due at once

    assert record_failure(row, started=T0, finished=T0 + 10 * S) == 30 * S
    assert (row.last_status, row.consecutive_failures, row.next_run_at) == ("failed", 1, T0 + 40 * S)
    assert record_failure(row, started=T0 + 40 * S, finished=T0 + 50 * S) == 1 * M
    assert (row.consecutive_failures, row.next_run_at) == (2, T0 + 110 * S)
    assert row.last_run_at == T0 + 40 * S

    record_success(row, started=T0 + 110 * S, finished=T0 + 2 * M)
    assert (row.last_status, row.consecutive_failures) == ("succeeded", 0)
    assert row.next_run_at == T0 + 15 * M  # back on the grid, not 15m after the retry


@given(
    every_s=st.integers(min_value=1, max_value=7 * 86400),
    attempts=st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=3600)), max_size=40),
)
def test_whatever_happens_a_schedule_is_never_retried_sooner_than_30s_or_later_than_its_period(
    every_s: int, attempts: list[tuple[bool, int]]
) -> None:
    every = timedelta(seconds=every_s)
    row = new_schedule("acme", every=every, now=T0)
    for succeeded, took_s in attempts:
        started = row.next_run_at
        finished = started + timedelta(seconds=took_s)
        if succeeded:
            record_success(row, started=started, finished=finished)
            assert row.consecutive_failures == 0
            assert (row.next_run_at - T0) % every == timedelta(0)  # on the grid
        else:
            failures = row.consecutive_failures
            record_failure(row, started=started, finished=finished)
            assert row.consecutive_failures == failures + 1
        assert finished < row.next_run_at <= finished + every
        if not succeeded:
            assert row.next_run_at - finished >= min(30 * S, every)


def test_a_cron_schedule_waits_for_its_first_firing() -> None:
    row = new_schedule("all", cron=parse_cron("30 * * * *"), now=T0 + 5 * M)
    assert row.next_run_at == T0 + 30 * M
    assert next_run(row, T0 + 30 * M) == T0 + 90 * M
    assert row.id.startswith("all-cron-") and row.cron == "30 * * * *"


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({}, "exactly one of --every and --cron"),
        ({"every": M, "cron": CronSpec("* * * * *")}, "exactly one of --every and --cron"),
        ({"every": timedelta(seconds=1.5)}, "whole number of seconds"),
        ({"every": M, "schedule_id": "two words"}, "not a valid schedule id"),
        ({"every": M, "schedule_id": "x" * 65}, "longer than 64"),
    ],
)
def test_a_bad_schedule_is_refused(kwargs: dict, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        new_schedule("acme", now=T0, **kwargs)


# -- stored schedules -------------------------------------------------------------------------


@pytest.fixture
def store(engine: Engine) -> Engine:
    with Session(engine) as session, session.begin():
        session.add(Connection(name="acme", plugin="files"))
    return engine


def test_adding_a_schedule_is_audited_and_adding_it_again_changes_nothing(store: Engine) -> None:
    with Session(store) as session, session.begin():
        _, created = add_schedule(session, new_schedule("acme", every=15 * M, now=T0), actor="user:ana")
        assert created
    with Session(store) as session, session.begin():
        again, created = add_schedule(
            session, new_schedule("acme", every=15 * M, now=T0 + M), actor="user:ana"
        )
        assert not created and again.created_at == T0
    with Session(store) as session:
        assert len(session.exec(select(Schedule)).all()) == 1
        entries = session.exec(select(AuditEntry)).all()
    assert [(e.actor, e.verb, e.object_id, e.details["every_seconds"]) for e in entries] == [
        ("user:ana", "schedule.add", "acme-every-15m", 900)
    ]


def test_a_schedule_needs_a_known_connection_or_all(store: Engine) -> None:
    with Session(store) as session, session.begin():
        with pytest.raises(ConfigError, match="no connection named 'globex'") as err:
            add_schedule(session, new_schedule("globex", every=M, now=T0), actor="user:ana")
        assert "subledger connections add" in err.value.fix  # type: ignore[operator]
        add_schedule(session, new_schedule("all", every=M, now=T0), actor="user:ana")


def test_an_id_taken_by_another_schedule_is_refused(store: Engine) -> None:
    with Session(store) as session, session.begin():
        add_schedule(session, new_schedule("acme", every=M, now=T0, schedule_id="nightly"), actor="u")
        with pytest.raises(ConfigError, match="'nightly' already exists") as err:
            add_schedule(session, new_schedule("all", every=M, now=T0, schedule_id="nightly"), actor="u")
        assert "schedule remove nightly" in err.value.fix  # type: ignore[operator]


def test_removing_a_schedule_is_audited_and_unknown_ids_are_named(store: Engine) -> None:
    with Session(store) as session, session.begin():
        add_schedule(session, new_schedule("acme", every=M, now=T0), actor="user:ana")
    with Session(store) as session, session.begin():
        with pytest.raises(ConfigError, match=r"no schedule 'acme-every-2m' \(there are: acme-every-1m\)"):
            remove_schedule(session, "acme-every-2m", actor="user:ana")
        remove_schedule(session, "acme-every-1m", actor="user:bo", reason="moving to cron")
    with Session(store) as session:
        assert session.exec(select(Schedule)).all() == []
        last = session.exec(select(AuditEntry).order_by(AuditEntry.id.desc())).first()  # type: ignore[union-attr]
    assert (last.actor, last.verb, last.reason) == ("user:bo", "schedule.remove", "moving to cron")


def test_resuming_a_paused_cron_skips_the_slots_missed_while_paused(store: Engine) -> None:
    with Session(store) as session, session.begin():
        row, _ = add_schedule(session, new_schedule("acme", cron=parse_cron("0 6 * * *"), now=T0), actor="u")
        row.consecutive_failures = 3
        sid = row.id
        set_enabled(session, sid, False, actor="u", now=T0)
    with Session(store) as session, session.begin():
        row = set_enabled(session, sid, True, actor="u", now=T0 + timedelta(days=1, hours=6))
        assert row.enabled and row.consecutive_failures == 0
        assert row.next_run_at == T0 + timedelta(days=2)  # next 06:00, not the missed one
        verbs = session.exec(select(AuditEntry.verb).order_by(AuditEntry.id)).all()
    assert verbs == ["schedule.add", "schedule.pause", "schedule.resume"]


def test_resuming_an_overdue_interval_schedule_runs_it_at_once(store: Engine) -> None:
    with Session(store) as session, session.begin():
        row, _ = add_schedule(session, new_schedule("acme", every=15 * M, now=T0), actor="u")
        set_enabled(session, row.id, False, actor="u", now=T0)
        row = set_enabled(session, row.id, True, actor="u", now=T0 + 40 * M)
        assert row.next_run_at == T0


# -- the commands -----------------------------------------------------------------------------


@dataclass
class Cli:
    runner: CliRunner
    app: typer.Typer
    engine: Engine

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(self.app, list(args))

    def json(self, *args: str) -> object:
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:  # type: ignore[no-untyped-def]
    """`subledger init` on a temp SQLite file, then an app with only this module's commands."""
    from subledger.cli import app as root

    monkeypatch.setenv("SUBLEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    monkeypatch.setenv("COLUMNS", "250")  # rich tables would otherwise wrap at 80 columns
    get_engine.cache_clear()
    runner = CliRunner()
    assert runner.invoke(root, ["init"]).exit_code == 0
    engine = get_engine()
    SQLModel.metadata.create_all(engine)  # until the schedule tables are in a shipped migration
    with Session(engine) as session, session.begin():
        session.add(Connection(name="acme", plugin="files"))
    app = typer.Typer()
    register(app)
    yield Cli(runner, app, engine)
    engine.dispose()
    get_engine.cache_clear()


def test_schedule_add_list_pause_resume_remove(cli: Cli) -> None:
    added = cli.json("schedule", "add", "acme", "--every", "15m")
    assert (added["id"], added["target"], added["every_seconds"], added["created"]) == (
        "acme-every-15m",
        "acme",
        900,
        True,
    )
    assert cli.json("schedule", "add", "acme", "--every", "15m")["created"] is False
    result = cli(
        "schedule", "add", "all", "--cron", "0 6 * * 1-5", "--tz", "America/New_York", "--id", "mornings"
    )
    assert result.exit_code == 0, result.output
    assert "schedule mornings added: sync all cron CRON_TZ=America/New_York 0 6 * * 1-5" in result.stdout

    listed = cli.json("schedule", "list")
    assert [(s["id"], s["enabled"], s["last_status"]) for s in listed] == [
        ("acme-every-15m", True, None),
        ("mornings", True, None),
    ]
    assert "acme-every-15m" in cli("schedule", "list").stdout

    assert cli("schedule", "pause", "mornings").exit_code == 0
    assert "paused" in cli("schedule", "list").stdout
    assert cli("schedule", "resume", "mornings").exit_code == 0
    assert cli("schedule", "remove", "acme-every-15m").exit_code == 0
    assert [s["id"] for s in cli.json("schedule", "list")] == ["mornings"]


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["add", "acme"], "exactly one of --every and --cron"),
        (["add", "acme", "--every", "15m", "--cron", "* * * * *"], "exactly one of --every and --cron"),
        (["add", "acme", "--every", "15m", "--tz", "Europe/Paris"], "--tz applies to --cron only"),
        (["add", "acme", "--every", "quarterly"], "--every 'quarterly' is not a duration"),
        (["add", "acme", "--cron", "every day"], "not 5"),
        (["add", "globex", "--every", "15m"], "no connection named 'globex'"),
        (["remove", "nope"], "no schedule 'nope'"),
        (["pause", "nope"], "no schedule 'nope'"),
    ],
)
def test_schedule_commands_refuse_bad_input_with_a_fix(cli: Cli, args: list[str], complaint: str) -> None:
    result = cli("schedule", *args)
    assert isinstance(result.exception, ConfigError), result.output
    assert complaint in str(result.exception)
    assert result.exception.fix


def test_schedule_list_says_how_to_start_when_empty(cli: Cli) -> None:
    assert "subledger schedule add" in cli("schedule", "list").stdout
    assert cli.json("schedule", "list") == []
