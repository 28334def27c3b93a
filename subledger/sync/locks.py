"""Database leases that keep two syncs of one connection from overlapping, across processes.

A lease is a row in ``lock``. Taking it is one short transaction: insert, or take over a
lease that expired or whose holder is a dead process on this host. The primary key (and a
compare-and-set on the observed owner and generation) makes two simultaneous takers
collide, so exactly one wins on SQLite and on PostgreSQL alike.

Leases heal:

* **Short and renewed.** A lease lasts :data:`LEASE_TTL` (2 minutes) and its holder renews
  it every :data:`RENEW_EVERY` (30 seconds) from a background thread
  (:class:`LeaseKeeper`), so a live holder keeps it however long it works, and a dead one
  loses it within two minutes.
* **Dead holders are noticed at once.** An owner id is ``host:pid:random``; a lease whose
  holder is a process of this host that no longer runs is taken over immediately.
* **Fenced.** ``generation`` goes up by one at every takeover. A holder renews only while
  the row still carries its owner and generation, so a holder that stalled past its lease
  and was taken over finds out at its next renewal, or at :meth:`LeaseKeeper.check`,
  which the sync engine calls before each stage that writes, and stops (:class:`LeaseLost`).

A sync records its lease owner on its run; :func:`close_abandoned_runs` marks failed a
run left ``running`` by a process that stopped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, delete, select, update

from subledger.core.db_types import utcnow
from subledger.core.errors import TransientError
from subledger.core.model.run import SyncRun
from subledger.core.model.schedule import Lock

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(minutes=2)
"""How long a lease lasts unless renewed: how long a dead holder on another host blocks."""
RENEW_EVERY = timedelta(seconds=30)
"""How often a holder renews its leases (never less often than a quarter of their TTL)."""
ABANDONED = "abandoned: the process running it stopped"


class LockHeld(TransientError):
    """Someone else holds the lease."""


class LeaseLost(TransientError):
    """This process's lease was taken over: it must stop before writing anything more."""


def process_owner() -> str:
    """An owner id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def owner_process(owner: str) -> tuple[str, int] | None:
    """The (host, pid) of a ``host:pid:random`` owner id, or None for another form."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return True  # cannot tell: assume alive, and wait for the lease to expire
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def holder_is_dead(owner: str | None) -> bool:
    """True when ``owner`` is a process of this host that no longer runs.

    Owners on other hosts, or not in the ``host:pid:random`` form, are never declared
    dead: their leases and claims are taken over only once they expire.
    """
    where = owner_process(owner) if owner else None
    if where is None:
        return False
    host, pid = where
    return host == socket.gethostname() and pid != os.getpid() and not pid_alive(pid)


@dataclass(frozen=True)
class Lease:
    """A lease as its holder took it: the fencing token is (owner, generation)."""

    name: str
    owner: str
    generation: int
    ttl: timedelta


