"""Syncs started from the API: leases taken and the run recorded before answering, the work in the background.

Taking the leases in the request means a busy connection is a 409 at once, and the run id
returned with the 202 is the run being executed. The stages are the engine's own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError, classify
from subledger.core.model.run import SyncRun
from subledger.core.model.sync_state import Connection
from subledger.sync.engine import RECONCILE_LOCK, SyncReport, run_stages
from subledger.sync.locks import LEASE_TTL, Lease, LeaseKeeper, acquire, process_owner, release
from subledger.sync.settings import SyncSettings

log = logging.getLogger(__name__)


def start_sync(
    engine: Engine,
    names: list[str] | None,
    *,
    trigger: str,
    settings: SyncSettings,
    submit: Callable[..., object],
    after: Callable[[SyncRun], None] | None = None,
) -> SyncRun:
    """Take the leases, record a running SyncRun, and run the stages through ``submit``.

    Raises:
        ConfigError: an unknown or disabled connection.
        LockHeld: a connection (or reconciliation) is being synced by someone else.
    """
    with Session(engine) as session:
        known = {c.name for c in session.exec(select(Connection).where(Connection.enabled)).all()}
    names = sorted(names) if names else sorted(known)
    for name in names:
        if name not in known:
            raise ConfigError(f"no enabled connection named {name!r}", fix="see GET /v1/connections")
    owner = process_owner()
    leases = [f"sync:{n}" for n in names] + [RECONCILE_LOCK]
    taken: list[Lease] = []
    try:
        for lease in leases:
            taken.append(acquire(engine, lease, owner, ttl=LEASE_TTL))
    except Exception:
        for held in taken:
            release(engine, held.name, owner)
        raise
    # Renewed while the run works and checked before each write, as a CLI sync's leases are.
    keeper = LeaseKeeper(engine, taken)
    run = SyncRun(id="run_" + uuid.uuid4().hex[:20], trigger=trigger, connections=names, owner=owner)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.add(run)

    def work() -> None:
        report = SyncReport(run=run)
        try:
            with keeper:
                run_stages(engine, names, run, report, settings=settings, apply=True, rules=None, trigger=trigger,
                           fence=keeper.check)
            run.status = "failed" if run.errors else "succeeded"
        except Exception as exc:
            from subledger.core.secrets import redact

            run.status = "failed"
            run.errors.append({"stage": "sync", "kind": str(classify(exc)), "error": redact(str(exc))[:2000]})
            log.warning("sync %s failed: %s", run.id, redact(str(exc)))
        finally:
            run.finished_at = utcnow()
            with Session(engine) as session, session.begin():
                session.merge(run)
            for held in taken:
                release(engine, held.name, owner)
        if after is not None:
            after(run)

    submit(work)
    return run
