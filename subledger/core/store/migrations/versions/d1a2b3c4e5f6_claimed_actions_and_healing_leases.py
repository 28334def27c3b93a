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
    pass


def downgrade() -> None:
    pass
