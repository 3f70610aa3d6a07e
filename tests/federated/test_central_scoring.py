"""Central scoring of a federated run (issue 36): `medboard fl submit` checks the run and queues
it once per protocol, a worker scores each; a run folder changed after the run is refused.

The run is made in-process (the ServerApp with the ClientApp behind a FakeGrid, as
test_server.py does: about a second); test_e2e.py does the same through `flwr run`.
"""

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from medboard.federated.cli import fl_app
from medboard.federated.comm import REPORT_FILE
from medboard.queue.worker import run_worker
from medboard.results.db import Entry, Submission, open_database
from medboard.runner import EvalOptions
from tests.conftest import import_fixture_tasks
from tests.federated.helpers import command_env, error_line, finished_run

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    with command_env(tmp_path_factory.mktemp("fl-central")) as root:
        import_fixture_tasks(root / "home")
        yield root


@pytest.fixture(scope="module")
def made_run(env: Path, fl_setup) -> tuple[Path, Path]:
    """(the app, the finished run folder)."""
    return finished_run(fl_setup, env)


def _args(run: Path, app: Path, url: str, *more: str) -> list[str]:
    return [
        "submit", str(run), "--team", "ci", "--reference", str(app), "--db", url,
        "--allow-data-mismatch", *more,
    ]  # fmt: skip


def _submissions(url: str) -> list[Submission]:
    with open_database(url).session() as session:
        return list(session.scalars(select(Submission).order_by(Submission.id)).all())


def _entries(url: str) -> int:
    with open_database(url).session() as session:
        return session.scalar(select(func.count()).select_from(Entry))


def _work(url: str) -> int:
    options = EvalOptions(allow_data_mismatch=True)
    return run_worker(open_database(url), "w", once=True, options=options)


def test_each_protocol_is_a_job_and_an_entry(made_run, env: Path) -> None:
    app, run = made_run
    url = f"sqlite:///{env / 'board.db'}"
    result = runner.invoke(fl_app, _args(run, app, url))
    assert result.exit_code == 0, result.output
    assert [j.protocol for j in _submissions(url)] == ["loglik", "flowertune", "generative"]
    assert _entries(url) == 0 and "next: medboard worker" in result.stdout
    assert _work(url) == 3
    with open_database(url).session() as session:
        entries = session.scalars(select(Entry).order_by(Entry.id)).all()
        assert [e.extra["protocol"] for e in entries] == [
            "loglik/1",
            "flowertune/1",
            "generative/1",
        ]
        for entry in entries:
            federated = entry.extra["federated"]
            assert entry.team == "ci" and entry.comm_cost_gb == federated["comm_gb"] > 0
            assert (federated["sites"], federated["sampled_per_round"]) == (4, 4)
            assert federated["rounds"] == 3 and federated["budget_gb"] == 1.0
            assert len(federated["static_hash"]) == 64
    # the model page and its JSON twin show the run's figures
    from fastapi.testclient import TestClient

    from medboard.web.app import create_app

    client = TestClient(create_app(open_database(url)))
    page = client.get(f"/model/{entries[1].id}").text
    for text in ("Communication budget", "1.0 GB", "Rounds", "4, 4 sampled per round",
                 federated["static_hash"]):  # fmt: skip
        assert text in page, text
    shown = client.get(f"/api/model/{entries[1].id}").json()
    assert shown["entry"]["extra"]["federated"]["static_hash"] == federated["static_hash"]
    again = runner.invoke(fl_app, _args(run, app, url))
    assert "is submitted already as #" in error_line(again)
    assert len(_submissions(url)) == 3


def test_submit_now_scores_the_run_here(made_run, env: Path) -> None:
    app, run = made_run
    url = f"sqlite:///{env / 'now.db'}"
    other = Submission(model="m", revision="r", dtype="float32", track="open_medical")
    with open_database(url).session() as session:  # someone else's job: not scored here
        session.add(other)
    result = runner.invoke(fl_app, _args(run, app, url, "--now", "--protocol", "loglik"))
    assert result.exit_code == 0, result.output
    assert [j.status for j in _submissions(url)] == ["pending", "finished"]
    assert "(loglik): entry 1" in result.stdout and _entries(url) == 1


def _tampered(run: Path, to: Path, what: str) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".flwr"))
    if what == "adapter":
        weights = to / "adapter" / "adapter_model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1  # one bit of one weight
        weights.write_bytes(bytes(data))
    else:
        report = json.loads((to / REPORT_FILE).read_text())
        report["rounds"][0]["bytes"] -= 1
        report["rounds"][1]["bytes"] += 1  # the totals still add up
        (to / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return to


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("adapter", "does not match the hash that run.json records: the adapter was changed"),
        ("report", "does not match the sha256 that run.json records: the report was changed"),
    ],
)
def test_tampered_run_is_refused(made_run, env: Path, what: str, message: str) -> None:
    app, run = made_run
    forged = _tampered(run, env / f"tampered-{what}", what)
    url = f"sqlite:///{env / f'tampered-{what}.db'}"
    result = runner.invoke(fl_app, _args(forged, app, url))
    assert message in error_line(result)
    assert _submissions(url) == [] and _entries(url) == 0


def test_adapter_changed_in_the_queue_fails_its_job(made_run, env: Path) -> None:
    app, run = made_run
    copy = env / "changed-later"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".flwr"))
    url = f"sqlite:///{env / 'changed-later.db'}"
    result = runner.invoke(fl_app, _args(copy, app, url, "--protocol", "loglik"))
    assert result.exit_code == 0, result.output
    _tampered(run, env / "scratch", "adapter")
    shutil.copy(env / "scratch" / "adapter" / "adapter_model.safetensors", copy / "adapter")
    _work(url)
    (job,) = _submissions(url)
    assert job.status == "failed" and "changed since it was submitted" in job.reason
    assert _entries(url) == 0
