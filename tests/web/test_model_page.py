"""The model page: scores with intervals, per-subject scores, provenance, samples, downloads."""

import csv
import io
import json
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medboard.results.db import Database
from medboard.web.app import create_app
from tests.web.conftest import MEDQA_N, OPEN_TASKS, entry_ids


def test_scores_with_95_percent_intervals(client: TestClient, evaluated_id: int) -> None:
    data = client.get(f"/api/model/{evaluated_id}").json()
    assert data["model"]["name"] == "tiny-eval" and data["entry"]["origin"] == "evaluated"
    scores = {s["task"]: s["metrics"] for s in data["scores"]}
    assert [s["task"] for s in data["scores"]][:3] == ["medqa_4options", "medmcqa", "pubmedqa"]
    medqa = scores["medqa_4options"]["acc"]
    assert medqa["value"] == pytest.approx(1 / 3) and medqa["n"] == MEDQA_N
    # with the questions at hand, the interval is a bootstrap over them
    bootstrap = data["insights"]["intervals"]["medqa_4options"]
    assert medqa["interval_method"] == "bootstrap"
    assert medqa["interval"] == [bootstrap["low"], bootstrap["high"]]
    assert bootstrap["low"] < 1 / 3 < bootstrap["high"] and bootstrap["point"] == 1 / 3
    half_width = 1.96 * medqa["stderr"]  # about the normal interval's width
    assert bootstrap["high"] - bootstrap["low"] == pytest.approx(2 * half_width, rel=0.15)
    assert scores["pubmedqa"]["acc_norm"]["value"] == pytest.approx(0.5)
    # without them (no samples file), value +- 1.96 stderr
    assert "interval_method" not in scores["pubmedqa"]["acc"]
    assert scores["pubmedqa"]["acc"]["interval"] == pytest.approx([0.55 - 0.0392, 0.55 + 0.0392])
    assert data["rank"] == {
        "rank": 4,
        "of": 5,
        "ranking": "loglik",
        "average": pytest.approx((1 / 3 + 0.5 + 3.85) / 9),
        "uncertainty": None,  # the only entry with per-question records: nothing to compare
    }
    html = client.get(f"/model/{evaluated_id}").text
    assert "rank <strong>4</strong> of 5" in html
    low, high = (100 * x for x in medqa["interval"])
    assert f"{low:.1f}–{high:.1f}" in html
    assert "<svg" in html and "Accuracy per task with 95% intervals" in html


def test_per_subject_scores(client: TestClient, evaluated_id: int) -> None:
    data = client.get(f"/api/model/{evaluated_id}").json()
    assert list(data["subjects"]) == ["medmcqa"]  # medqa samples carry no subject
    subjects = {s["subject"]: s for s in data["subjects"]["medmcqa"]}
    assert {k: (v["n"], v["acc"]) for k, v in subjects.items()} == {
        "Anatomy": (4, 1.0),
        "Pharmacology": (4, 0.5),
        "Surgery": (4, 0.0),
    }
    assert subjects["Pharmacology"]["stderr"] == pytest.approx(math.sqrt(0.5 * 0.5 / 3))
    assert subjects["Pharmacology"]["interval"] == [0.0, 1.0]  # 0.5 +- 0.57, clipped to 0-1
    assert "Per subject" in client.get(f"/model/{evaluated_id}").text


def test_provenance(client: TestClient, evaluated_id: int) -> None:
    data = client.get(f"/api/model/{evaluated_id}").json()
    assert data["model"]["revision"] == "rev123" and data["model"]["dtype"] == "bfloat16"
    assert data["model"]["license"] == "apache-2.0"
    runs = {r["task"]: r for r in data["runs"]}
    assert len(runs) == 9
    medqa = runs["medqa_4options"]
    assert medqa["data_hash"] == "sha256:medqa_4optionsdata"
    assert (medqa["harness"], medqa["harness_version"]) == ("medboard", "0.1.0")
    assert (medqa["model_revision"], medqa["dtype"]) == ("rev123", "bfloat16")
    assert medqa["has_samples"] is True and runs["pubmedqa"]["has_samples"] is False
    html = client.get(f"/model/{evaluated_id}").text
    assert "Provenance" in html and "sha256:medqa_4op" in html and "medboard 0.1.0" in html


