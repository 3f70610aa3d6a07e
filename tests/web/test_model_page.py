"""The model page: scores with intervals, per-subject scores, provenance, samples, downloads."""

import csv
import io
import json
import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import MEDQA_N, entry_ids


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
