"""The multilingual track: one column per benchmark (CMMLU's seven subjects in one), the language
of each column, averages per language, and the board's language filter and license marks."""

import math

import pytest
from fastapi.testclient import TestClient

from medboard.leaderboard.ranking import (
    StoredEntry,
    StoredScore,
    combined,
    rank_entries,
    track_spec,
)
from medboard.results.db import open_database
from medboard.tasks import REGISTRY
from medboard.web.app import create_app

SPEC = track_spec("multilingual_medical")
CMMLU = REGISTRY.members("multilingual_medical", "cmmlu_medical")


def test_one_column_per_benchmark_with_its_language() -> None:
    expected = ("cmmlu_medical", "frenchmedmcqa", "headqa_es", "igakuqa", "medqa_zh", "rumeddanet")
    assert set(expected) <= set(SPEC.tasks) and len(set(SPEC.tasks)) == len(SPEC.tasks)
    assert list(SPEC.tasks) == sorted(SPEC.tasks)  # the modules' order: a new one needs no edit
    assert len(CMMLU) == 7 and all(t.startswith("cmmlu_") for t in CMMLU)
    assert len(SPEC.task_names) == len(SPEC.tasks) + 6  # CMMLU's 7 subjects in one column
    assert SPEC.languages["cmmlu_medical"] == "zh" and SPEC.languages["igakuqa"] == "ja"
    assert {"zh", "fr", "es", "ja", "ru"} <= set(SPEC.language_codes)
    assert track_spec("open_medical").language_codes == ()  # one language: no language averages


def test_a_group_is_the_size_weighted_mean_of_its_subjects() -> None:
    scores = {
        "cmmlu_anatomy": StoredScore(0.5, 0.04, n=100),
        "cmmlu_virology": StoredScore(0.8, 0.02, n=300),
    }
    group = combined(scores)
    assert group is not None and group.n == 400
    assert group.value == pytest.approx((0.5 * 100 + 0.8 * 300) / 400)
    assert group.stderr == pytest.approx(math.sqrt((0.25 * 0.04) ** 2 + (0.75 * 0.02) ** 2))
    assert combined({**scores, "cmmlu_genetics": None}) is None  # a subject missing: no group


def _entry(entry_id: int, value: float, skip: str | None = None) -> StoredEntry:
    scores = {t: StoredScore(value, 0.01, n=100) for t in SPEC.task_names if t != skip}
    return StoredEntry(entry_id=entry_id, model=f"m{entry_id}", scores=scores)


def test_the_average_is_over_benchmarks_and_each_language_has_its_own() -> None:
    entry = _entry(1, 0.4)
    scores = dict(entry.scores)
    scores["medqa_zh"] = StoredScore(0.7, 0.01, n=100)  # zh: (cmmlu 0.4 + medqa_zh 0.7) / 2
    rows = rank_entries(
        [StoredEntry(entry_id=1, model="m", scores=scores), _entry(2, 0.5, skip="cmmlu_virology")],
        SPEC,
    )
    ranked, partial = rows
    columns = len(SPEC.tasks)
    assert ranked.rank == 1
    assert ranked.average == pytest.approx(((columns - 1) * 0.4 + 0.7) / columns)
    assert ranked.scores["cmmlu_medical"] == pytest.approx(0.4)
    assert ranked.scores["avg_zh"] == pytest.approx(0.55)
    assert ranked.scores["avg_ja"] == pytest.approx(0.4)
    assert ranked.scores["cmmlu_anatomy"] == pytest.approx(0.4)  # the subjects stay readable
    # a subject missing: no group score, no language average, not ranked
    assert partial.rank is None and partial.missing == ("cmmlu_virology",)
    assert partial.scores["cmmlu_medical"] is None and partial.scores["avg_zh"] is None


@pytest.fixture
def client(tmp_path) -> TestClient:
    from medboard.results.record import record_entry
    from medboard.results.schema import RunResult, RunSpec, Score

    database = open_database(f"sqlite:///{tmp_path / 'board.db'}")
    results = []
    for i, task in enumerate(SPEC.task_names):
        spec = RunSpec(task=task, task_version="1", protocol="loglik", dataset=task, split="test",
                       data_hash=f"sha256:{task}", model="tiny-ml", model_revision="r",
                       dtype="bfloat16", harness_version="0")  # fmt: skip
        score = {"acc": Score(value=0.3 + i / 100, stderr=0.02)}
        results.append(
            RunResult(
                key=spec.key(),
                spec=spec,
                scores=score,
                n_samples=100,
                prompt_tokens=1000,
                started_at="2026-12-06T10:00:00Z",
                finished_at="2026-12-06T10:05:00Z",
                wall_seconds=300.0,
                data_source="test",
                samples_file="",
            )  # fmt: skip
        )
    identity = {"model": "tiny-ml", "revision": "r", "dtype": "bfloat16"}
    record_entry(database, "multilingual_medical", results, identity, {}, source="runs/x")
    return TestClient(create_app(database))


