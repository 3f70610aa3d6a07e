"""The leaderboard's commands end to end: submit, worker (with kill -9 and reclaim)."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
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
    queued = medboard(
        home, "submit", str(tiny_model), "--dtype", "float32", "--db", db, "--name", "tiny-llama"
    )
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
        entry = session.get(Entry, job.entry_id)
        assert len(entry.scores) >= 9
        assert entry.model.name == "tiny-llama"  # the board's name, not the path


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


def _queue_fake(db: str) -> None:
    with open_database(db).session() as session:  # the fake model needs no validation
        session.add(
            Submission(
                model="fake:delay=0.2,batch=1",
                revision="delay=0.2,batch=1",
                dtype="none",
                track="flowertune_medical",
                info={"kind": "fake"},
            )
        )


def test_worker_killed_mid_job_is_reclaimed_and_resumes(home: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    database = open_database(db)
    _queue_fake(db)
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


def _job(db: str) -> Submission:
    with open_database(db).session() as session:
        return session.scalars(select(Submission)).one()


def _interrupt_mid_job(
    home: Path, tmp_path: Path, args: list[str], stop: signal.Signals, port: int | None = None
) -> tuple[int, str]:
    """Start `medboard ARGS`, stop it with `stop` once its job is part-way (and `port`, if
    given, takes connections), return its exit code and output."""
    command = [sys.executable, "-c", "from medboard.cli import main; main()", *args]
    env = {**os.environ, "MEDBOARD_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    log = tmp_path / f"{args[0]}.log"
    with log.open("w") as out:
        # Ctrl-C as from a terminal (a shell running the suite in the background ignores SIGINT,
        # and its children inherit that)
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline and (_answers(home / "runs") < 3 or not _listens(port)):
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        assert _answers(home / "runs") >= 3, "the job did not get going: " + log.read_text()
        process.send_signal(stop)
        code = process.wait(timeout=60)
    return code, log.read_text()


def test_ctrl_c_in_eval_says_where_it_stopped_and_the_rerun_resumes(
    home: Path, tmp_path: Path
) -> None:
    """Ctrl-C ended `medboard eval` with exit code 130 and not a word (typer swallowed the
    interruption before medboard's message)."""
    args = ["eval", "--model", "fake:delay=0.2,batch=1", "--suite", "flowertune_medical",
            "--allow-data-mismatch"]  # fmt: skip
    code, output = _interrupt_mid_job(home, tmp_path, args, signal.SIGINT)
    assert code == 130, output
    said = re.search(
        r"interrupted( at (\w+) (\d+)/(\d+) \(answers so far kept\))?: run the same command "
        r"again to resume", output,
    )  # fmt: skip
    assert said is not None and "Traceback" not in output, output
    again = medboard(home, *args)
    assert again.returncode == 0, again.stderr
    if said[1] is None:  # stopped between tasks
        return
    task, done, total = said[2], int(said[3]), int(said[4])
    assert done <= total, output  # all answered, the run not yet written: also resumed
    if done:  # a task is resumed where it stopped, not started again
        assert f"{task}: resuming at {done}/{total}" in again.stderr, again.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_worker_stopped_mid_job_puts_it_back_at_once(
    home: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    """Ctrl-C (or SIGTERM: docker stop, systemctl stop) on `medboard worker`: the job is pending
    again (not running until its lease runs out), and the next worker takes it at once and
    resumes it from the answer cache."""
    db = f"sqlite:///{tmp_path / 'board.db'}"
    _queue_fake(db)
    worker = ["worker", "--allow-data-mismatch", "--lease", "600", "--db", db]
    code, output = _interrupt_mid_job(home, tmp_path, [*worker, "--name", "first"], stop)
    assert code == 130, output
    assert "back in the queue" in output and "Traceback" not in output, output
    job = _job(db)
    assert (job.status, job.worker, job.attempts) == ("pending", None, 1)
    done_before = _answers(home / "runs")
    second = medboard(home, *worker, "--once", "--name", "second", timeout=300)
    assert second.returncode == 0, second.stderr
    job = _job(db)
    assert (job.status, job.worker, job.attempts) == ("finished", "second", 2)
    assert done_before <= _answers(home / "runs")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_stopped_mid_job_puts_it_back(
    home: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    _queue_fake(db)
    port = _free_port()
    serve = ["serve", "--port", str(port), "--db", db, "--allow-data-mismatch", "--lease", "600"]
    code, output = _interrupt_mid_job(home, tmp_path, serve, stop, port)
    assert code == 0, output  # a server stopped as asked (uvicorn's own way with Ctrl-C)
    assert "back in the queue" in output and "Traceback" not in output, output
    job = _job(db)
    assert (job.status, job.worker) == ("pending", None), output


def test_serve_names_the_models_it_queues(home: Path, tiny_model: Path, tmp_path: Path) -> None:
    """`serve --submit A --name NA --submit B`: A is queued under NA, B under its spec; a --name
    with no --submit to pair with is refused before anything starts."""
    db = f"sqlite:///{tmp_path / 'board.db'}"
    copy = tmp_path / "second"  # another model: a copy with another hash
    shutil.copytree(tiny_model, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    extra = medboard(home, "serve", "--db", db, "--submit", str(tiny_model), "--name", "a",
                     "--name", "b")  # fmt: skip
    assert_one_line_error(extra, "2 --name for 1 --submit")
    port = _free_port()
    command = [sys.executable, "-c", "from medboard.cli import main; main()", "serve", "--db", db,
               "--port", str(port), "--workers", "0", "--submit", str(tiny_model),
               "--name", "Tiny-A", "--submit", str(copy), "--dtype", "float32"]  # fmt: skip
    env = {**os.environ, "MEDBOARD_HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and not _listens(port):
                assert process.poll() is None, log.read_text()
                time.sleep(0.1)
        finally:
            process.terminate()
            process.wait(timeout=60)
    output = log.read_text()
    assert "queued #1: " in output and " as Tiny-A" in output, output
    assert "Running upgrade" in output and "setup plugin" not in output  # alembic's noise
    with open_database(db).session() as session:
        jobs = session.scalars(select(Submission).order_by(Submission.id)).all()
        assert [(job.model, job.info.get("name")) for job in jobs] == [
            (str(tiny_model), "Tiny-A"), (str(copy), None),
        ]  # fmt: skip


def _listens(port: int | None) -> bool:
    if port is None:
        return True
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("MEDBOARD_SUBMIT_LIMIT=ten", "MEDBOARD_SUBMIT_LIMIT='ten' is not a number of submissions"),
        ("MEDBOARD_PUBLIC_MAX_PARAMS=big", "MEDBOARD_PUBLIC_MAX_PARAMS='big' is not a number of"),
        (
            "MEDBOARD_PUBLIC_BACKENDS=hf,nope",
            "PUBLIC_BACKENDS names unknown backend 'nope'",
        ),
        ("MEDBOARD_RETRY_WAITS=1m,soon", "MEDBOARD_RETRY_WAITS: 'soon' is not a wait"),
    ],
)
def test_a_wrong_queue_setting_stops_the_board_and_its_workers_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, message: str
) -> None:
    """Read at start, not at the first submission (where each submitter would have seen it)."""
    from tests.test_cli import assert_one_line_error, medboard

    key, _, value = setting.partition("=")
    monkeypatch.setenv(key, value)
    db = f"sqlite:///{tmp_path / 'board.db'}"
    for command in (["worker", "--once"], ["serve", "--workers", "0", "--port", "1"]):
        result = medboard(tmp_path / "home", *command, "--db", db)
        assert_one_line_error(result, message)
    assert not (tmp_path / "board.db").exists()  # nothing opened
