"""The leaderboard's commands end to end: submit, worker (with kill -9 and reclaim)."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from medboard.results.db import Entry, Submission, open_database
from tests.conftest import import_fixture_tasks
from tests.test_cli import assert_one_line_error, medboard


@pytest.fixture()
def home(medboard_home: Path) -> Path:
    import_fixture_tasks(medboard_home)
    return medboard_home


def test_submit_then_worker_once(home: Path, tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    queued = medboard(home, "submit", str(tiny_model), "--dtype", "float32", "--db", db)
    assert queued.returncode == 0, queued.stderr
    assert "queued #1" in queued.stdout
    duplicate = medboard(home, "submit", str(tiny_model), "--dtype", "float32", "--db", db)
    assert_one_line_error(duplicate, "submitted already as #1 (pending)", "/queue#submission-1")
    worked = medboard(home, "worker", "--once", "--allow-data-mismatch", "--db", db, timeout=600)
    assert worked.returncode == 0, worked.stderr
    assert "after 1 job(s)" in worked.stdout
    with open_database(db).session() as session:
        job = session.scalars(select(Submission)).one()
        assert job.status == "finished", job.reason
        assert len(session.get(Entry, job.entry_id).scores) >= 9


def test_submit_bad_model(home: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    assert_one_line_error(
        medboard(home, "submit", str(tmp_path / "nothing"), "--db", db), "does not exist"
    )
    assert_one_line_error(
        medboard(home, "submit", "x", "--track", "moon", "--db", db), "unknown track 'moon'"
    )


def _answers(runs: Path) -> int:
    total = 0
    for cache in runs.glob("*/cache.sqlite"):
        with contextlib.suppress(sqlite3.Error), sqlite3.connect(cache) as db:
            total += db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    return total


def test_worker_killed_mid_job_is_reclaimed_and_resumes(home: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    database = open_database(db)
    with database.session() as session:  # the fake model needs no validation: queue it directly
        session.add(
            Submission(
                model="fake:delay=0.2,batch=1",
                revision="delay=0.2,batch=1",
                dtype="none",
                track="flowertune_medical",
                info={"kind": "fake"},
            )
        )
    command = [sys.executable, "-c", "from medboard.cli import main; main()", "worker"]
    command += ["--once", "--allow-data-mismatch", "--lease", "6", "--db", db]
    env = {**os.environ, "MEDBOARD_HOME": str(home)}
    first = subprocess.Popen(
        [*command, "--name", "doomed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline and _answers(home / "runs") < 3:
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    done_before = _answers(home / "runs")
    assert done_before >= 3, "the job did not get going"
    with database.session() as session:
        job = session.scalars(select(Submission)).one()
        assert (job.status, job.worker) == ("running", "doomed")
    # A second worker leaves the job alone while the lease runs, then takes it over.
    early = medboard(home, "worker", *command[4:], "--name", "heir", timeout=300)
    assert "after 0 job(s)" in early.stdout, early.stderr
    time.sleep(6.5)
    second = medboard(home, "worker", *command[4:], "--name", "heir", timeout=300)
    assert second.returncode == 0, second.stderr
    with database.session() as session:
        job = session.scalars(select(Submission)).one()
        assert (job.status, job.worker, job.attempts) == ("finished", "heir", 2)
        entry = session.get(Entry, job.entry_id)
        resumed = {s.task: s.value for s in entry.scores if s.metric == "acc"}
    assert len(resumed) == 4
    # the same evaluation, uninterrupted, in another home gives the same scores
    fresh_home = tmp_path / "fresh"
    import_fixture_tasks(fresh_home)
    fresh = medboard(
        fresh_home, "eval", "--model", "fake:delay=0,batch=1", "--suite", "flowertune_medical",
        "--allow-data-mismatch", "--output", str(tmp_path / "fresh-out"),
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr
    expected = json.loads((tmp_path / "fresh-out" / "results.json").read_text())["results"]
    assert resumed == {task: expected[task]["acc"] for task in resumed}


def test_import_results_and_export_cli(home: Path, tmp_path: Path) -> None:
    from tests.leaderboard.test_exchange import lmeval_folder

    db = f"sqlite:///{tmp_path / 'board.db'}"
    root = lmeval_folder(tmp_path / "lm", {"pubmedqa": 0.5, "winogrande": 0.6})
    imported = medboard(home, "import-results", str(root), "--db", db)
    assert imported.returncode == 0, imported.stderr
    text = " ".join(imported.stdout.split())
    assert "imported entry 1 on flowertune_medical: pubmedqa" in text
    assert "skipped tasks medboard does not know: winogrande" in text
    exported = medboard(home, "export", "--out", str(tmp_path / "ex"), "--entry", "1", "--db", db)
    assert exported.returncode == 0, exported.stderr
    (results,) = (tmp_path / "ex").rglob("results_*.json")
    assert json.loads(results.read_text())["results"]["pubmedqa"]["acc,none"] == 0.5
    assert_one_line_error(
        medboard(home, "export", "--out", str(tmp_path / "ex"), "--format", "csv", "--db", db),
        "unknown export format 'csv'",
    )
    assert_one_line_error(
        medboard(home, "import-results", str(tmp_path / "nowhere"), "--db", db), "does not exist"
    )