def test_the_board_filters_by_language_and_marks_the_licenses(client: TestClient) -> None:
    data = client.get("/api/leaderboard/multilingual_medical").json()
    assert data["rows"][0]["rank"] == 1
    assert {t["name"] for t in data["tasks"]} == set(SPEC.tasks)
    assert data["terms"]["cmmlu_medical"] == {
        "language": "zh", "license": "CC BY-NC-SA 4.0", "noncommercial": True,
    }  # fmt: skip
    assert data["terms"]["medqa_zh"]["noncommercial"] is False
    zh = client.get("/api/leaderboard/multilingual_medical?language=zh").json()
    shown = [c for c in zh["columns"] if c in SPEC.tasks or c.startswith("avg_")]
    assert shown == ["cmmlu_medical", "medqa_zh", "avg_zh"]
    page = client.get("/leaderboard/multilingual_medical?language=zh").text
    header = page[page.index('<table class="board"') : page.index("</thead>")]
    assert "CMMLU medical (zh)" in header and "Average (zh)" in header
    assert "IgakuQA" not in header and "RuMedDaNet" not in header
    assert 'title="data license: CC BY-NC-SA 4.0">NC</abbr>' in page
    odd = client.get("/api/leaderboard/multilingual_medical?language=xx").json()
    assert any("language 'xx'" in w for w in odd["warnings"])


def test_the_model_page_groups_the_scores_by_language(client: TestClient) -> None:
    entry_id = client.get("/api/leaderboard/multilingual_medical").json()["rows"][0]["entry_id"]
    data = client.get(f"/api/model/{entry_id}").json()
    languages = [s["language"] for s in data["scores"]]
    assert languages == sorted(languages, key=languages.index)  # each language in one block
    assert set(languages) == set(SPEC.languages.values())
    marked = {s["task"] for s in data["scores"] if s["noncommercial"]}
    assert {*CMMLU, "igakuqa", "rumeddanet"} <= marked and "medqa_zh" not in marked
    page = client.get(f"/model/{entry_id}").text
    assert "Language: ja" in page and "non-commercial" in page


def test_a_sample_download_of_a_noncommercial_task_carries_its_license(tmp_path) -> None:
    import json

    from medboard.web.model_data import download_license, samples_csv, samples_jsonl

    assert download_license("medqa_zh") is None  # MIT: nothing added
    license = download_license("cmmlu_anatomy")
    assert license is not None and license.startswith("CC BY-NC-SA 4.0 (non-commercial")
    assert download_license("igakuqa@shift1").startswith("none stated")  # a permuted copy too
    record = {"id": "q1", "choices": [" A", " B"], "logprobs": [-1.0, -2.0], "target": 0,
              "pred": 0, "acc": 1.0}  # fmt: skip
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    lines = b"".join(samples_jsonl(str(path), license)).decode().splitlines()
    assert [json.loads(line)["license"] for line in lines] == [license]
    assert b"".join(samples_jsonl(str(path), None)) == path.read_bytes()
    table = samples_csv((record,), license).splitlines()
    assert table[0].endswith(",license") and table[1].endswith(license)
    assert "license" not in samples_csv((record,))


def test_eval_prints_the_mean_over_benchmarks_as_the_board_averages() -> None:
    from types import SimpleNamespace

    from medboard.cli_eval import benchmark_means

    def result(task: str, n: int, acc: float) -> SimpleNamespace:
        return SimpleNamespace(
            spec=SimpleNamespace(task=task), n_samples=n, scores={"acc": SimpleNamespace(value=acc)}
        )

    found = benchmark_means(
        [
            result("cmmlu_anatomy", 100, 0.5),
            result("cmmlu_virology", 300, 0.8),
            result("medqa_zh", 50, 0.3),
        ]  # fmt: skip
    )
    assert found == pytest.approx({"cmmlu_medical": 0.725, "medqa_zh": 0.3})
