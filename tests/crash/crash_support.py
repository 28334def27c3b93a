"""Crash-anywhere support: kill a real applier process at every boundary, re-run it, count what landed.

A **crash point** is a place where the applier process dies by ``SIGKILL``:

* ``http`` *k* ``before``: the vendor sandbox kills the applier when its *k*-th request
  arrives, before the handler runs (nothing of it committed);
* ``http`` *k* ``after``: the handler ran and committed, then the sandbox kills the applier
  and closes the connection: the applier never reads the answer;
* ``fs`` *k* ``before``/``after``: the same around the *k*-th filesystem step of the files
  connector's write (``mkstemp``, ``fsync``, ``rename``), which has no HTTP;
* ``step`` *n* ``after_outbox``/``after_write``/``after_done``: the applier kills itself at
  :func:`subledger.sync.apply.apply_actions`'s step hook of the *n*-th action it claims:
  claimed but nothing sent; the vendor answered but the local commit (``done``) was not
  made; ``done`` committed but the next action not started.

The HTTP kills use the sandbox framework's ``kill`` fault (``subledger.core.sandbox.faults``):
each applier registers one on the sandbox's control endpoint with its own pid before it
starts, so no request can pass before the rule is in place. After the kill(s) of a chain,
clean appliers are run until every action settles (at most :data:`MAX_RECOVERIES`), and
the connector's harness counts the vendor's objects: exactly one per action (0
duplicates), every action ``done`` with its object complete (0 lost).

Appliers are real processes. A *zygote* (spawned once, with subledger and the vendor SDKs
imported) forks one child per applier run; the child opens its own engine on the store
(SQLite file or a PostgreSQL schema) and calls ``apply_actions`` the way ``subledger
apply`` does. :func:`cli_chain` runs the installed ``subledger apply`` console script
instead, for a subset.

A *first-order* point kills the first applier and recovers; a *second-order* point kills
the first applier, then kills the recovering applier at one of its own boundaries (the
find-before-create path), then recovers. Each point starts from a fresh world: a new
sandbox on a new port, the store's outbox rows re-inserted, a new files folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel, select

from subledger.core.model import Action, Connection
from subledger.core.sandbox import Sandbox, SandboxServer
from subledger.core.sandbox.app import Exchange
from subledger.core.sandbox.wire import Response
from subledger.core.secrets import config_for_storage
from subledger.core.store.engine import make_engine

FULL = os.environ.get("SUBLEDGER_CRASH_FULL", "").strip() not in ("", "0")
"""``SUBLEDGER_CRASH_FULL=1``: every variant, first- and second-order points (the large run)."""
REPORT = os.environ.get("SUBLEDGER_CRASH_REPORT")
"""A file to append one JSON line of counts per test to (optional)."""
SEED = int(os.environ.get("SUBLEDGER_CRASH_SEED", "15"))
MAX_RECOVERIES = 3
FINAL = ("done", "failed", "rejected", "superseded")
STEPS = ("after_outbox", "after_write", "after_done")
PHASES = ("before", "after")
SECRET_KEY = "cT5SmvN8qBvdPGxbXW3lwM6pyBf9Hu4U1o2yQ-0s7Lc="

PRELOAD = (
    "sqlmodel", "sqlalchemy", "psycopg", "httpx", "subledger.core.model", "subledger.sync.apply",
    "subledger.core.plugins", "subledger.core.secrets",
    "subledger.plugins.stripe.connector", "subledger.plugins.stripe.writes",
    "subledger.plugins.salesforce.connector", "subledger.plugins.salesforce.writes",
    "subledger.plugins.hubspot.connector", "subledger.plugins.netsuite.connector",
    "subledger.plugins.netsuite.writes", "subledger.plugins.files.connector", "subledger.plugins.files.writes",
)


# -- crash points ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """Where one applier dies: ``http``/``fs`` boundary *n* (1-based) ``before``/``after``, or
    ``step`` *n* (the *n*-th action this applier claims) at ``after_outbox``/``after_write``/``after_done``."""

    where: str
    n: int
    phase: str

    def __str__(self) -> str:
        return f"{self.where}#{self.n}:{self.phase}"


@dataclass
class Probe:
    """What one clean applier run did: its vendor requests, filesystem steps and claims."""

    requests: list[str] = field(default_factory=list)
    fs_ops: int = 0
    claims: int = 0

    def points(self) -> list[Kill]:
        """Every boundary of this run, in order: each request and filesystem step before and
        after, and each claimed action's local steps."""
        out = [Kill("http", n, phase) for n in range(1, len(self.requests) + 1) for phase in PHASES]
        out += [Kill("fs", n, phase) for n in range(1, self.fs_ops + 1) for phase in PHASES]
        out += [Kill("step", n, step) for n in range(1, self.claims + 1) for step in STEPS]
        return out


