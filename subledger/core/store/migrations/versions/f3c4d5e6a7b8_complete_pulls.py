"""complete pulls

Revision ID: f3c4d5e6a7b8
Revises: e2b3c4d5f6a7
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import subledger.core.db_types

revision: str = 'f3c4d5e6a7b8'
down_revision: str | None = 'e2b3c4d5f6a7'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_complete_pull_at', subledger.core.db_types.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connection', schema=None) as batch_op:
        batch_op.drop_column('last_complete_pull_at')
