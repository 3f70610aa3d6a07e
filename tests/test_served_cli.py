"""A served model through the command line: a run killed with kill -9 resumes from its answer
cache to the results of a run never interrupted (the test server of tests/backends)."""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import import_fixture_tasks
from tests.test_cli import _count, medboard

STUB = Path(__file__).parent / "backends" / "openai_stub.py"


@pytest.fixture()
def served() -> Iterator[str]:
    """The test server as a process of its own, each completion taking 50 ms."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(STUB), str(port), "ok", "0.05"])
    deadline = time.time() + 30
    while time.time() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    process.terminate()
    process.wait(10)


def test_kill_9_then_resume_gives_identical_results(
    served: str, medboard_home: Path, tmp_path: Path
) -> None:
    import_fixture_tasks(medboard_home)
    model = ["--model", "openai:stub", "-M", f"base_url={served}", "-M", "batch=1"]
    tasks = ["--tasks", "medqa_4options,pubmedqa", "--limit", "10"]
    args = ["eval", *model, "--allow-data-mismatch", *tasks]
    env = {**os.environ, "MEDBOARD_HOME": str(medboard_home)}
    command = [sys.executable, "-c", "from medboard.cli import main; main()", *args]
    process = subprocess.Popen(
        [*command, "--output", str(tmp_path / "killed")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    caches = medboard_home / "runs"
    deadline = time.time() + 60
    answered = 0
    while time.time() < deadline and answered < 3:
        time.sleep(0.05)
        with contextlib.suppress(sqlite3.Error):
            answered = sum(_count(cache) for cache in caches.glob("*/cache.sqlite"))
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert answered >= 3, "the run did not get going"
    assert len(list(caches.glob("*/result.json"))) < 2
    resumed = medboard(medboard_home, *args, "--output", str(tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr
    fresh_home = tmp_path / "fresh"
    import_fixture_tasks(fresh_home)
    fresh = medboard(fresh_home, *args, "--output", str(tmp_path / "fresh-out"))
    assert fresh.returncode == 0, fresh.stderr
    for name in ("samples_medqa_4options.jsonl", "samples_pubmedqa.jsonl", "results.json"):
        got = (tmp_path / "resumed" / name).read_text()
        want = (tmp_path / "fresh-out" / name).read_text()
        if name == "results.json":  # the same numbers; times and run folders differ
            import json

            got_results = json.loads(got)["results"]
            assert got_results == json.loads(want)["results"]
            assert json.loads(got)["model"]["revision"] == "served:openai-compatible-stub:stub"
        else:
            assert got == want