# -- the zygote: a process with everything imported that forks one applier per run --------------------


def zygote_main(conn: Any, preload: tuple[str, ...], warm: list[tuple[str, str]], base: str) -> None:
    os.environ.setdefault("SUBLEDGER_SECRET_KEY", SECRET_KEY)
    os.environ["SUBLEDGER_HOME"] = str(Path(base) / "home")
    try:
        for name in preload:
            importlib.import_module(name)
        warm_up(warm, Path(base))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        if spec is None:
            return
        pid = os.fork()
        if pid == 0:  # the applier
            code = 70
            try:
                conn.close()
                code = child_main(spec)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        conn.send(("started", pid))
        _, status = os.waitpid(pid, 0)
        conn.send(("ended", os.waitstatus_to_exitcode(status)))


class Zygote:
    """The parent's handle on the zygote process."""

    def __init__(self, warm: list[tuple[str, str]], base: Path) -> None:
        context = get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=zygote_main, args=(theirs, PRELOAD, warm, str(base)), daemon=True,
                                       name="crash-zygote")
        self.process.start()
        theirs.close()
        self.forks = 0
        if not self.conn.poll(300):
            raise TimeoutError("the zygote did not finish its warm-up in 300 s")
        state, detail = self.conn.recv()
        if state != "ready":
            raise RuntimeError(f"the zygote failed to warm up:\n{detail}")

    def run(self, spec: dict[str, Any], timeout: float = 120.0) -> tuple[int, int]:
        """Run one applier; its (pid, exit code: negative for a signal)."""
        self.conn.send(spec)
        if not self.conn.poll(timeout):
            raise TimeoutError("the zygote did not fork an applier")
        _, pid = self.conn.recv()
        self.forks += 1
        if not self.conn.poll(timeout):
            os.kill(pid, signal.SIGKILL)  # a hung applier: end it, and report it
            self.conn.recv()
            raise TimeoutError(f"applier {pid} ran for more than {timeout}s; see {spec['log']}")
        _, code = self.conn.recv()
        return pid, code

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def warm_up(scenarios: list[tuple[str, str]], base: Path) -> None:
    """Apply each (connector, variant) once in the zygote, so every applier it forks starts with
    the SDKs' lazy imports done; then wait until only the main thread is left, so forking is safe."""
    import threading

    from crash_vendors import HARNESSES

    from subledger.sync.apply import apply_actions

    for n, (name, variant) in enumerate(scenarios):
        url = f"sqlite:///{base / f'warm-{n}.sqlite'}"
        engine = plain_store(url, None)
        scenario = Scenario(HARNESSES[name], variant, engine, (url, None), base / f"warm-{n}")
        with scenario.world():
            apply_actions(engine, actor="warm-up")
        engine.dispose()
    deadline = time.monotonic() + 10
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    if threading.active_count() > 1:
        raise RuntimeError(f"threads left after the warm-up: {threading.enumerate()}")


# -- what one applier process does --------------------------------------------------------------------


