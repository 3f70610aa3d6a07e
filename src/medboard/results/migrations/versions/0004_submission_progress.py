"""submission progress

Where a running job is (task, questions done), written with the worker's heartbeat, so the
queue page can show it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both SQLite and PostgreSQL: no table is rebuilt.
    op.add_column("submissions", sa.Column("progress", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("progress")