def test_published_entry_page(client: TestClient, database) -> None:
    entry_id = entry_ids(database)["alpha-7b"]
    data = client.get(f"/api/model/{entry_id}").json()
    assert data["entry"]["origin"] == "published" and data["entry"]["source"] == "open.csv line 2"
    assert data["runs"] == [] and data["samples"]["rows"] == [] and data["downloads"] == {}
    assert data["rank"]["rank"] == 1
    html = client.get(f"/model/{entry_id}").text
    assert "not evaluated here" in html and "No samples are kept for this entry" in html
    flower = entry_ids(database)["ZeroOne.AI / Llama3.1-Aloe-Beta-8B"]
    text = client.get(f"/model/{flower}").text
    assert "Communication cost" in text and "2.0 GB" in text


def test_sample_table_and_pagination(client: TestClient, evaluated_id: int) -> None:
    first = client.get(f"/api/model/{evaluated_id}").json()["samples"]
    assert first["task"] == "medqa_4options" and first["tasks"] == ["medqa_4options", "medmcqa"]
    assert (first["total"], first["pages"], len(first["rows"])) == (MEDQA_N, 2, 20)
    row = first["rows"][1]  # question 1: gold 1, predicted 2
    assert (row["id"], row["pred"], row["gold"], row["correct"]) == ("medqa-1", 2, 1, False)
    probs = [c["prob"] for c in row["choices"]]
    top = 1 / (1 + 3 * math.exp(-3))
    assert probs == pytest.approx([(1 - top) / 3, (1 - top) / 3, top, (1 - top) / 3])
    assert row["choices"][2]["text"] == "option C of question 1"
    second = client.get(f"/api/model/{evaluated_id}?page=2").json()["samples"]
    assert [r["index"] for r in second["rows"]] == list(range(20, 30))
    small = client.get(f"/api/model/{evaluated_id}?per_page=7&page=5").json()["samples"]
    assert small["pages"] == 5 and [r["id"] for r in small["rows"]] == ["medqa-28", "medqa-29"]
    wrong = client.get(f"/api/model/{evaluated_id}?only=wrong").json()["samples"]
    assert wrong["total"] == 20 and not any(r["correct"] for r in wrong["rows"])
    html = client.get(f"/model/{evaluated_id}?page=2").text
    section = html[html.index('id="samples"') :]
    assert section.count("<tr class=") == 10 and "page 2 of 2" in section
    assert "medqa-29" in section and f"{100 * top:.1f}%" in section
    assert 'rel="prev"' in section and 'rel="next"' not in section


def test_samples_with_subjects(client: TestClient, evaluated_id: int) -> None:
    data = client.get(f"/api/model/{evaluated_id}?task=medmcqa").json()["samples"]
    assert data["task"] == "medmcqa" and data["total"] == 12
    assert [r["subject"] for r in data["rows"]][::4] == ["Anatomy", "Pharmacology", "Surgery"]
    html = client.get(f"/model/{evaluated_id}?task=medmcqa").text
    assert "<th>Subject</th>" in html


