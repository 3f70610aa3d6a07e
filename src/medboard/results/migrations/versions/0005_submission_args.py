"""submission backend arguments

The model spec's backend arguments that have no column of their own (batch size, kernels, a
served model's address ...): with the model text, dtype, revision and adapter they rebuild the
submitted spec (medboard.backends.spec) for the worker.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both SQLite and PostgreSQL: no table is rebuilt.
    op.add_column("submissions", sa.Column("args", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_column("args")
