"""The results database: models, runs, leaderboard entries and their scores, submissions.

SQLAlchemy 2 on a SQLite file by default (`<home>/medboard.db`), PostgreSQL by URL
(`--db postgresql+psycopg://...` or MEDBOARD_DB). The schema is created and upgraded by the
Alembic migrations in `medboard/results/migrations`, never by `create_all`.

A leaderboard row is an Entry: one model on one track, with where its numbers come from
(`origin`: evaluated here, imported from lm-eval outputs, or published elsewhere) and one
TaskScore per task and metric. Runs are medboard evaluations, keyed by their run key.
"""

import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
    true,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from medboard.errors import MedboardError
from medboard.paths import home

MODEL_TYPES = ("pretrained", "fine-tuned", "instruct", "federated", "unknown")
ORIGINS = ("evaluated", "imported", "published")
SUBMISSION_STATES = ("pending", "running", "finished", "failed")
_MIGRATING = threading.Lock()  # Alembic's context is process-global


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Model(Base):
    """A model as evaluated: name, exact revision, precision and adapter."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "revision", "dtype", "adapter_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    revision: Mapped[str] = mapped_column(String(100), default="")  # file hash or commit
    dtype: Mapped[str] = mapped_column(String(20), default="")
    adapter: Mapped[str | None] = mapped_column(String(500), default=None)
    adapter_hash: Mapped[str] = mapped_column(String(100), default="")
    # 64-bit: a 7B model does not fit a 32-bit integer (SQLite's INTEGER is 64-bit already)
    parameters: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), default=None
    )
    license: Mapped[str | None] = mapped_column(String(100), default=None)
    model_type: Mapped[str] = mapped_column(String(20), default="unknown")
    base_model: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    entries: Mapped[list["Entry"]] = relationship(back_populates="model")


class Entry(Base):
    """One row of one leaderboard track."""

    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track: Mapped[str] = mapped_column(String(50), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(20))  # one of ORIGINS
    source: Mapped[str] = mapped_column(Text, default="")  # file, URL or run folder
    source_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    team: Mapped[str | None] = mapped_column(String(200), default=None)
    comm_cost_gb: Mapped[float | None] = mapped_column(Float, default=None)
    code_url: Mapped[str | None] = mapped_column(Text, default=None)
    date: Mapped[str | None] = mapped_column(String(10), default=None)  # YYYY-MM-DD
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    model: Mapped[Model] = relationship(back_populates="entries")
    scores: Mapped[list["TaskScore"]] = relationship(
        back_populates="entry", cascade="all, delete-orphan"
    )


class Run(Base):
    """A medboard evaluation of one task, as its result.json describes it."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    task_version: Mapped[str] = mapped_column(String(20))
    protocol: Mapped[str] = mapped_column(String(50))
    data_hash: Mapped[str] = mapped_column(String(100))
    harness: Mapped[str] = mapped_column(String(50))
    harness_version: Mapped[str] = mapped_column(String(50))
    n_samples: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    wall_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    finished_at: Mapped[str] = mapped_column(String(30), default="")
    samples_path: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the result.json


class TaskScore(Base):
    """One metric of one task for one entry (with the run it comes from, when evaluated)."""

    __tablename__ = "task_scores"
    __table_args__ = (UniqueConstraint("entry_id", "task", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(50))
    value: Mapped[float] = mapped_column(Float)
    stderr: Mapped[float | None] = mapped_column(Float, default=None)
    n: Mapped[int | None] = mapped_column(Integer, default=None)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), default=None
    )

    entry: Mapped[Entry] = relationship(back_populates="scores")


