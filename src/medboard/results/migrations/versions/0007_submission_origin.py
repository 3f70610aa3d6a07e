"""submission origin

A public submission's client address, hashed (medboard.queue.limits): the rate limit counts a
client's submissions by it as well as by the submitter it names, which anyone may leave empty
or change between requests.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both SQLite and PostgreSQL: no table is rebuilt.
    op.add_column("submissions", sa.Column("origin", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("origin")
