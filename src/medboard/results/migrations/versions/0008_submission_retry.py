"""submission retry

A job whose model server was down or restarting (after the retries of its requests) goes back to
the queue to wait instead of failing: no worker claims it before `not_before`, and `retries`
counts the waits (medboard.queue.claims.retry_later), up to a limit after which it fails.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 00:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs on both SQLite and PostgreSQL: no table is rebuilt.
    op.add_column("submissions", sa.Column("not_before", sa.DateTime(), nullable=True))
    op.add_column(
        "submissions", sa.Column("retries", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("retries")
        batch_op.drop_column("not_before")