def test_downloads(client: TestClient, evaluated_id: int, tmp_path: Path) -> None:
    data = client.get(f"/api/model/{evaluated_id}").json()
    links = data["downloads"]["medqa_4options"]
    result = client.get(links["result"])
    assert result.status_code == 200
    assert result.json()["spec"]["task"] == "medqa_4options"
    assert result.json()["scores"]["acc"]["value"] == pytest.approx(1 / 3)
    samples = client.get(links["samples"])
    assert samples.status_code == 200
    assert samples.content == (tmp_path / "runs" / "samples_medqa_4options.jsonl").read_bytes()
    assert json.loads(samples.text.splitlines()[0])["id"] == "medqa-0"
    table = list(csv.DictReader(io.StringIO(client.get(links["samples_csv"]).text)))
    assert len(table) == MEDQA_N
    assert (table[1]["id"], table[1]["pred"], table[1]["gold"], table[1]["correct"]) == (
        "medqa-1", "2", "1", "0",
    )  # fmt: skip
    assert table[1]["prob_2"] == f"{100 / (1 + 3 * math.exp(-3)):.2f}"
    assert data["downloads"]["pubmedqa"]["samples"] is None
    html = client.get(f"/model/{evaluated_id}").text
    assert f'href="{links["samples"]}"' in html and f'href="{links["result"]}"' in html


