"""submission dedup key and metadata

Duplicates refused by the database: `dedup_key` is a sha256 of what makes two submissions the
same (the model's validated revision, its adapter's hash, dtype, track, protocol:
Submission.key_of), under a UNIQUE index that covers active submissions only (status pending,
running or finished: a partial index, `WHERE status IN (...)`, which SQLite and PostgreSQL both
have). A failed job leaves the index by its status alone, so the same model can be submitted
again, and nothing has to clear the key on every way a job can fail; an admin's rerun of a
failed job whose model was queued again meanwhile is refused by the same index. The key is
nullable: NULLs never collide, so rows inserted without one (by hand, by tests) are unaffected.

Backfill: every existing row gets its key (protocol loglik: the only one before 0006), except
an active row that duplicates an older active one (the race this index closes let such rows in):
it keeps NULL, so the index can be built, and stays as it is.

The submitter's metadata, as the Open Medical-LLM submission form has it: protocol (loglik by
default), model_type, weight_type and a description.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 20:30:00.000000
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "status IN ('pending', 'running', 'finished')"
INDEX = "uq_submissions_dedup_active"


def key_of(identity: str, adapter_hash: str, dtype: str, track: str, protocol: str) -> str:
    """Submission.key_of as it was when this migration was written: a migration keeps its own
    copy, so that a later change of the live key cannot change what this backfill wrote."""
    fields = (identity, adapter_hash, dtype, track, protocol)
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def upgrade() -> None:
    # Plain ADD COLUMNs on both SQLite and PostgreSQL: no table is rebuilt.
    op.add_column("submissions", sa.Column("dedup_key", sa.String(64), nullable=True))
    for name, default in (
        ("protocol", "loglik"),
        ("model_type", "unknown"),
        ("weight_type", "original"),
    ):
        op.add_column(
            "submissions",
            sa.Column(name, sa.String(20), nullable=False, server_default=default),
        )
    op.add_column("submissions", sa.Column("description", sa.Text(), nullable=True))
    _backfill()
    op.create_index(
        INDEX,
        "submissions",
        ["dedup_key"],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )


def _backfill() -> None:
    table = sa.table(
        "submissions",
        sa.column("id", sa.Integer),
        sa.column("revision", sa.String),
        sa.column("dtype", sa.String),
        sa.column("track", sa.String),
        sa.column("status", sa.String),
        sa.column("info", sa.JSON),
        sa.column("dedup_key", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            table.c.id, table.c.revision, table.c.dtype, table.c.track, table.c.status,
            table.c.info,
        ).order_by(table.c.id)
    ).all()  # fmt: skip
    taken: set[str] = set()
    for row in rows:
        info = row.info if isinstance(row.info, dict) else {}
        key = key_of(
            row.revision or "", str(info.get("adapter_hash") or ""), row.dtype, row.track, "loglik"
        )
        if row.status in ("pending", "running", "finished"):
            if key in taken:
                continue  # a duplicate the old read-then-insert let in: left without a key
            taken.add(key)
        connection.execute(sa.update(table).where(table.c.id == row.id).values(dedup_key=key))


def downgrade() -> None:
    op.drop_index(INDEX, table_name="submissions")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        for name in ("description", "weight_type", "model_type", "protocol", "dedup_key"):
            batch_op.drop_column(name)
