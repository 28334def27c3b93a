"""claimed actions and healing leases

Revision ID: d1a2b3c4e5f6
Revises: c308cd77e75c
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import subledger.core.db_types

revision: str = 'd1a2b3c4e5f6'
down_revision: str | None = 'c308cd77e75c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # An action is claimed by one applier at a time (compare-and-set on its status).
    with op.batch_alter_table('action', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', subledger.core.db_types.UTCDateTime(timezone=True),
                                      nullable=True))

    # Leases carry a fencing generation (+1 at every takeover); rows held now start at 1.
    with op.batch_alter_table('lock', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='1'))

    # A run names the lease owner running it, so a run its dead process left "running" is closed.
    with op.batch_alter_table('sync_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sync_run', schema=None) as batch_op:
        batch_op.drop_column('owner')

    with op.batch_alter_table('lock', schema=None) as batch_op:
        batch_op.drop_column('generation')

    with op.batch_alter_table('action', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claimed_by')