def acquire(engine: Engine, name: str, owner: str, *, ttl: timedelta = LEASE_TTL, now: datetime | None = None) -> Lease:
    """Take the lease ``name`` for ``owner`` (or renew it, if ``owner`` holds it already).

    An expired lease, or one whose holder is a dead process of this host, is taken over:
    its generation goes up by one, so the old holder can no longer renew it.

    Raises:
        LockHeld: someone alive holds it.
    """
    now = now or utcnow()
    try:
        with Session(engine) as session, session.begin():
            row = session.get(Lock, name)
            if row is None:
                session.add(Lock(name=name, owner=owner, acquired_at=now, expires_at=now + ttl, generation=1))
                return Lease(name, owner, 1, ttl)
            if row.owner == owner:
                session.exec(
                    update(Lock)
                    .where(Lock.name == name, Lock.owner == owner, Lock.generation == row.generation)
                    .values(expires_at=now + ttl)
                    .execution_options(synchronize_session=False)
                )
                return Lease(name, owner, row.generation, ttl)
            holder, generation, expires = row.owner, row.generation, row.expires_at
            dead = holder_is_dead(holder)
            if expires > now and not dead:
                raise LockHeld(
                    f"{name} is held by {holder} until {expires.isoformat()}",
                    fix="wait for the running sync to finish; if its process died, the lease is taken over "
                    f"once it expires (a live holder renews it every {int(RENEW_EVERY.total_seconds())}s)",
                )
            taken = session.exec(
                update(Lock)
                .where(Lock.name == name, Lock.owner == holder, Lock.generation == generation)
                .values(owner=owner, acquired_at=now, expires_at=now + ttl, generation=generation + 1)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:
                raise LockHeld(f"{name} was just taken by another process", fix="try again later")
            log.warning(
                "took over lease %s from %s (%s), generation %d",
                name,
                holder,
                "its process is gone" if dead else f"expired {expires.isoformat()}",
                generation + 1,
            )
            return Lease(name, owner, generation + 1, ttl)
    except (IntegrityError, OperationalError) as exc:
        raise LockHeld(f"{name} is being taken by another process", fix="try again later") from exc


def renew(engine: Engine, lease: Lease, *, now: datetime | None = None) -> bool:
    """Extend ``lease`` by its TTL; False when it is no longer held (taken over, or released)."""
    now = now or utcnow()
    with Session(engine) as session, session.begin():
        result = session.exec(
            update(Lock)
            .where(Lock.name == lease.name, Lock.owner == lease.owner, Lock.generation == lease.generation)
            .values(expires_at=now + lease.ttl)
        )
        return result.rowcount == 1


def release(engine: Engine, name: str, owner: str) -> None:
    """Give the lease back (only if ``owner`` still holds it)."""
    with Session(engine) as session, session.begin():
        session.exec(delete(Lock).where(Lock.name == name, Lock.owner == owner))


def renew_interval(ttl: timedelta) -> float:
    """Seconds between renewals of a lease of ``ttl``: every 30 s, or a quarter of a shorter TTL."""
    return min(RENEW_EVERY, ttl / 4).total_seconds()


class Heartbeat:
    """Calls ``beat()`` every ``every`` seconds in a daemon thread until stopped.

    ``beat`` returns False when what it keeps alive is gone; the heartbeat then records
    it (:attr:`lost`) and stops. An exception (the store unreachable) is logged and the
    next beat tries again.
    """

    def __init__(self, beat: Callable[[], bool], every: float, *, name: str = "heartbeat") -> None:
        self.beat = beat
        self.every = every
        self.name = name
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.beat():
                    self.lost.set()
                    return
            except Exception as exc:  # keep trying: the work itself is unaffected
                log.warning("%s: could not renew: %s", self.name, exc)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LeaseKeeper:
    """Renews a set of leases in the background while their holder works, and fences it.

    :meth:`check` raises :class:`LeaseLost` once any lease was found taken over; when the
    background renewals are late (the process stalled, or the store was unreachable) it
    renews synchronously first, so a holder never writes on a lease it has lost.
    """

    def __init__(
        self,
        engine: Engine,
        leases: list[Lease],
        *,
        every: float | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.leases = list(leases)
        self.clock = clock
        ttl = min((lease.ttl for lease in self.leases), default=LEASE_TTL)
        self.every = every if every is not None else renew_interval(ttl)
        self.lost: Lease | None = None
        self._last_ok = time.monotonic()
        self._guard = threading.Lock()
        names = ", ".join(lease.name for lease in self.leases)
        self._heartbeat = Heartbeat(self.renew_all, self.every, name=f"renew {names}")

    @property
    def owner(self) -> str | None:
        return self.leases[0].owner if self.leases else None

    def renew_all(self) -> bool:
        """Renew every lease now; False (and :attr:`lost` set) if one was taken over."""
        with self._guard:
            if self.lost is not None:
                return False
            now = self.clock()
            for lease in self.leases:
                if not renew(self.engine, lease, now=now):
                    self.lost = lease
                    log.error("lease %s (generation %d) was taken over: stopping", lease.name, lease.generation)
                    return False
            self._last_ok = time.monotonic()
            return True

    def verify(self) -> bool:
        """Read every lease back: False (and :attr:`lost` set) if one is no longer this holder's."""
        if self.lost is not None:
            return False
        with Session(self.engine) as session:
            rows = {
                row.name: (row.owner, row.generation)
                for row in session.exec(select(Lock).where(Lock.name.in_([x.name for x in self.leases]))).all()  # type: ignore[attr-defined]
            }
        for lease in self.leases:
            if rows.get(lease.name) != (lease.owner, lease.generation):
                self.lost = lease
                log.error("lease %s (generation %d) was taken over: stopping", lease.name, lease.generation)
                return False
        return True

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless every lease is still held; call it before writing.

        One read of the lease rows (their owner and generation); when the background
        renewals are late, a renewal first.
        """
        if self.lost is None and time.monotonic() - self._last_ok >= 2 * self.every:
            self.renew_all()  # the heartbeat is late: make sure before going on
        if self.lost is None:
            self.verify()
        if self.lost is not None:
            raise LeaseLost(
                f"lease {self.lost.name} of {self.lost.owner} was taken over by another process after this one "
                "failed to renew it in time; this sync stopped before writing anything more",
                fix="nothing to undo: the process that took the lease over carries on (if this repeats, look for "
                "what stalls this process or its database connection)",
            )

    def start(self) -> LeaseKeeper:
        self._last_ok = time.monotonic()
        self._heartbeat.start()
        return self

    def stop(self) -> None:
        self._heartbeat.stop()

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def hold(
    engine: Engine,
    names: list[str],
    owner: str | None = None,
    *,
    ttl: timedelta = LEASE_TTL,
    every: float | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> Iterator[LeaseKeeper]:
    """Take every lease in ``names`` (all or none), renew them while the block runs, give them back.

    Yields the :class:`LeaseKeeper`; call its ``check()`` before each write.

    Raises:
        LockHeld: one of them is held by someone else (none is kept).
    """
    owner = owner or process_owner()
    taken: list[Lease] = []
    try:
        for name in names:
            taken.append(acquire(engine, name, owner, ttl=ttl, now=clock()))
        keeper = LeaseKeeper(engine, taken, every=every, clock=clock)
        with keeper:
            yield keeper
    finally:
        for lease in reversed(taken):
            try:
                release(engine, lease.name, owner)
            except Exception as exc:  # it expires by itself
                log.warning("could not give back lease %s: %s", lease.name, exc)


@contextmanager
def held(
    engine: Engine, name: str, owner: str | None = None, *, ttl: timedelta = LEASE_TTL
) -> Iterator[str]:
    """Hold the lease ``name`` for the duration of the block, renewing it; yields the owner id."""
    owner = owner or process_owner()
    with hold(engine, [name], owner, ttl=ttl):
        yield owner


# -- runs whose process stopped ------------------------------------------------------------------


def close_abandoned_runs(
    engine: Engine,
    *,
    reconcile_lease: str = "sync:reconcile",
    holding: str | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Mark failed every sync run left ``running`` by a process that stopped; return their ids.

    Every sync holds the reconciliation lease for as long as it runs, so a run is alive
    only while a lease of its owner is unexpired and not held by a dead process (a run
    with no recorded owner: while the reconciliation lease it ran under, taken before it
    started, is). ``holding`` is the owner id of a caller that holds the reconciliation
    lease itself: then every other running run is abandoned. The expired leases of an
    abandoned run are removed, so its process, should it only have stalled, cannot renew
    them and stops.
    """
    now = now or utcnow()
    closed: list[str] = []
    with Session(engine) as session, session.begin():
        running = session.exec(select(SyncRun).where(SyncRun.status == "running")).all()
        if not running:
            return []
        locks = list(session.exec(select(Lock)).all())
        for run in running:
            if holding is not None and run.owner == holding:
                continue
            why = _why_abandoned(run, locks, reconcile_lease, holding, now)
            if why is None:
                continue
            run.status = "failed"
            run.finished_at = now
            run.errors = [
                *run.errors,
                {
                    "stage": "sync",
                    "kind": "system",
                    "error": f"{ABANDONED} ({why})",
                    "fix": "sync again: syncs are crash-safe, so the next one redoes what this one left",
                },
            ]
            session.add(run)
            if run.owner:
                session.exec(delete(Lock).where(Lock.owner == run.owner, Lock.expires_at <= now))
            closed.append(run.id)
    for rid in closed:
        log.warning("sync run %s was %s", rid, ABANDONED)
    return closed


def _why_abandoned(
    run: SyncRun, locks: list[Lock], reconcile_lease: str, holding: str | None, now: datetime
) -> str | None:
    """Why ``run`` is no longer running, or None if it may be."""
    if holding is not None:
        return f"{reconcile_lease} is now held by another sync"
    if run.owner:
        mine = [lock for lock in locks if lock.owner == run.owner]
        if not mine:
            return "its leases are gone"
        if holder_is_dead(run.owner):
            return f"process {run.owner} is gone"
        if all(lock.expires_at <= now for lock in mine):
            return f"its leases expired at {max(lock.expires_at for lock in mine).isoformat()} without renewal"
        return None
    guard = next((lock for lock in locks if lock.name == reconcile_lease), None)
    if guard is None or guard.acquired_at > run.started_at:
        return f"{reconcile_lease} is no longer held by it"
    if guard.expires_at <= now or holder_is_dead(guard.owner):
        return f"{reconcile_lease} of {guard.owner} expired or its process is gone"
    return None