def test_missing_entries_runs_and_files_are_404(client: TestClient, evaluated_id: int) -> None:
    for url in (
        "/model/9999",
        "/api/model/9999",
        "/model/abc",
        f"/model/{evaluated_id}/runs/nope/result.json",
        f"/model/{evaluated_id}/runs/pubmedqa/samples.jsonl",  # a run without a samples file
        f"/model/{evaluated_id}/runs/pubmedqa/samples.csv",
        f"/model/{evaluated_id}?task=nope",
        "/model/9999/runs/medqa_4options/result.json",
        "/model/99999999999999999999",
        "/api/model/99999999999999999999",
        "/api/model/0",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
    assert client.get("/api/model/9999").json() == {"detail": "no entry 9999"}
    assert "no entry 9999" in client.get("/model/9999").text
    assert "no run of task &#39;nope&#39;" in client.get(f"/model/{evaluated_id}?task=nope").text


def test_calibration_from_choice_probabilities(client: TestClient, evaluated_id: int) -> None:
    data = client.get(f"/api/model/{evaluated_id}").json()
    found = data["insights"]["calibration"]["medqa_4options"]
    # every medqa question: -1 on the chosen choice, -4 on the three others; right 1 in 3
    top = math.exp(-1) / (math.exp(-1) + 3 * math.exp(-4))
    low = math.exp(-4) / (math.exp(-1) + 3 * math.exp(-4))
    assert found["n"] == MEDQA_N and found["mean_confidence"] == pytest.approx(top)
    assert found["ece"] == pytest.approx(top - 1 / 3)
    right = (1 - top) ** 2 + 3 * low**2
    wrong = top**2 + (1 - low) ** 2 + 2 * low**2
    assert found["brier"] == pytest.approx(right / 3 + 2 * wrong / 3)
    assert set(data["insights"]["calibration"]) == {"medqa_4options", "medmcqa"}
    assert data["insights"]["average"] is None  # 7 tasks have no samples file
    html = client.get(f"/model/{evaluated_id}").text
    assert 'id="calibration"' in html and f"{top - 1 / 3:.4f}" in html


def _medqa_store(home: Path) -> str:
    """The 30 medqa questions of the samples file in a data store under `home`; their hash."""
    from medboard.data.records import content_hash
    from medboard.data.store import DataStore

    records = [
        {
            "id": f"medqa-{i}",
            "question": f"Which drug treats condition {i}?",
            "options": {key: f"drug {key}{i}" for key in "ABCD"},
            "answer": "ABCD"[i % 4],
        }
        for i in range(MEDQA_N)
    ]
    DataStore(home / "data").put("medqa", "test", records, "test", "jsonl")
    return content_hash(records)


def _set_run_data_hash(database, task: str, digest: str) -> None:
    from sqlalchemy import update

    from medboard.results.db import Run

    with database.session() as session:
        session.execute(update(Run).where(Run.task == task).values(data_hash=digest))


def test_samples_show_question_and_option_texts(
    database, evaluated_id: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDBOARD_HOME", str(tmp_path / "home"))
    _set_run_data_hash(database, "medqa_4options", _medqa_store(tmp_path / "home"))
    client = TestClient(create_app(database))
    samples = client.get(f"/api/model/{evaluated_id}?page=2").json()["samples"]
    assert samples["text"] == {"shown": True, "note": "MedQA (Jin et al.), MIT license"}
    row = samples["rows"][1]  # question 21
    assert row["id"] == "medqa-21" and row["question"] == "Which drug treats condition 21?"
    assert [c["option"] for c in row["choices"]] == [f"drug {k}21" for k in "ABCD"]
    html = client.get(f"/model/{evaluated_id}?page=2").text
    section = html[html.index('id="samples"') :]
    assert "<th>Question</th>" in section and "Which drug treats condition 21?" in section
    assert "drug C21" in section and "MedQA (Jin et al.), MIT license" in section
    assert "condition 19?" not in section  # only the rows shown


def test_no_texts_where_the_license_or_the_data_says_no(
    database, evaluated_id: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medboard.web import sample_text

    monkeypatch.setenv("MEDBOARD_HOME", str(tmp_path / "home"))
    digest = _medqa_store(tmp_path / "home")
    # the store holds other data than the run evaluated (the fixture's made-up hash): no text
    client = TestClient(create_app(database))
    samples = client.get(f"/api/model/{evaluated_id}").json()["samples"]
    assert samples["text"]["shown"] is False and "not the data this run" in samples["text"]["note"]
    assert all(r["question"] is None for r in samples["rows"])
    assert all(c["option"] is None for r in samples["rows"] for c in r["choices"])
    html = client.get(f"/model/{evaluated_id}").text
    assert "<th>Question</th>" not in html and "Question texts are not shown" in html
    # the right data, but a license that forbids showing it
    _set_run_data_hash(database, "medqa_4options", digest)
    terms = sample_text.DatasetTerms("CC BY-NC 4.0", False, "its license is non-commercial")
    monkeypatch.setattr(sample_text, "terms_of", lambda task: terms)
    samples = TestClient(create_app(database)).get(f"/api/model/{evaluated_id}").json()["samples"]
    assert samples["text"] == {
        "shown": False,
        "note": "medqa: its license is non-commercial (CC BY-NC 4.0)",
    }
    assert all(r["question"] is None for r in samples["rows"])
    # every built-in task's module decides: permissive licenses shown with their source named
    from medboard.tasks import BUILTIN_TASKS, REGISTRY

    monkeypatch.undo()
    for name in BUILTIN_TASKS:
        task = REGISTRY.task(name)
        decided = sample_text.terms_of(task)
        assert decided.show_text is not task.noncommercial, name
        assert not decided.show_text or task.attribution in decided.note, name


def test_submission_metadata_is_shown(database, evaluated_id: int) -> None:
    from sqlalchemy import update

    from medboard.results.db import Entry

    extra = {"weight_type": "adapter", "description": "A <b>LoRA</b> on clinical notes"}
    with database.session() as session:
        session.execute(update(Entry).where(Entry.id == evaluated_id).values(extra=extra))
    client = TestClient(create_app(database))
    data = client.get(f"/api/model/{evaluated_id}").json()
    assert data["model"]["model_type"] == "instruct" and data["entry"]["extra"] == extra
    html = client.get(f"/model/{evaluated_id}").text
    assert "Type <strong>instruct</strong> · weights <strong>adapter</strong>" in html
    assert "<dt>Weight type</dt><dd>adapter</dd>" in html
    assert "A &lt;b&gt;LoRA&lt;/b&gt; on clinical notes" in html  # escaped
    assert "<dt>weight_type</dt>" not in html  # not repeated among the other extras


def _published_board(path: Path, count: int) -> Path:
    tasks = ",".join(OPEN_TASKS)
    lines = [f"model,model_type,parameters,dtype,{tasks}"]
    for i in range(count):
        scores = ",".join(f"{40 + (i * 7 + k) % 50}.0" for k in range(len(OPEN_TASKS)))
        lines.append(f"bulk-{i}-7b,instruct,7000000000,bfloat16,{scores}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _queries(database, client: TestClient, url: str) -> int:
    from sqlalchemy import event

    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    return len(statements)


def test_model_page_queries_do_not_grow_with_the_board(
    database, evaluated_id: int, tmp_path: Path
) -> None:
    from medboard.leaderboard.published import import_published

    def cold_and_warm() -> tuple[int, int]:
        """Queries of a first model page on a new server, then of another entry's page."""
        client = TestClient(create_app(database))
        client.app.state.cache.check_seconds = 3600.0  # no fingerprint check between requests
        first = _queries(database, client, f"/model/{evaluated_id}?task=medmcqa")
        other = entry_ids(database)["alpha-7b"]
        return first, _queries(database, client, f"/api/model/{other}")

    small = cold_and_warm()
    import_published(database, _published_board(tmp_path / "bulk.csv", 60), track="open_medical")
    assert len(entry_ids(database)) > 60
    large = cold_and_warm()
    assert large == small  # the same queries whatever the number of entries
    assert large[1] <= 4  # a model page reads its entry, scores and runs; the ranks are cached


def test_texts_of_a_real_run_and_of_its_permuted_copy(medboard_home: Path, tmp_path: Path) -> None:
    from medboard.backends.fake import FakeBackend
    from medboard.data.store import DataStore
    from medboard.results.db import open_database
    from medboard.results.record import record_entry
    from medboard.runner import EvalOptions, evaluate
    from medboard.tasks import REGISTRY
    from medboard.tasks.permute import permuted
    from tests.conftest import import_fixture_tasks

    import_fixture_tasks(medboard_home)
    medqa = REGISTRY.task("medqa_4options")
    backend = FakeBackend("")
    options = EvalOptions(allow_data_mismatch=True)  # the fixture is a few questions
    results = evaluate([medqa, permuted(medqa, 1)], backend, options=options)
    database = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    entry_id = record_entry(database, "open_medical", results, backend.identity(), {"name": "f"})
    records = {r["id"]: r for r in DataStore(medboard_home / "data").load("medqa", "test")}
    client = TestClient(create_app(database))
    for task, shift in (("medqa_4options", 0), ("medqa_4options@shift1", 1)):
        samples = client.get(f"/api/model/{entry_id}", params={"task": task}).json()["samples"]
        assert samples["task"] == task and samples["text"]["shown"] is True
        for row in samples["rows"]:
            record = records[row["id"]]
            texts = list(record["options"].values())
            n = len(texts)
            assert row["question"] == record["question"]
            assert [c["text"] for c in row["choices"]] == list(record["options"])  # the letters
            # shown as the model saw them: rotated by `shift` in the permuted copy
            assert [c["option"] for c in row["choices"]] == [
                texts[(i - shift) % n] for i in range(n)
            ]


def test_a_run_of_one_question_downloads_with_no_standard_error(
    database: Database, medboard_home: Path
) -> None:
    """Its standard error is nan, which JSON cannot hold: the result download answered 500."""
    from medboard.backends import create_backend
    from medboard.results.record import record_entry
    from medboard.runner import EvalOptions, evaluate
    from medboard.tasks import REGISTRY
    from tests.conftest import import_fixture_tasks

    import_fixture_tasks(medboard_home)
    backend = create_backend("fake")
    options = EvalOptions(limit=1, allow_data_mismatch=True)
    results = evaluate(REGISTRY.resolve("flowertune_medical", None), backend, options=options)
    entry_id = record_entry(database, "flowertune_medical", results, backend.identity())
    client = TestClient(create_app(database))
    got = client.get(f"/model/{entry_id}/runs/careqa_en/result.json")
    assert got.status_code == 200, got.text
    assert got.json()["scores"]["acc"]["stderr"] is None and got.json()["n_samples"] == 1
    assert client.get(f"/model/{entry_id}").status_code == 200
    assert client.get(f"/api/model/{entry_id}").status_code == 200
