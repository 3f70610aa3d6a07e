"""Done-when 1 and 3 of the federated track, end to end through `medboard fl` and `flwr run`.

A tiny Llama built from a config, 4 sites, 3 rounds, LoRA, FedAvg on Flower's simulation engine;
then the adapter is evaluated and recorded on the federated leaderboard track.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from medboard.federated import TRACK
from medboard.federated.cli import fl_app
from medboard.federated.comm import REPORT_FILE
from medboard.federated.config import BYTES_PER_GB
from medboard.queue.worker import run_worker
from medboard.results.db import Entry, Submission, TaskScore, open_database
from medboard.runner import EvalOptions
from tests.conftest import build_tiny_llama, import_fixture_tasks
from tests.federated.helpers import command_env, error_line
from tests.federated.test_server import TENSOR_BYTES, WIRE_BYTES

runner = CliRunner()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    """Environment of every command here: its own medboard home, datasets cache, database."""
    with command_env(tmp_path_factory.mktemp("fl-e2e")) as root:
        yield root


@pytest.fixture(scope="module")
def ci_run(env: Path, fl_setup):
    app = fl_setup.app(env / "app", env / "unused")
    result = runner.invoke(
        fl_app, ["run", str(app), "--out", str(env / "run"), "--reference", str(app), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return app, env / "run", result


def _entries(url: str) -> int:
    database = open_database(url)
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Entry))


def test_run_trains_counts_bytes_and_stops_its_processes(ci_run) -> None:
    _app, run, result = ci_run
    state = json.loads((run / "run.json").read_text())
    assert state["status"] == "finished" and len(state["sites"]) == 4
    train = [r["train_loss"] for r in state["rounds"]]
    evals = [r["eval_loss"] for r in state["rounds"]]
    assert train[2] < train[0] and evals[0] > evals[1] > evals[2]
    report = json.loads((run / REPORT_FILE).read_text())
    messages = 3 * (4 + 4 + 4)  # per round: train down, train up, evaluate down
    assert report["total"]["tensor_bytes"] == messages * TENSOR_BYTES
    assert report["total"]["bytes"] == messages * WIRE_BYTES
    assert f"comm. cost {messages * WIRE_BYTES} B" in result.stdout
    # Nothing the run started is left: no process carries the run's FLWR_HOME.
    psutil = pytest.importorskip("psutil")
    home = str(run / ".flwr")
    for process in psutil.process_iter():
        try:
            assert process.environ().get("FLWR_HOME") != home, process.cmdline()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue


def _submit_args(run: Path, app: Path, url: str, *more: str) -> list[str]:
    return [
        "submit", str(run), "--team", "medboard-ci", "--code-url", "https://example.org/fl",
        "--reference", str(app), "--db", url, "--allow-data-mismatch", "--date", "2025-01-02",
        *more,
    ]  # fmt: skip


def _submissions(url: str) -> list[Submission]:
    database = open_database(url)
    with database.session() as session:
        return list(session.scalars(select(Submission).order_by(Submission.id)).all())


def test_submit_queues_the_run_and_a_worker_scores_it_by_each_protocol(ci_run, env: Path) -> None:
    app, run, _ = ci_run
    import_fixture_tasks(env / "home")
    url = f"sqlite:///{env / 'board.db'}"
    result = runner.invoke(fl_app, _submit_args(run, app, url))
    assert result.exit_code == 0, result.output
    jobs = _submissions(url)
    assert [(j.protocol, j.status, j.track) for j in jobs] == [
        ("loglik", "pending", TRACK), ("flowertune", "pending", TRACK),
        ("generative", "pending", TRACK),
    ]  # fmt: skip
    assert _entries(url) == 0  # queued, not scored
    assert f"queued #{jobs[0].id}" in result.stdout
    handled = run_worker(
        open_database(url), "w", once=True, options=EvalOptions(allow_data_mismatch=True)
    )
    assert handled == 3
    assert [j.status for j in _submissions(url)] == ["finished"] * 3, _submissions(url)
    database = open_database(url)
    with database.session() as session:
        entries = session.scalars(select(Entry).where(Entry.track == TRACK)).all()
        assert sorted(e.extra["protocol"] for e in entries) == [
            "flowertune/1", "generative/1", "loglik/1",
        ]  # fmt: skip
        assert len({e.model_id for e in entries}) == 1  # one model: base + adapter
        for entry in entries:
            assert entry.team == "medboard-ci" and entry.origin == "evaluated"
            assert entry.comm_cost_gb == 36 * WIRE_BYTES / BYTES_PER_GB
            assert entry.code_url == "https://example.org/fl" and entry.date == "2025-01-02"
            assert entry.model.model_type == "federated"
            assert entry.model.base_model == str(Path(app_model(app)))
            assert entry.extra["limit"] == 5  # the static eval-limit
            federated = entry.extra["federated"]
            assert federated["comm_bytes"] == 36 * WIRE_BYTES
            assert federated["budget_gb"] == 1.0 and federated["rounds"] == 3
            assert federated["sites"] == 4 and federated["sampled_per_round"] == 4
            state = json.loads((run / "run.json").read_text())
            assert federated["static_hash"] == state["static_hash"]
            assert entry.model.adapter_hash == state["hashes"]["adapter_hash"]
            # the sites' training data checked against the suite it is scored on
            contamination = entry.extra["contamination"]
            assert contamination["n"] == 8 and len(contamination["corpus_sha256"]) == 64
            tasks = session.scalars(
                select(TaskScore.task).where(
                    TaskScore.entry_id == entry.id, TaskScore.metric == "acc"
                )
            ).all()
            assert sorted(tasks) == ["careqa_en", "medmcqa", "medqa_4options", "pubmedqa"]
    again = runner.invoke(fl_app, _submit_args(run, app, url))
    assert "is submitted already as #" in error_line(again)
    assert len(_submissions(url)) == 3 and _entries(url) == 3


def app_model(app: Path) -> str:
    import tomllib

    document = tomllib.loads((app / "pyproject.toml").read_text())
    return document["tool"]["flwr"]["app"]["config"]["model"]["name"]


def test_changed_static_section_is_refused(ci_run, env: Path, fl_setup) -> None:
    app, run, _ = ci_run
    changed = fl_setup.app(
        env / "changed", env / "changed-out", fl_setup.static(**{"num-clients": 2})
    )
    result = runner.invoke(fl_app, ["run", str(changed), "--reference", str(app), "--quiet"])
    line = error_line(result)
    assert "static section changed: 'num-clients' is 2" in line
    assert not (env / "changed-out").exists()
    override = runner.invoke(
        fl_app, ["run", str(app), "--reference", str(app), "-c", "static.eval-limit=1"]
    )
    assert "may not override 'static.eval-limit'" in error_line(override)
    # A finished run whose recorded static section was edited is refused at submission.
    forged = env / "forged"
    shutil.copytree(run, forged, ignore=shutil.ignore_patterns(".flwr"))
    state = json.loads((forged / "run.json").read_text())
    state["static"]["eval-limit"] = 1
    (forged / "run.json").write_text(json.dumps(state))
    url = f"sqlite:///{env / 'static.db'}"
    submit = runner.invoke(
        fl_app,
        [
            "submit",
            str(forged),
            "--team",
            "t",
            "--reference",
            str(app),
            "--db",
            url,
            "--allow-data-mismatch",
        ],
    )
    assert "static section changed: 'eval-limit' is 1" in error_line(submit)
    assert _entries(url) == 0


def test_exceeded_budget_stops_the_run_and_leaves_no_entry(env: Path, fl_setup) -> None:
    budget = (3 * 4 * WIRE_BYTES + WIRE_BYTES) / BYTES_PER_GB  # round 2 does not fit
    app = fl_setup.app(
        env / "budget", env / "unused", fl_setup.static(**{"comm-budget-gb": budget})
    )
    out = env / "budget-run"
    result = runner.invoke(
        fl_app, ["run", str(app), "--out", str(out), "--reference", str(app), "--quiet"]
    )
    line = error_line(result)
    assert "communication budget exceeded: round 2 train would send" in line
    assert "stopped before sending" in line
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["status"] == "stopped" and report["total"]["bytes"] == 3 * 4 * WIRE_BYTES
    url = f"sqlite:///{env / 'budget.db'}"
    submit = runner.invoke(
        fl_app, ["submit", str(out), "--team", "t", "--reference", str(app), "--db", url]
    )
    assert "did not finish: communication budget exceeded" in error_line(submit)
    assert _entries(url) == 0


def test_adapter_of_another_base_model_is_refused(ci_run, env: Path) -> None:
    app, run, _ = ci_run
    other = build_tiny_llama(env / "wide-llama", hidden=48)
    url = f"sqlite:///{env / 'mismatch.db'}"
    result = runner.invoke(
        fl_app,
        [
            "submit",
            str(run),
            "--team",
            "t",
            "--reference",
            str(app),
            "--db",
            url,
            "--base-model",
            str(other),
            "--allow-data-mismatch",
        ],
    )
    assert "does not match base model" in error_line(result)
    assert _entries(url) == 0


def test_missing_datasets_are_refused(ci_run, env: Path, fl_setup, monkeypatch) -> None:
    app, run, _ = ci_run
    gone = fl_setup.app(env / "nodata", env / "nodata-out", None, **{"data-path": "/nonexistent"})
    result = runner.invoke(fl_app, ["run", str(gone), "--reference", str(app), "--quiet"])
    assert "missing dataset: training data" in error_line(result)
    monkeypatch.setenv("MEDBOARD_HOME", str(env / "empty-home"))  # no evaluation data
    url = f"sqlite:///{env / 'nodata.db'}"
    submit = runner.invoke(
        fl_app, ["submit", str(run), "--team", "t", "--reference", str(app), "--db", url]
    )
    assert "no data for task" in error_line(submit)
    assert _entries(url) == 0
    assert os.environ["MEDBOARD_HOME"].endswith("empty-home")
