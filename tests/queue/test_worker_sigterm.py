"""Idle `medboard worker` processes stop promptly on SIGTERM (docker stop, systemctl stop), after
they drained a queue, on SQLite and on the real PostgreSQL: real processes, real signals.

The bound asserted is generous: a liveness check (an idle worker must not sit out its poll
interval or more before it stops), not a timing benchmark.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from medboard.queue.submissions import SubmitRequest, submit
from medboard.results.db import Submission, open_database
from tests.conftest import build_tiny_llama, import_fixture_tasks
from tests.queue.databases import KINDS, database_url

TRACK = "flowertune_medical"
WORKERS = 2
JOBS = 2  # one each, most often: each a tiny model
BOUND = 3.0  # seconds from SIGTERM to exit: was 5 and more, about 1 now (2 busy cores)
WORKER = [sys.executable, "-c", "from medboard.cli import main; main()", "worker"]


@pytest.fixture(params=KINDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture()
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:  # a failed test: none is left behind
        if process.poll() is None:
            process.kill()
            process.wait()


def test_idle_workers_exit_promptly_on_sigterm(
    url: str,
    medboard_home: Path,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    import_fixture_tasks(medboard_home)
    database = open_database(url)
    # Tiny transformers models (another seed each: other hashes, so not duplicates): a worker
    # that ran one has imported torch and transformers, whose objects made its exit slow.
    for seed in range(JOBS):
        model = build_tiny_llama(tmp_path / f"tiny{seed}", seed=seed)
        submit(database, SubmitRequest(model=str(model), dtype="float32", track=TRACK))
    env = {**os.environ, "MEDBOARD_HOME": str(medboard_home), "HF_HUB_OFFLINE": "1"}
    logs = [tmp_path / f"w{i}.log" for i in range(WORKERS)]
    for i, log in enumerate(logs):
        with log.open("w") as out:
            processes.append(
                subprocess.Popen(
                    [*WORKER, "--allow-data-mismatch", "--db", url, "--name", f"w{i}"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )

    def output() -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)

    started = time.monotonic()
    deadline = started + 120
    while time.monotonic() < deadline:
        with database.session() as session:
            states = session.scalars(select(Submission.status)).all()
        if all(state == "finished" for state in states):
            break
        assert all(p.poll() is None for p in processes), output()
        time.sleep(0.2)
    else:
        pytest.fail("the queue was not drained\n" + output())
    drained = time.monotonic() - started
    database.engine.dispose()
    time.sleep(2.5)  # idle: each worker is between polls of the empty queue

    sent = time.monotonic()
    for process in processes:
        process.send_signal(signal.SIGTERM)
    took = []
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("a worker ignored SIGTERM for 30 s\n" + output())
        took.append(time.monotonic() - sent)
    assert max(took) < BOUND, f"drained in {drained:.1f} s, exits after {took}\n{output()}"
    assert [p.returncode for p in processes] == [130] * WORKERS, output()
    assert "Traceback" not in output()
