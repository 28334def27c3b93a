"""The shipped example company: sync finds exactly the planted leaks, and fixing them sticks.

``examples/generate.py`` plants four billing mistakes and one unapplied payment (``LEAKS``
and ``UNAPPLIED_PAYMENT``); everything else in the folder is billed exactly as the
contracts say. A sync of the folder must report those and nothing else, with the amounts
written out here; approving and applying the proposed invoices writes them into the
folder, and the next sync resolves the unbilled findings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from subledger.core.model import Connection, Finding
from subledger.core.secrets import config_for_storage, load_config
from subledger.plugins.files.connector import FilesConfig
from subledger.sync.apply import apply_actions
from subledger.sync.engine import sync
from subledger.sync.leakage import leakage
from subledger.sync.plan import approve
from subledger.sync.settings import SyncSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLANTED = [
    # (rule, customer, period, amount in minor units, currency)
    ("over_billing", "globex", "2026-02", -2190, "EUR"),  # 10% over on February API calls
    ("unapplied_payment", "umbrella", None, 26764, "USD"),  # February's payment applied to nothing
    ("unbilled_usage", "acme", "2026-03", 8738, "USD"),  # March API overage never billed
    ("unbilled_usage", "hooli", "2026-02", 15204, "USD"),  # February minimum true-up missing
    ("unbilled_usage", "initech", "2026-01", 2500, "USD"),  # 4 storage blocks billed instead of 5
]


def open_findings(engine: Engine) -> list[tuple]:
    with Session(engine) as s:
        rows = s.exec(select(Finding).where(Finding.status == "open")).all()
        return sorted(
            (f.rule, f.customer, f"{f.period_start:%Y-%m}" if f.period_start else None, f.amount_minor, f.currency)
            for f in rows
        )


def test_sync_reports_exactly_the_planted_leaks_and_apply_closes_the_unbilled_ones(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns("bad"))
    config = load_config(FilesConfig, {"path": str(folder)})
    with Session(engine) as s, s.begin():
        s.add(Connection(name="examples", plugin="files", config=config_for_storage(config)))

    first = sync(engine, trigger="test", settings=SyncSettings())
    assert first.run.status == "succeeded"
    assert open_findings(engine) == PLANTED

    with Session(engine) as s:
        report = leakage(s)
    assert report.totals == {
        "USD": {"unbilled_minor": 8738 + 15204 + 2500, "over_billed_minor": 0},
        "EUR": {"unbilled_minor": 0, "over_billed_minor": 2190},
    }
    assert [(c, v) for c, _, v in report.offenders] == [("hooli", 15204), ("acme", 8738), ("initech", 2500)]

    from subledger.core.model import Action

    with Session(engine) as s, s.begin():
        ids = [a.id for a in s.exec(select(Action).where(Action.status == "planned")).all()]
        assert len(ids) == 3  # one invoice per unbilled finding, none for the others
        approve(s, ids, actor="user:test", reason="reviewed", now=first.run.started_at)
    assert len(apply_actions(engine, actor="user:test").done) == 3
    assert len(list((folder / "invoices" / "subledger").glob("*.json"))) == 3

    second = sync(engine, trigger="test", settings=SyncSettings())
    assert second.run.findings_resolved == 3
    assert open_findings(engine) == [p for p in PLANTED if p[0] != "unbilled_usage"]
    third = sync(engine, trigger="test", settings=SyncSettings())
    assert (third.run.findings_opened, third.run.actions_planned, third.run.records_read) == (0, 0, 0)