def open_engine(db: tuple[str, str | None]) -> Engine:
    url, schema = db
    if schema is None:
        return make_engine(url)
    return make_engine(url, connect_args={"options": f"-csearch_path={schema}"})


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # never reached: SIGKILL cannot be caught


def child_main(spec: dict[str, Any]) -> int:
    """One applier run: arm its kill, apply every approved or interrupted action, write what it did."""
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(spec["env"])
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True,
                        format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s")
    from subledger.sync.apply import apply_actions

    kill = Kill(**spec["kill"]) if spec.get("kill") else None
    fs_ops = _count_fs_steps(kill if kill and kill.where == "fs" else None) if spec.get("files") else [0]
    claims = [0]

    def on_step(step: str, action: Action) -> None:
        if step == "after_outbox":
            claims[0] += 1
        if kill is not None and kill.where == "step" and kill.n == claims[0] and kill.phase == step:
            _die()

    if kill is not None and kill.where == "http":
        # The sandbox kills this process at the boundary: the rule names this pid.
        rule = {"kind": "kill", "pid": os.getpid(), "skip": kill.n - 1, "phase": kill.phase, "seconds": 10}
        request = urllib.request.Request(spec["sandbox_url"] + "/_sandbox/faults", data=json.dumps(rule).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
    engine = open_engine(tuple(spec["db"]))  # type: ignore[arg-type]
    report = apply_actions(engine, actor=f"crash-test:{os.getpid()}", on_step=on_step)
    Path(spec["result"]).write_text(json.dumps({"report": asdict(report), "claims": claims[0], "fs_ops": fs_ops[0]}))
    return 0


def _count_fs_steps(kill: Kill | None) -> list[int]:
    """Count (and, for an ``fs`` kill, die around) the files writer's filesystem steps:
    creating the temporary file, syncing it, renaming it into place."""
    import tempfile

    count = [0]

    def boundary(fn: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            count[0] += 1
            here = kill is not None and kill.n == count[0]
            if here and kill.phase == "before":
                _die()
            result = fn(*args, **kwargs)
            if here and kill.phase == "after":
                _die()
            return result

        return step

    tempfile.mkstemp = boundary(tempfile.mkstemp)  # type: ignore[assignment]
    os.fsync = boundary(os.fsync)
    os.replace = boundary(os.replace)
    return count


# -- worlds -------------------------------------------------------------------------------------------


def key_for(connector: str, variant: str, n: int) -> str:
    return "sl_" + hashlib.sha256(f"{connector}:{variant}:{n}".encode()).hexdigest()[:32]


def committed(exchange: Exchange) -> Response | None:
    """The response of a request whose handler ran and succeeded (not replayed), else None."""
    if exchange.fault is not None and exchange.fault.phase == "before":
        return None
    response = exchange.tags.get("committed_response") if exchange.fault is not None else exchange.response
    if response is None or response.status >= 400 or exchange.replayed:
        return None
    return response


@dataclass
class World:
    """One crash point's universe: a sandbox on its own port, the store, a folder."""

    harness: Harness
    variant: str
    engine: Engine
    db: tuple[str, str | None]
    root: Path
    sandbox: Sandbox | None = None
    server: SandboxServer | None = None

    @property
    def url(self) -> str:
        return self.server.url if self.server else ""

    def actions(self) -> dict[str, Action]:
        with Session(self.engine) as session:
            return {a.id: a for a in session.exec(select(Action)).all()}

    def requests(self) -> int:
        return len(self.sandbox.exchanges) if self.sandbox is not None else 0

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class Harness:
    """One writing connector: its sandbox, connection, actions per variant, and what "exactly
    once" means for its objects. Subclasses fill in the blanks."""

    name = ""
    plugin = ""
    variants: tuple[str, ...] = ()
    sample: tuple[str, ...] = ()
    """The variants of the default (bounded) run."""
    files = False

    def make_sandbox(self, variant: str) -> Sandbox | None:
        return None

    def config(self, variant: str, world: World) -> Any:
        raise NotImplementedError

    def actions(self, variant: str) -> list[Action]:
        raise NotImplementedError

    def prepare(self, variant: str, world: World) -> None:
        """Set the world up before the first applier (objects that already exist, idempotency off)."""

    def check(self, variant: str, world: World, actions: dict[str, Action]) -> list[str]:
        """Duplicates and lost writes, as readable problems (empty: exactly once)."""
        raise NotImplementedError

    def notes(self, world: World) -> dict[str, int]:
        """Counts worth reporting that are not problems."""
        return {}

    # helpers

    def action(self, variant: str, n: int, kind: str, payload: dict[str, Any], **extra: Any) -> Action:
        key = key_for(self.name, variant, n)
        return Action(id=f"act_{n}", idempotency_key=key, kind=kind, connection=self.name, summary=f"{kind} {n}",
                      status="approved", approved_by="crash-test", payload=payload,
                      created_at=datetime(2026, 1, 15, 0, 0, n, tzinfo=UTC), **extra)


def _reset_store(engine: Engine, harness: Harness, variant: str, config: Any) -> None:
    with Session(engine) as session, session.begin():
        session.exec(text("DELETE FROM audit_entry"))  # type: ignore[call-overload]
        session.exec(text("DELETE FROM action"))  # type: ignore[call-overload]
        session.exec(text("DELETE FROM connection"))  # type: ignore[call-overload]
    with Session(engine) as session, session.begin():
        session.add(Connection(name=harness.name, plugin=harness.plugin, config=config_for_storage(config)))
        for action in harness.actions(variant):
            session.add(action)


@dataclass
class Scenario:
    """A harness and variant on one store, giving fresh worlds."""

    harness: Harness
    variant: str
    engine: Engine
    db: tuple[str, str | None]
    base: Path
    _count: int = 0

    @contextmanager
    def world(self) -> Iterator[World]:
        self._count += 1
        root = self.base / f"w{self._count}"
        root.mkdir(parents=True)
        world = World(self.harness, self.variant, self.engine, self.db, root)
        sandbox = self.harness.make_sandbox(self.variant)
        if sandbox is not None:
            world.sandbox = sandbox
            world.server = SandboxServer(sandbox).start()
        try:
            self.harness.prepare(self.variant, world)
            _reset_store(self.engine, self.harness, self.variant, self.harness.config(self.variant, world))
            yield world
        finally:
            world.close()
            shutil.rmtree(root, ignore_errors=True)


# -- running chains -----------------------------------------------------------------------------------


@dataclass
class ChainResult:
    kills: tuple[Kill, ...]
    fired: list[bool]
    recoveries: int
    problems: list[str]
    probe: Probe
    """The first clean recovery run (its boundaries are the next order's points)."""
    notes: dict[str, int] = field(default_factory=dict)


class Runner:
    """Runs appliers (children of the zygote) in worlds, and chains of kills."""

    def __init__(self, zygote: Zygote | None) -> None:
        self.zygote = zygote
        self.runs = 0
        self.kills = 0

    def _spec(self, world: World, kill: Kill | None, tag: str) -> dict[str, Any]:
        return {
            "db": list(world.db), "env": {"SUBLEDGER_HOME": str(world.root / "home"),
                                          "SUBLEDGER_SECRET_KEY": os.environ.get("SUBLEDGER_SECRET_KEY", SECRET_KEY)},
            "kill": asdict(kill) if kill else None, "sandbox_url": world.url, "files": world.harness.files,
            "result": str(world.root / f"result-{tag}.json"), "log": str(world.root / "appliers.log"),
        }

    def apply(self, world: World, kill: Kill | None, tag: str) -> tuple[int, Probe, dict[str, Any] | None]:
        """One applier run; (exit code, what it did, its report)."""
        assert self.zygote is not None
        spec = self._spec(world, kill, tag)
        before = world.requests()
        pid, code = self.zygote.run(spec)
        self.runs += 1
        if code == -signal.SIGKILL and kill is not None and kill.where == "http" and world.sandbox is not None:
            # The sandbox logs the exchange after the kill: wait for it, or the next run would count it.
            deadline = time.monotonic() + 10
            while not any(e.tags.get("killed") == pid for e in list(world.sandbox.exchanges)[before:]):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the sandbox never logged the request it killed applier {pid} at")
                time.sleep(0.001)
        if world.sandbox is not None:
            world.sandbox.faults.clear()  # a kill rule that did not fire must not outlive its applier
        result = json.loads(Path(spec["result"]).read_text()) if code == 0 else None
        probe = Probe(requests=[f"{e.request.method} {e.request.path}" for e in list(world.sandbox.exchanges)[before:]]
                      if world.sandbox is not None else [],
                      fs_ops=result["fs_ops"] if result else 0, claims=result["claims"] if result else 0)
        if code == -signal.SIGKILL:
            self.kills += 1
        elif code != 0:
            raise AssertionError(f"applier exited with {code}:\n{_tail(Path(spec['log']))}")
        return code, probe, result

    def chain(self, scenario: Scenario, kills: tuple[Kill, ...]) -> ChainResult:
        """Kill an applier at each of ``kills`` in turn, then recover with clean appliers and check."""
        with scenario.world() as world:
            fired = []
            for n, kill in enumerate(kills):
                code, _, _ = self.apply(world, kill, f"k{n}")
                fired.append(code == -signal.SIGKILL)
            probe, recoveries, problems = self.recover(world)
            problems = [f"{world.harness.name}/{world.variant} {' then '.join(map(str, kills)) or 'no kill'}: {p}"
                        for p in problems]
            if not all(fired):
                problems.append(f"{world.harness.name}/{world.variant} {' then '.join(map(str, kills))}: "
                                f"the kill did not fire ({fired}); the boundary was not reached")
            return ChainResult(kills, fired, recoveries, problems, probe, world.harness.notes(world))

    def recover(self, world: World) -> tuple[Probe, int, list[str]]:
        first: Probe | None = None
        runs = 0
        while runs < MAX_RECOVERIES:
            _, probe, _ = self.apply(world, None, f"r{runs}")
            runs += 1
            first = first or probe
            if all(a.status in FINAL for a in world.actions().values()):
                break
        actions = world.actions()
        problems = [f"action {a.id} ({a.kind}) is still {a.status} after {runs} clean re-runs (lost): "
                    f"attempts={a.attempts} error={a.error!r}" for a in actions.values() if a.status not in FINAL]
        problems += world.harness.check(world.variant, world, actions)
        assert first is not None
        return first, runs, problems


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- a whole scenario ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts of one test, per connector."""

    connector: str
    points: Counter[str] = field(default_factory=Counter)
    """Distinct crash points run, by order (``first``, ``second``, ``cli``)."""
    kills: int = 0
    runs: int = 0
    problems: list[str] = field(default_factory=list)
    multi_recoveries: int = 0
    seconds: float = 0.0

    notes: Counter[str] = field(default_factory=Counter)
    """What a harness noticed that is not a problem (the files writer's leftover temporary files)."""

    def add(self, result: ChainResult, order: str | None) -> None:
        if order is not None:
            self.points[order] += 1
        self.problems += result.problems
        self.multi_recoveries += result.recoveries > 1
        self.notes.update(result.notes)

    @property
    def total(self) -> int:
        return sum(self.points.values())

    def line(self) -> dict[str, Any]:
        return {"connector": self.connector, "points": dict(self.points), "total": self.total, "kills": self.kills,
                "applier_runs": self.runs, "problems": len(self.problems),
                "needed_more_than_one_recovery": self.multi_recoveries, "notes": dict(self.notes),
                "seconds": round(self.seconds, 1), "first_problems": self.problems[:200]}


def run_scenario(runner: Runner, scenario: Scenario, tally: Tally, *, first: int | None = None,
                 second: int | None = 0) -> None:
    """First-order points of the scenario (all, or a seeded sample of ``first``), then
    second-order points (all with ``second=None``, or a seeded sample of ``second``)."""
    runs, kills, started = runner.runs, runner.kills, time.monotonic()
    rng = random.Random(f"{SEED}:{scenario.harness.name}:{scenario.variant}:{scenario.db[1] is not None}")
    clean = runner.chain(scenario, ())
    tally.add(clean, None)
    firsts = clean.probe.points()
    if first is not None and len(firsts) > first:
        firsts = sorted(rng.sample(firsts, first), key=firsts.index)
    pairs: list[tuple[Kill, Kill]] = []
    for kill in firsts:
        result = runner.chain(scenario, (kill,))
        tally.add(result, "first")
        pairs += [(kill, then) for then in result.probe.points()]
    if second is not None and len(pairs) > second:
        pairs = sorted(rng.sample(pairs, second), key=pairs.index)
    for kill, then in pairs:
        tally.add(runner.chain(scenario, (kill, then)), "second")
    tally.runs += runner.runs - runs
    tally.kills += runner.kills - kills
    tally.seconds += time.monotonic() - started


def record(tally: Tally) -> None:
    if REPORT:
        with open(REPORT, "a", encoding="utf-8") as out:
            out.write(json.dumps(tally.line()) + "\n")


# -- the installed CLI as the applier ------------------------------------------------------------------


def cli_chain(scenario: Scenario, kill: Kill, tally: Tally) -> None:
    """Kill ``subledger apply`` (the console script) at an HTTP boundary, re-run it, check.

    The shell waits for a line before ``exec``-ing the CLI, so the kill rule naming its pid
    is in place before its first request.
    """
    script = Path(sys.executable).with_name("subledger")
    assert script.exists(), f"the console script {script} is not installed: pip install -e . into this environment"
    started = time.monotonic()
    with scenario.world() as world:
        assert world.sandbox is not None
        env = {**os.environ, "SUBLEDGER_DATABASE_URL": scenario.db[0], "SUBLEDGER_HOME": str(world.root / "home")}
        codes = []
        for attempt in range(1 + MAX_RECOVERIES):
            proc = subprocess.Popen(["sh", "-c", 'read go && exec "$0" apply --json', str(script)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=env, text=True)
            if attempt == 0:
                world.sandbox.faults.inject("kill", pid=proc.pid, skip=kill.n - 1, phase=kill.phase, seconds=10)
            out, _ = proc.communicate("go\n", timeout=120)
            world.sandbox.faults.clear()
            codes.append(proc.returncode)
            if proc.returncode not in (0, -signal.SIGKILL):
                tally.problems.append(f"cli {kill}: `subledger apply` exited {proc.returncode}: {out[-2000:]}")
                break
            if attempt > 0 and all(a.status in FINAL for a in world.actions().values()):
                break
        tally.runs += len(codes)
        tally.kills += codes.count(-signal.SIGKILL)
        tally.points["cli"] += 1
        if codes[0] != -signal.SIGKILL:
            tally.problems.append(f"cli {kill}: the kill did not fire (exit codes {codes})")
        actions = world.actions()
        tally.problems += [f"cli {kill}: action {a.id} is still {a.status} (lost)" for a in actions.values()
                           if a.status not in FINAL]
        tally.problems += [f"cli {kill}: {p}" for p in world.harness.check(world.variant, world, actions)]
    tally.seconds += time.monotonic() - started


def migrated_sqlite(path: Path) -> tuple[Engine, tuple[str, None]]:
    """A SQLite store initialised like ``subledger init`` (the CLI refuses any other)."""
    from subledger.core.store.migrate import upgrade

    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    return engine, (url, None)


def plain_store(url: str, schema: str | None) -> Engine:
    engine = open_engine((url, schema))
    SQLModel.metadata.create_all(engine)
    return engine
