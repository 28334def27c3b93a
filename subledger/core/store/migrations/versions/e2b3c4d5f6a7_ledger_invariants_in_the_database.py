"""ledger invariants in the database

Revision ID: e2b3c4d5f6a7
Revises: d1a2b3c4e5f6
Create Date: 2026-12-03

The database, not only the ORM, keeps the ledger's invariants (docs/architecture.md,
"Invariants", names each one and its triggers):

* ``ledger_append_only``: usage events, credit-ledger entries, journal entries and lines
  are never updated, deleted (nor truncated, nor replaced);
* ``journal_entry_balances``: each journal entry has lines, in its currency, whose debits
  equal their credits (PostgreSQL: a deferred constraint trigger, checked at commit;
  SQLite: checked when the entry row is inserted, after its lines);
* ``journal_entry_sealed``: an entry's lines are written before the entry row, in the
  same transaction; no line joins an entry that exists;
* ``closed_period_frozen``: no journal entry is posted or dated in a closed period, and an
  entry's period is the month of its date;
* ``closed_period_final``: a closed period (an ``accounting_period`` row) is never updated
  or deleted, so it cannot be reopened; a row is a close (status ``closed``, ``YYYY-MM``).

``usage_rollup`` is not append-only: ingest updates it by design (it is derived from the
events and can be rebuilt from them). ``revenue_schedule_line`` is rewritten by every
recognition run (reports of closed periods read the journal, not the schedule).

The journal line's foreign key to its entry becomes DEFERRABLE INITIALLY DEFERRED, so
the posting can insert the lines first and the entry last (``revrec/ledger.py``).

The SQL is frozen here, as a migration's must be; ``statements(dialect)`` is also what
``subledger.core.store.migrate.install_ledger_invariants`` runs on a store built without
migrations (``create_all``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = 'e2b3c4d5f6a7'
down_revision: str | None = 'd1a2b3c4e5f6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> what to do instead of changing a row
APPEND_ONLY = {
    "usage_event": "send a correcting event",
    "credit_ledger_entry": "post a reversal",
    "journal_entry": "post a reversing entry",
    "journal_line": "post a reversing entry",
}

# ---------------------------------------------------------------------------- SQLite
# SQLite has no deferred triggers: an entry is sealed when its row is inserted, after
# its lines (the foreign key from line to entry is deferred to the commit). RAISE takes
# a literal message only, so SQLite messages name the invariant and the rule.


def _sqlite_statements() -> list[str]:
    out: list[str] = []
    for table, instead in APPEND_ONLY.items():
        for event in ("UPDATE", "DELETE"):
            out.append(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'ledger_append_only: {table} rows are never updated or deleted; "
                f"{instead}'); END"
            )
    # INSERT OR REPLACE deletes the row it replaces without firing delete triggers
    # (unless recursive_triggers is on, which subledger's engine turns on): refuse it.
    out.append(
        "CREATE TRIGGER journal_entry_no_replace BEFORE INSERT ON journal_entry "
        "WHEN EXISTS (SELECT 1 FROM journal_entry WHERE id = NEW.id OR external_id = NEW.external_id) BEGIN "
        "SELECT RAISE(ABORT, 'ledger_append_only: this journal entry is already posted; "
        "post a reversing entry'); END"
    )
    out.append(
        "CREATE TRIGGER journal_line_no_replace BEFORE INSERT ON journal_line "
        "WHEN EXISTS (SELECT 1 FROM journal_line WHERE id = NEW.id) BEGIN "
        "SELECT RAISE(ABORT, 'ledger_append_only: this journal line is already posted; "
        "post a reversing entry'); END"
    )
    out.append(
        "CREATE TRIGGER credit_ledger_entry_no_replace BEFORE INSERT ON credit_ledger_entry "
        "WHEN EXISTS (SELECT 1 FROM credit_ledger_entry WHERE id = NEW.id OR entry_key = NEW.entry_key) BEGIN "
        "SELECT RAISE(ABORT, 'ledger_append_only: this credit ledger entry is already recorded; "
        "post a reversal'); END"
    )
    out.append(
        "CREATE TRIGGER journal_line_sealed BEFORE INSERT ON journal_line "
        "WHEN EXISTS (SELECT 1 FROM journal_entry WHERE id = NEW.entry_id) BEGIN "
        "SELECT RAISE(ABORT, 'journal_entry_sealed: lines cannot be added to a posted journal entry "
        "(an entry is posted lines first, then the entry row, in one transaction); post a reversing entry'); END"
    )
    out.append(
        "CREATE TRIGGER journal_entry_balances BEFORE INSERT ON journal_entry "
        "WHEN NOT EXISTS (SELECT 1 FROM journal_line WHERE entry_id = NEW.id) "
        "OR (SELECT SUM(debit_minor) - SUM(credit_minor) FROM journal_line WHERE entry_id = NEW.id) <> 0 "
        "OR EXISTS (SELECT 1 FROM journal_line WHERE entry_id = NEW.id AND currency <> NEW.currency) BEGIN "
        "SELECT RAISE(ABORT, 'journal_entry_balances: a journal entry needs lines, inserted before it in the "
        "same transaction, in its currency, whose debits equal their credits'); END"
    )
    out.append(
        "CREATE TRIGGER journal_entry_closed_period BEFORE INSERT ON journal_entry "
        "WHEN NEW.period IS NOT substr(NEW.entry_date, 1, 7) "
        "OR EXISTS (SELECT 1 FROM accounting_period WHERE period >= NEW.period) BEGIN "
        "SELECT RAISE(ABORT, 'closed_period_frozen: no journal entry is posted into a closed period, "
        "and an entry is posted in the month of its date; post it in the first open period'); END"
    )
    for event in ("UPDATE", "DELETE"):
        out.append(
            f"CREATE TRIGGER accounting_period_no_{event.lower()} BEFORE {event} ON accounting_period BEGIN "
            "SELECT RAISE(ABORT, 'closed_period_final: a closed period is never reopened, "
            "changed or deleted'); END"
        )
    out.append(
        "CREATE TRIGGER accounting_period_close BEFORE INSERT ON accounting_period "
        "WHEN NEW.status IS NOT 'closed' "
        "OR NEW.period NOT GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]' "
        "OR EXISTS (SELECT 1 FROM accounting_period WHERE period = NEW.period) BEGIN "
        "SELECT RAISE(ABORT, 'closed_period_final: a closed period is a new accounting_period row "
        "(period YYYY-MM, status closed); it is never replaced'); END"
    )
    return out


def _sqlite_drops() -> list[str]:
    names = [f"{t}_no_{e}" for t in APPEND_ONLY for e in ("update", "delete")]
    names += ["journal_entry_no_replace", "journal_line_no_replace", "credit_ledger_entry_no_replace",
              "journal_line_sealed", "journal_entry_balances", "journal_entry_closed_period",
              "accounting_period_no_update", "accounting_period_no_delete", "accounting_period_close"]
    return [f"DROP TRIGGER IF EXISTS {n}" for n in names]


# ------------------------------------------------------------------------ PostgreSQL
# Errors are SQLSTATE class 23 (integrity constraint violation), so drivers raise them
# as integrity errors. Closing a period and posting into it take the same advisory lock
# (closing: exclusive; posting: shared), so a posting never commits into a period closed
# while it was in flight.

_PG_LOCK = "hashtextextended(TG_TABLE_SCHEMA || '.accounting_period', 0)"

_PG_FUNCTIONS = [
    r"""
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: % of % refused: %', TG_ARGV[0], TG_OP, TG_TABLE_NAME, TG_ARGV[1]
        USING ERRCODE = '23001';
