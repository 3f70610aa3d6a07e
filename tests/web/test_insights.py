"""Rank intervals on the board and robustness on the model page, from real (fake-model) runs."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medboard.backends.fake import FakeBackend
from medboard.results.db import Database, open_database
from medboard.results.record import record_entry
from medboard.runner import EvalOptions, evaluate
from medboard.tasks import REGISTRY
from medboard.tasks.permute import permuted
from medboard.web.app import create_app
from tests.conftest import import_fixture_tasks

OPTIONS = EvalOptions(allow_data_mismatch=True)


def _evaluated(database: Database, options: str, name: str, shifts: tuple[int, ...] = ()) -> int:
    backend = FakeBackend(options)
    tasks = REGISTRY.resolve("open_medical", None)
    results = evaluate(tasks, backend, options=OPTIONS)
    medqa = REGISTRY.task("medqa_4options")
    results += evaluate([permuted(medqa, s) for s in shifts], backend, options=OPTIONS)
    identity = backend.identity()
    return record_entry(database, "open_medical", results, identity, {"name": name})


def test_rank_intervals_and_robustness(medboard_home: Path, tmp_path: Path) -> None:
    import_fixture_tasks(medboard_home)
    database = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ids = {
        name: _evaluated(database, options, name, shifts)
        for name, options, shifts in [
            ("fair", "", (1, 2, 3)),
            ("biased-a", "bias=A", (1, 2, 3)),
            ("other", "batch=3", ()),
        ]
    }
    client = TestClient(create_app(database))
    board = client.get("/api/leaderboard/open_medical").json()
    assert board["uncertainty"]["compared"] == 3
    by_name = {row["model"]: row for row in board["rows"]}
    for name in ids:
        found = by_name[name]["rank_interval"]
        assert found["of"] == 3
        low, high = found["interval"]
        assert 1 <= low <= found["rank"] <= high <= 3
    leader = board["uncertainty"]["leader"]
    assert by_name[next(n for n in ids if str(ids[n]) == leader)]["rank_interval"][
        "indistinguishable_from_leader"
    ]
    assert "Rank 95%" in client.get("/leaderboard/open_medical").text

    page = client.get(f"/api/model/{ids['biased-a']}").json()
    robust = page["insights"]["robustness"]["medqa_4options"]
    assert set(robust["accuracy_by_shift"]) == {"1", "2", "3"}
    assert robust["pred_letters"] == {"A": 1.0}  # answers A whatever A holds
    assert robust["flip_rate"] == 1.0
    assert page["rank"]["uncertainty"]["of"] == 3
    assert all("@shift" not in s["task"] for s in page["scores"])
    html = client.get(f"/model/{ids['biased-a']}").text
    assert 'id="robustness"' in html and "rank interval" in html
    fair = client.get(f"/api/model/{ids['fair']}").json()["insights"]["robustness"]
    assert fair["medqa_4options"]["pred_letters"] != {"A": 1.0}


def test_paired_tests_on_the_compare_page(medboard_home: Path, tmp_path: Path) -> None:
    import_fixture_tasks(medboard_home)
    database = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    a = _evaluated(database, "", "fair")
    b = _evaluated(database, "bias=A", "biased-a")
    client = TestClient(create_app(database))
    data = client.get(f"/api/compare?track=open_medical&ids={a}&ids={b}").json()
    tests = {p["task"]: p for p in data["paired"]}
    assert set(tests) == {t["name"] for t in data["tasks"]}
    medqa = tests["medqa_4options"]
    assert (medqa["a"], medqa["b"]) == (a, b)
    table = medqa["mcnemar"]
    assert (
        table["both_right"] + table["a_only"] + table["b_only"] + table["both_wrong"] == medqa["n"]
    )
    assert medqa["difference"] == pytest.approx(medqa["acc_a"] - medqa["acc_b"])
    assert 'id="paired"' in client.get(f"/compare?track=open_medical&ids={a}&ids={b}").text
