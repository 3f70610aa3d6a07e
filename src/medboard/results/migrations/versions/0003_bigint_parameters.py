"""models.parameters as a 64-bit integer

A model of more than 2**31 - 1 parameters (2.1B) could not be stored on PostgreSQL, whose
INTEGER is 32-bit. SQLite's INTEGER holds 64 bits already: nothing to change there (and
rebuilding the models table in batch mode would cascade-delete its entries).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column(
        "models", "parameters", type_=sa.BigInteger(), existing_type=sa.Integer(), nullable=True
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column(
        "models", "parameters", type_=sa.Integer(), existing_type=sa.BigInteger(), nullable=True
    )