END
$$""",
    r"""
CREATE FUNCTION journal_line_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM journal_entry WHERE id = NEW.entry_id) THEN
        RAISE EXCEPTION 'journal_entry_sealed: journal entry % is posted; lines cannot be added to it (an entry is posted lines first, then the entry row, in one transaction); post a reversing entry',
            NEW.entry_id USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
END
$$""",
    r"""
CREATE FUNCTION journal_line_sealed_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry_xmin xid;
    line_xmin xid;
BEGIN
    SELECT xmin INTO entry_xmin FROM journal_entry WHERE id = NEW.entry_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'journal_entry_sealed: journal line % belongs to entry %, which is not posted with it',
            NEW.id, NEW.entry_id USING ERRCODE = '23503';
    END IF;
    SELECT xmin INTO line_xmin FROM journal_line WHERE id = NEW.id;
    IF line_xmin IS DISTINCT FROM entry_xmin THEN
        RAISE EXCEPTION 'journal_entry_sealed: journal entry % was posted by another transaction; lines cannot be added to it; post a reversing entry',
            NEW.entry_id USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END
$$""",
    r"""
CREATE FUNCTION journal_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    debits numeric;
    credits numeric;
    foreign_lines bigint;
BEGIN
    SELECT count(*), coalesce(sum(debit_minor), 0), coalesce(sum(credit_minor), 0),
           count(*) FILTER (WHERE currency IS DISTINCT FROM NEW.currency)
      INTO n, debits, credits, foreign_lines
      FROM journal_line WHERE entry_id = NEW.id;
    IF n = 0 THEN
        RAISE EXCEPTION 'journal_entry_balances: journal entry % (%) has no lines', NEW.id, NEW.external_id
            USING ERRCODE = '23514';
    END IF;
    IF debits <> credits THEN
        RAISE EXCEPTION 'journal_entry_balances: journal entry % (%) does not balance: debits % <> credits % (minor units of %)',
            NEW.id, NEW.external_id, debits, credits, NEW.currency USING ERRCODE = '23514';
    END IF;
    IF foreign_lines > 0 THEN
        RAISE EXCEPTION 'journal_entry_balances: journal entry % (%) is in % but % of its lines are not',
            NEW.id, NEW.external_id, NEW.currency, foreign_lines USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END
