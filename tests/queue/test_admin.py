"""Admin actions on a real SQLite database."""

from pathlib import Path

import pytest
from sqlalchemy import select

from medboard.queue.admin import AdminError, approve, delete, hide, rerun
from medboard.queue.claims import claim, fail
from medboard.queue.submissions import SubmitRequest, submit
from medboard.results.db import Entry, Model, Submission, TaskScore, open_database


@pytest.fixture()
def database(tmp_path: Path):
    return open_database(f"sqlite:///{tmp_path / 'a.db'}")


def test_approval_gate(tiny_model: Path, medboard_home, database, monkeypatch) -> None:
    monkeypatch.setenv("MEDBOARD_REQUIRE_APPROVAL", "1")
    job = submit(database, SubmitRequest(model=str(tiny_model), dtype="float32"))
    assert not job.approved
    assert claim(database, "w") is None  # workers wait for the approval
    approve(database, job.id)
    assert claim(database, "w").id == job.id


def test_rerun_a_failed_job(database) -> None:
    with database.session() as session:
        session.add(Submission(model="m", revision="r", dtype="float32", track="open_medical"))
    job = claim(database, "w")
    with pytest.raises(AdminError, match="is running: nothing to rerun"):
        rerun(database, job.id)
    fail(database, job.id, "w", "out of memory")
    again = rerun(database, job.id)
    assert (again.status, again.reason, again.worker) == ("pending", None, None)
    assert claim(database, "w2").attempts == 2
    with pytest.raises(AdminError, match="no submission #99"):
        rerun(database, 99)


def test_hide_and_delete_an_entry(database) -> None:
    with database.session() as session:
        entry = Entry(track="open_medical", origin="evaluated", model=Model(name="m"))
        entry.scores = [TaskScore(task="pubmedqa", metric="acc", value=0.5)]
        session.add(entry)
        session.flush()
        session.add(
            Submission(model="m", revision="r", dtype="float32", track="open_medical",
                       status="finished", entry_id=entry.id)
        )  # fmt: skip
    assert hide(database, entry.id).hidden
    assert not hide(database, entry.id, hidden=False).hidden
    delete(database, entry.id)
    with database.session() as session:
        assert session.scalars(select(Entry)).all() == []
        assert session.scalars(select(TaskScore)).all() == []
        assert session.scalars(select(Submission)).one().entry_id is None
    with pytest.raises(AdminError, match="no entry"):
        hide(database, entry.id)
