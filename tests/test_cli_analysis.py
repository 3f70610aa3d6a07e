"""compare and contamination, as a user runs them (real processes on fixture data)."""

import json
from pathlib import Path

import pytest

from medboard.checks import corpus_texts
from medboard.cli_analysis import compare_outputs
from medboard.errors import DataError
from tests.conftest import import_fixture_tasks
from tests.test_cli import assert_one_line_error, medboard


@pytest.fixture()
def home(medboard_home: Path) -> Path:
    import_fixture_tasks(medboard_home)
    return medboard_home


def _write_output(folder: Path, task: str, correct: list[int]) -> Path:
    folder.mkdir(parents=True)
    records = [
        {"id": f"q{i}", "pred": 0 if ok else 1, "gold": 0, "acc": float(ok)}
        for i, ok in enumerate(correct)
    ]
    (folder / "results.json").write_text(json.dumps({"results": {task: {}}}))
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (folder / f"samples_{task}.jsonl").write_text(lines)
    return folder


def test_compare_counts_discordant_pairs(tmp_path: Path) -> None:
    # A right on 0-11, B right on 0-1 and 12-13: A only 10, B only 2 (exact p = 0.0386)
    a = _write_output(tmp_path / "a", "t", [1] * 12 + [0] * 8)
    b = _write_output(tmp_path / "b", "t", [1, 1] + [0] * 10 + [1, 1] + [0] * 6)
    row = compare_outputs(a, b, n_resamples=500)["tasks"]["t"]
    assert (row["n"], row["acc_a"], row["acc_b"]) == (20, 0.6, 0.2)
    assert (row["mcnemar"]["a_only"], row["mcnemar"]["b_only"]) == (10, 2)
    assert row["mcnemar"]["p_value"] == pytest.approx(0.0386, abs=1e-4)
    assert row["difference"] == pytest.approx(0.4)
    assert row["interval"][0] > 0


def test_compare_cli_and_its_errors(home: Path, tmp_path: Path) -> None:
    a = _write_output(tmp_path / "a", "t", [1, 0, 1, 1])
    b = _write_output(tmp_path / "b", "t", [1, 1, 0, 0])
    result = medboard(home, "compare", str(a), str(b), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    assert "McNemar" in result.stdout
    assert json.loads((tmp_path / "r.json").read_text())["tasks"]["t"]["n"] == 4
    missing = medboard(home, "compare", str(a), str(tmp_path / "nowhere"))
    assert_one_line_error(missing, "has no results.json")
    other = _write_output(tmp_path / "c", "u", [1])
    assert_one_line_error(medboard(home, "compare", str(a), str(other)), "no task with samples")


def test_contamination_flags_items_found_in_the_corpus(home: Path, tmp_path: Path) -> None:
    from medboard.data.store import DataStore
    from medboard.tasks import REGISTRY

    task = REGISTRY.task("medqa_4options")
    record = DataStore().task_data(task, allow_mismatch=True).records[0]
    sample = task.to_sample(record)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        json.dumps({"instruction": "Answer this.", "input": sample.question, "output": "A"})
        + "\n"
        + json.dumps({"instruction": "nothing to see here at all in this line", "output": "B"})
        + "\n"
    )
    out = tmp_path / "report.json"
    result = medboard(
        home, "contamination", str(corpus), "--tasks", "medqa_4options",
        "--allow-data-mismatch", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(out.read_text())["tasks"]["medqa_4options"]
    assert found["flagged"] >= 1 and sample.id in found["examples"]
    assert found["flagged"] < found["items"]


def test_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        list(corpus_texts(tmp_path / "none.jsonl", None))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n[1, 2]\n')
    with pytest.raises(DataError, match="bad.jsonl:2 is not a JSON object"):
        list(corpus_texts(bad, None))
    with pytest.raises(DataError, match="has no field 'body'"):
        list(corpus_texts(bad, "body"))