$$""",
    rf"""
CREATE FUNCTION journal_entry_closed_period() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    closed text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared({_PG_LOCK});
    IF NEW.period IS DISTINCT FROM to_char(NEW.entry_date, 'YYYY-MM') THEN
        RAISE EXCEPTION 'closed_period_frozen: journal entry % is dated % but posted in period %; an entry is posted in the month of its date',
            NEW.external_id, NEW.entry_date, NEW.period USING ERRCODE = '23514';
    END IF;
    SELECT max(period) INTO closed FROM accounting_period;
    IF closed IS NOT NULL AND NEW.period <= closed THEN
        RAISE EXCEPTION 'closed_period_frozen: period % is closed (closed through %); journal entry % must be posted in the first open period',
            NEW.period, closed, NEW.external_id USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
END
$$""",
    rf"""
CREATE FUNCTION accounting_period_close() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({_PG_LOCK});
    IF NEW.status IS DISTINCT FROM 'closed' OR NEW.period !~ '^[0-9]{{4}}-(0[1-9]|1[0-2])$' THEN
        RAISE EXCEPTION 'closed_period_final: an accounting_period row is a close: period YYYY-MM, status closed (got %, %)',
            NEW.period, NEW.status USING ERRCODE = '23514';
    END IF;
    RETURN NEW;
