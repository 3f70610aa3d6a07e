"""bench/spread.py: the reference's band across batch sizes and medboard's place in it."""

import sys

import pytest

from tests.bench_scripts import load_bench as load


def make_run(tool: str, answers: list[int], task: str = "mmlu_anatomy"):
    outputs = sys.modules["parity_outputs"]
    samples = {}
    for i, answer in enumerate(answers):
        logprobs = [-2.0, -2.0, -2.0, -2.0]
        logprobs[answer] = -1.0
        samples[f"q{i}"] = outputs.Sample(
            id=f"q{i}", logprobs=logprobs, gold=0, acc=float(answer == 0)
        )
    run = outputs.Run(tool=tool, folder=f"/{tool}")
    run.tasks[task] = outputs.TaskRun(task=task, samples=samples)
    return run


def test_band_disagreements_and_distance_outside() -> None:
    spread = load("spread")
    references = {"1": make_run("lm-eval", [0, 0, 1, 1]), "8": make_run("lm-eval", [0, 0, 0, 1])}
    (row,) = spread.spread(references, make_run("medboard", [0, 1, 1, 1]), ["mmlu_anatomy"])
    assert row.reference == {"1": 50.0, "8": 75.0}
    assert (row.low, row.high) == (50.0, 75.0)
    assert row.reference_disagreements == (1, 1)
    assert row.medboard == 25.0
    assert row.medboard_disagreements == (1, 2)  # against b1, against b8
    assert row.outside_points == 25.0
    table = spread.render([row])
    assert "| mmlu_anatomy | 4 | 50.00 | 75.00 | 25.00 | 1 | 25.00 | 1-2 | 25.00 |" in table


def test_inside_the_band_is_zero_and_missing_tasks_are_skipped() -> None:
    spread = load("spread")
    references = {"1": make_run("lm-eval", [0, 0, 1, 1]), "8": make_run("lm-eval", [0, 0, 0, 1])}
    rows = spread.spread(references, make_run("medboard", [0, 1, 0, 0]), ["mmlu_anatomy", "x"])
    assert [r.task for r in rows] == ["mmlu_anatomy"]
    assert rows[0].medboard == 75.0 and rows[0].outside_points == 0.0


def test_needs_two_batch_sizes() -> None:
    spread = load("spread")
    with pytest.raises(SystemExit, match="two batch sizes"):
        spread.spread({"8": make_run("lm-eval", [0])}, None, ["mmlu_anatomy"])
    with pytest.raises(SystemExit):
        spread.parse_args(["--model", "m", "--work", "w", "--ref-batch", "8,8"])