class Submission(Base):
    """A request to evaluate a model; workers move it pending -> running -> finished | failed."""

    __tablename__ = "submissions"
    # At most one active (pending, running or finished) submission per dedup_key: concurrent
    # submissions of one model give one job (migration 0006 says why a partial index).
    __table_args__ = (
        Index(
            "uq_submissions_dedup_active",
            "dedup_key",
            unique=True,
            sqlite_where=text("status IN ('pending', 'running', 'finished')"),
            postgresql_where=text("status IN ('pending', 'running', 'finished')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(Text)  # a model spec's text (path, Hub id, BACKEND:...)
    revision: Mapped[str] = mapped_column(String(100), default="")
    dtype: Mapped[str] = mapped_column(String(20))
    adapter: Mapped[str | None] = mapped_column(Text, default=None)
    track: Mapped[str] = mapped_column(String(50))
    submitter: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    # Workers take approved jobs only; submissions are approved on arrival unless the
    # leaderboard asks for review (MEDBOARD_REQUIRE_APPROVAL=1).
    approved: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what validation found
    # The spec's backend arguments without a column of their own (medboard.backends.spec).
    args: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Where a running job is (queue.worker._JobReporter.progress), written with its heartbeat; a
    # failed job keeps where it stopped, a finished one clears it.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("entries.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # What makes two submissions the same (Submission.key_of); NULL: never a duplicate (rows
    # queued before 0006 that duplicated an older one, jobs inserted by hand).
    dedup_key: Mapped[str | None] = mapped_column(String(64), default=None)
    protocol: Mapped[str] = mapped_column(String(20), default="loglik", server_default="loglik")
    # The submitter's metadata, as the Open Medical-LLM form has it: model_type is one of
    # MODEL_TYPES (the entry's model gets it), weight_type original, adapter or delta.
    model_type: Mapped[str] = mapped_column(String(20), default="unknown", server_default="unknown")
    weight_type: Mapped[str] = mapped_column(
        String(20), default="original", server_default="original"
    )
    description: Mapped[str | None] = mapped_column(Text, default=None)
    # A public submission's client address, hashed (queue.limits.origin_key): what its rate
    # limit counts besides the self-declared submitter. NULL for the operator's.
    origin: Mapped[str | None] = mapped_column(String(64), default=None)
    # A job put back to wait after a failure that may pass (queue.claims.retry_later: its model
    # server or the Hub was down): no worker takes it before `not_before`; `retries` counts
    # such waits.
    not_before: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @staticmethod
    def key_of(identity: str, adapter_hash: str, dtype: str, track: str, protocol: str) -> str:
        """The dedup_key: sha256 of the model's identity (its validated revision: a content
        hash, a Hub commit; or `hub:ID@REVISION` before a worker validated it), its adapter's
        hash, dtype, track and protocol."""
        fields = (identity, adapter_hash, dtype, track, protocol)
        return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def database_url(url: str | None = None) -> str:
    """--db, else MEDBOARD_DB, else a SQLite file in the medboard home."""
    if url:
        return url
    env = os.environ.get("MEDBOARD_DB")
    if env:
        return env
    path = home() / "medboard.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the worker's writes
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def shown_url(url: str) -> str:
    """A database URL as messages and logs show it: its password, if any, hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: hide whatever sits between : and @
        return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


class Database:
    """One database: an engine, its migrations and sessions."""

    def __init__(self, url: str | None = None) -> None:
        self.url = database_url(url)
        self.shown = shown_url(self.url)
        try:
            self.engine: Engine = create_engine(self.url)
        except Exception as exc:  # a malformed URL or a missing driver
            raise MedboardError(f"cannot open database {self.shown}: {exc}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        # alembic 1.16+ logs a "setup plugin ..." line per plugin at INFO as it is imported,
        # on every start of `medboard serve` and `worker` (which log at INFO); its upgrade
        # lines stay
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        for attempt in range(2):  # another process may be creating the same fresh database
            try:
                with _MIGRATING, self.engine.begin() as connection:
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                return
            except Exception as exc:
                if attempt == 1:
                    raise MedboardError(f"cannot migrate database {self.shown}: {exc}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise


def open_database(url: str | None = None) -> Database:
    database = Database(url)
    database.migrate()
    return database