END
$$""",
]


def _pg_statements() -> list[str]:
    out = [f.strip() for f in _PG_FUNCTIONS]
    for table, instead in APPEND_ONLY.items():
        why = f"'ledger_append_only', 'its rows are never updated or deleted; {instead}'"
        out.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change({why})"
        )
        out.append(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change({why})"
        )
    final = "'closed_period_final', 'a closed period is never reopened, changed or deleted'"
    out += [
        "CREATE TRIGGER journal_line_sealed BEFORE INSERT ON journal_line "
        "FOR EACH ROW EXECUTE FUNCTION journal_line_sealed()",
        "CREATE CONSTRAINT TRIGGER journal_line_sealed_at_commit AFTER INSERT ON journal_line "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_line_sealed_at_commit()",
        "CREATE CONSTRAINT TRIGGER journal_entry_balances AFTER INSERT ON journal_entry "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_entry_balances()",
        "CREATE TRIGGER journal_entry_closed_period BEFORE INSERT ON journal_entry "
        "FOR EACH ROW EXECUTE FUNCTION journal_entry_closed_period()",
        "CREATE TRIGGER accounting_period_final BEFORE UPDATE OR DELETE ON accounting_period "
        f"FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change({final})",
        "CREATE TRIGGER accounting_period_no_truncate BEFORE TRUNCATE ON accounting_period "
        f"FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change({final})",
        "CREATE TRIGGER accounting_period_close BEFORE INSERT ON accounting_period "
        "FOR EACH ROW EXECUTE FUNCTION accounting_period_close()",
    ]
    return out


def _pg_drops() -> list[str]:
    out = []
    for table in APPEND_ONLY:
        out.append(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        out.append(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    out += [
        "DROP TRIGGER IF EXISTS journal_line_sealed ON journal_line",
        "DROP TRIGGER IF EXISTS journal_line_sealed_at_commit ON journal_line",
        "DROP TRIGGER IF EXISTS journal_entry_balances ON journal_entry",
        "DROP TRIGGER IF EXISTS journal_entry_closed_period ON journal_entry",
        "DROP TRIGGER IF EXISTS accounting_period_final ON accounting_period",
        "DROP TRIGGER IF EXISTS accounting_period_no_truncate ON accounting_period",
        "DROP TRIGGER IF EXISTS accounting_period_close ON accounting_period",
    ]
    for fn in ("ledger_refuse_change", "journal_line_sealed", "journal_line_sealed_at_commit",
               "journal_entry_balances", "journal_entry_closed_period", "accounting_period_close"):
        out.append(f"DROP FUNCTION IF EXISTS {fn}()")
    return out


def statements(dialect: str) -> list[str]:
    """The SQL that installs the invariants on ``dialect`` (``sqlite`` or ``postgresql``)."""
    if dialect == "postgresql":
        return _pg_statements()
    if dialect == "sqlite":
        return _sqlite_statements()
    raise NotImplementedError(f"no ledger invariants for {dialect}")


def drop_statements(dialect: str) -> list[str]:
    """The SQL that removes them."""
    return _pg_drops() if dialect == "postgresql" else _sqlite_drops()


# ------------------------------------------------------------------ the deferred FK


def _journal_line(*, deferred: bool) -> sa.Table:
    """journal_line as the initial schema made it, with its entry FK (not) deferred."""
    fk = {"deferrable": True, "initially": "DEFERRED"} if deferred else {}
    return sa.Table(
        'journal_line', sa.MetaData(),
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('entry_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('line_no', sa.Integer(), nullable=False),
        sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('account', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('debit_minor', sa.BigInteger(), nullable=False),
        sa.Column('credit_minor', sa.BigInteger(), nullable=False),
        sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column('customer_external_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('contract_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column('obligation_key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column('product', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('memo', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.Column('evidence', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'),
                  nullable=False),
        sa.ForeignKeyConstraint(['entry_id'], ['journal_entry.id'], **fk),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('entry_id', 'line_no', name='uq_journal_line'),
        sa.Index('ix_journal_line_entry_id', 'entry_id'),
    )


def _defer_line_fk(dialect: str, *, deferred: bool) -> None:
    if dialect == "postgresql":
        mode = "DEFERRABLE INITIALLY DEFERRED" if deferred else "NOT DEFERRABLE"
        op.execute(f"ALTER TABLE journal_line ALTER CONSTRAINT journal_line_entry_id_fkey {mode}")
    else:  # SQLite cannot alter a constraint: rebuild the table (its rows are copied)
        with op.batch_alter_table('journal_line', recreate='always', copy_from=_journal_line(deferred=deferred)):
            pass


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _defer_line_fk(dialect, deferred=True)
    for sql in statements(dialect):
        op.execute(sql)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for sql in drop_statements(dialect):
        op.execute(sql)
    _defer_line_fk(dialect, deferred=False)
