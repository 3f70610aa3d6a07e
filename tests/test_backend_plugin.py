"""A backend from another package: registered through the entry-point group medboard.backends,
evaluated by its prefix through `medboard eval`, `medboard submit` + `medboard worker` and the
web form; and the one-line refusals of bad specs, with nothing queued or recorded."""

import html
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from medboard.backends import registry
from medboard.results.db import Entry, Submission, open_database
from tests.conftest import FIXTURES, import_fixture_tasks
from tests.test_cli import assert_one_line_error, medboard

KNOWN = ", ".join(sorted([*registry.BUILTIN, "echo", "needy"]))
ENTRY_POINTS = """[medboard.backends]
echo = medboard_echo:PROVIDER
needy = medboard_echo:NEEDY
"""


def _forget_backends() -> None:
    registry.registrations.cache_clear()
    registry._LOADED.clear()


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """medboard-echo installed into a folder on the path, as pip would lay it out: the module
    and its dist-info with the entry points (this process and the commands it starts)."""
    site = tmp_path / "site"
    dist = site / "medboard_echo-0.1.dist-info"
    dist.mkdir(parents=True)
    shutil.copy(FIXTURES / "plugin" / "medboard_echo.py", site)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: medboard-echo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    paths = [str(site), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    _forget_backends()
    yield site
    _forget_backends()


@pytest.fixture()
def home(medboard_home: Path) -> Path:
    import_fixture_tasks(medboard_home)
    return medboard_home


def _entry(db: str) -> Entry:
    with open_database(db).session() as session:
        entry = session.scalars(select(Entry)).one()
        entry.model.name, entry.scores  # noqa: B018 (loaded before the session ends)
        return entry


def _submissions(db: str) -> int:
    with open_database(db).session() as session:
        return session.scalar(select(func.count()).select_from(Submission)) or 0


def test_the_registry_lists_the_packages_backend(plugin: Path, home: Path) -> None:
    assert registry.known() == KNOWN.split(", ")
    assert registry.registrations()["echo"].origin == "medboard-echo"
    listed = medboard(home, "backends")
    assert listed.returncode == 0, listed.stderr
    text = " ".join(listed.stdout.split())
    assert "echo, medboard-echo: echo:WORD" in text and "scale float 0.01" in text
    assert "needs: pip install 'medboard-echo[needy]'" in text


def test_eval_by_prefix_records_an_entry(plugin: Path, home: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    out = tmp_path / "out"
    args = ["--suite", "open_medical", "--allow-data-mismatch", "--output", str(out)]
    result = medboard(
        home, "eval", "--model", "echo:A", "-M", "scale=0.02", *args, "--record", "--db", db
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "results.json").read_text())
    assert summary["model"] == {"model": "echo:A", "revision": "echo-0.02", "dtype": "none"}
    # " A" shares its letter with the word, the other letters do not: always A
    samples = [json.loads(line) for line in (out / "samples_medmcqa.jsonl").open()]
    assert samples and all(s["pred"] == 0 for s in samples)
    gold_a = sum(s["gold"] == 0 for s in samples) / len(samples)
    assert summary["results"]["medmcqa"]["acc"] == pytest.approx(gold_a)
    entry = _entry(db)
    assert entry.model.name == "echo:A" and entry.model.revision == "echo-0.02"


def test_submit_then_worker_by_prefix(plugin: Path, home: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    queued = medboard(home, "submit", "echo:B", "-M", "scale=0.5", "--db", db)
    assert queued.returncode == 0, queued.stderr
    assert "queued #1: echo:B (none)" in queued.stdout
    with open_database(db).session() as session:
        job = session.scalars(select(Submission)).one()
        assert (job.model, job.dtype, job.args) == ("echo:B", "none", {"scale": 0.5})
    worked = medboard(
        home, "worker", "--once", "-M", "batch=2", "--allow-data-mismatch", "--db", db
    )
    assert worked.returncode == 0, worked.stderr
    entry = _entry(db)
    assert entry.model.name == "echo:B" and entry.model.revision == "echo-0.5"
    assert len(entry.scores) >= 9


def test_the_web_form_takes_a_prefixed_model(plugin: Path, home: Path, tmp_path: Path) -> None:
    from medboard.queue.worker import run_worker
    from medboard.runner import EvalOptions
    from medboard.web.app import create_app

    database = open_database(f"sqlite:///{tmp_path / 'board.db'}")
    client = TestClient(create_app(database))
    form = {"model": "echo:C", "args": "scale=0.1", "dtype": "bfloat16", "track": "open_medical"}
    posted = client.post("/submit", data=form, follow_redirects=False)
    assert posted.status_code == 303, posted.text
    queue = client.get("/api/queue").json()["submissions"]
    assert [(j["model"], j["dtype"], j["args"]) for j in queue] == [
        ("echo:C", "none", {"scale": 0.1})  # echo has no dtype: the form's does not apply
    ]
    options = EvalOptions(allow_data_mismatch=True)
    assert run_worker(database, "web-test", once=True, options=options) == 1
    job = client.get("/api/queue").json()["submissions"][0]
    assert job["status"] == "finished", job["reason"]
    page = client.get(job["links"]["entry"])
    assert page.status_code == 200 and "echo:C" in page.text
    refused = client.post("/submit", data={**form, "model": "nope:x"})
    assert refused.status_code == 400
    known = f"unknown backend 'nope' (known: {KNOWN})"
    assert known in html.unescape(refused.text)
    bad_arg = client.post("/submit", data={**form, "args": "colour=red"})
    assert bad_arg.status_code == 400
    assert "takes no argument 'colour'" in html.unescape(bad_arg.text)
    assert len(client.get("/api/queue").json()["submissions"]) == 1


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        (["nope:x"], [f"unknown backend 'nope' (known: {KNOWN})"]),
        (["echo:A", "-M", "colour=red"], ["takes no argument 'colour' (it takes: batch, scale)"]),
        (["echo:A", "-M", "scale=big"], ["backend echo: scale takes a number, not 'big'"]),
        (["needy:x"], ["backend needy needs the package", "pip install 'medboard-echo[needy]'"]),
    ],
)
def test_bad_specs_are_one_line_and_nothing_is_queued_or_recorded(
    plugin: Path, home: Path, tmp_path: Path, spec: list[str], fragments: list[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    model, *args = spec
    evaluated = medboard(
        home, "eval", "--model", model, *args, "--suite", "open_medical",
        "--allow-data-mismatch", "--record", "--db", db,
    )  # fmt: skip
    assert_one_line_error(evaluated, *fragments)
    submitted = medboard(home, "submit", model, *args, "--db", db)
    assert_one_line_error(submitted, *fragments)
    assert _submissions(db) == 0
    assert not list((home / "runs").glob("*/result.json"))
    with open_database(db).session() as session:
        assert session.scalar(select(func.count()).select_from(Entry)) == 0


def test_a_worker_refuses_what_names_the_model(plugin: Path, home: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'board.db'}"
    assert medboard(home, "submit", "echo:D", "--db", db).returncode == 0
    for args, fragment in (
        (["-M", "scale=2"], "-M scale says which model is evaluated"),
        (["-M", "colour=red"], "no backend takes an argument 'colour'"),
        (["-M", "batch=many"], "batch takes an integer, not 'many'"),
    ):
        worked = medboard(home, "worker", "--once", *args, "--db", db)
        assert_one_line_error(worked, fragment)
    with open_database(db).session() as session:
        assert session.scalars(select(Submission)).one().status == "pending"


def test_cuda_where_there_is_none_is_one_line(home: Path, tiny_model: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    db = f"sqlite:///{tmp_path / 'board.db'}"
    evaluated = medboard(
        home, "eval", "--model", str(tiny_model), "--device", "cuda", "--tasks", "pubmedqa",
        "--allow-data-mismatch",
    )  # fmt: skip
    assert_one_line_error(evaluated, "device 'cuda' asked for, but CUDA is not available here")
    assert not list((home / "runs").glob("*/result.json"))
    assert medboard(home, "submit", "fake", "--db", db).returncode == 0
    worked = medboard(home, "worker", "--once", "--device", "cuda:1", "--db", db)
    assert_one_line_error(worked, "device 'cuda:1' asked for, but CUDA is not available here")
    with open_database(db).session() as session:
        assert session.scalars(select(Submission)).one().status == "pending"
