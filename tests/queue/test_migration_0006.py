"""Migration 0006 on a database at 0005 that holds submissions (the duplicates the old
read-then-insert let in among them), on SQLite and on the real PostgreSQL."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

import medboard.results.db as db
from medboard.errors import DuplicateSubmissionError
from medboard.queue.submissions import SubmitRequest, submit
from medboard.results.db import Base, Submission, open_database
from tests.queue.databases import KINDS, database_url

TRACK = "flowertune_medical"


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


def _upgrade(url: str, to: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, to)
    engine.dispose()


def test_0006_keys_active_submissions_and_refuses_duplicates_after(url: str) -> None:
    _upgrade(url, "0005")
    engine = create_engine(url)
    rows = [  # id (as inserted), revision, status: the fake model's revision is its options
        (1, "bias=A", "finished"),
        (2, "bias=A", "pending"),  # a duplicate of 1 that the race let in
        (3, "bias=B", "failed"),
        (4, "bias=B", "pending"),
        (5, "bias=C", "running"),
    ]
    with engine.begin() as connection:
        for _, revision, status in rows:
            connection.execute(
                text(
                    "INSERT INTO submissions (model, revision, dtype, track, submitter, "
                    "status, approved, info, attempts, created_at, updated_at) VALUES ("
                    ":model, :revision, 'none', :track, '', :status, true, :info, 0, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"model": f"fake:{revision}", "revision": revision, "track": TRACK,
                 "status": status, "info": '{"kind": "fake", "adapter_hash": ""}'},
            )  # fmt: skip
    engine.dispose()

    database = open_database(url)  # 0005 -> head
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with database.session() as session:
        jobs = {j.id: j for j in session.query(Submission).all()}

    def key(revision: str) -> str:
        return Submission.key_of(revision, "", "none", TRACK, "loglik")

    assert {i: j.dedup_key for i, j in jobs.items()} == {
        1: key("bias=A"), 2: None, 3: key("bias=B"), 4: key("bias=B"), 5: key("bias=C"),
    }  # fmt: skip
    assert {(j.protocol, j.model_type, j.weight_type, j.description) for j in jobs.values()} == {
        ("loglik", "unknown", "original", None)
    }
    for model, queued in (("fake:bias=A", 1), ("fake:bias=B", 4), ("fake:bias=C", 5)):
        with pytest.raises(DuplicateSubmissionError, match=f"as #{queued} "):
            submit(database, SubmitRequest(model=model, track=TRACK))
    with database.session() as session:  # the index, without the friendly check before it
        session.add(Submission(model="x", dtype="none", track=TRACK, dedup_key=key("bias=C")))
        with pytest.raises(IntegrityError, match="uq_submissions_dedup_active|dedup_key"):
            session.flush()
        session.rollback()
    database.engine.dispose()
