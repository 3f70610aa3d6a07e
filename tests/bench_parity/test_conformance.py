"""bench/conformance.py's report: differences between two backends' sample files."""

import json
import subprocess
import sys
from pathlib import Path

from tests.bench_scripts import BENCH
from tests.bench_scripts import load_bench as load


def write_samples(folder: Path, task: str, rows: list[tuple[str, list[float], int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"samples_{task}.jsonl").open("w") as out:
        for sid, logprobs, gold in rows:
            pred = max(range(len(logprobs)), key=logprobs.__getitem__)
            record = {"id": sid, "logprobs": logprobs, "pred": pred, "pred_norm": pred}
            out.write(json.dumps(record | {"gold": gold, "acc": float(pred == gold)}) + "\n")


def test_report_gives_the_differences_agreement_and_accuracy(tmp_path: Path) -> None:
    conformance = load("conformance")
    write_samples(tmp_path / "a", "t", [("1", [-1.0, -2.0], 0), ("2", [-3.0, -1.0], 1)])
    # b: one choice 0.5 off (flips question 2), another 1e-4 off; a question a does not have
    write_samples(
        tmp_path / "b", "t", [("1", [-1.0001, -2.0], 0), ("2", [-3.0, -3.5], 1), ("3", [0.0], 0)]
    )
    result = conformance.report(tmp_path / "a", tmp_path / "b")
    row = result["tasks"]["t"]
    assert row["questions"] == 2 and row["choices"] == 4
    assert abs(row["max_abs"] - 2.5) < 1e-9
    assert row["over_1e-3"] == 1
    assert row["agree"] == 0.5
    assert (row["acc_a"], row["acc_b"], row["acc_diff_points"]) == (1.0, 0.5, -50.0)
    assert result["total"]["max_acc_diff_points"] == 50.0


def test_compare_reads_two_folders_and_refuses_an_empty_one(tmp_path: Path) -> None:
    write_samples(tmp_path / "a", "t", [("1", [-1.0, -2.0], 0)])
    write_samples(tmp_path / "b", "t", [("1", [-1.0, -2.5], 0)])
    (tmp_path / "empty").mkdir()
    script = [sys.executable, str(BENCH / "conformance.py"), "--compare"]
    done = subprocess.run(
        [*script, str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "| t | 1 | 2 | 5.00e-01 |" in done.stdout
    assert json.loads((tmp_path / "r.json").read_text())["total"]["agree"] == 1.0
    refused = subprocess.run(
        [*script, str(tmp_path / "a"), str(tmp_path / "empty")], capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert f"no samples_*.jsonl in {tmp_path / 'empty'}" in refused.stderr
