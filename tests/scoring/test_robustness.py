"""Robustness on real runs: the original task and its permuted copies, through evaluate()."""

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from medboard.backends.base import ChoiceRequest, ChoiceResult
from medboard.backends.fake import FakeBackend
from medboard.data.store import DataStore
from medboard.results.store import RunStore
from medboard.runner import EvalOptions, evaluate
from medboard.scoring.robustness import robustness
from medboard.tasks.benchmarks.medqa import MEDQA_4OPTIONS
from medboard.tasks.permute import permuted

GOLD = "AAAAAABC"  # the letter-biased model looks good on the original order
# What the content-faithful model believes, per question: the gold text for six, a wrong one for
# the last two. It chooses that text wherever it is shown.
BELIEVED = {f"q{i}": f"q{i} option {GOLD[i]}" for i in range(6)} | {
    "q6": "q6 option D",
    "q7": "q7 option A",
}


def records() -> list[dict]:
    return [
        {
            "id": f"q{i}",
            "question": f"Question number {i}?",
            "options": {letter: f"q{i} option {letter}" for letter in "ABCD"},
            "answer": gold,
        }
        for i, gold in enumerate(GOLD)
    ]


class ContentModel(FakeBackend):
    """Reads the options off the prompt and picks the letter showing the text it believes."""

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> list[ChoiceResult]:
        results = []
        for request in requests:
            shown = dict(re.findall(r"^([A-D])\. (.*)$", request.context, flags=re.MULTILINE))
            believed = set(BELIEVED.values())
            scores = tuple(
                0.0 if shown[c.strip()] in believed else -5.0 for c in request.continuations
            )
            results.append(ChoiceResult(scores, tuple(s == 0.0 for s in scores), (1,) * 4, 10))
        return results


def run(backend: FakeBackend, tmp_path: Path) -> tuple[list[dict], dict[int, list[dict]]]:
    data = DataStore(tmp_path / "data")
    data.put("medqa", "test", records(), "test", "jsonl")
    tasks = [MEDQA_4OPTIONS] + [permuted(MEDQA_4OPTIONS, s) for s in (1, 2, 3)]
    results = evaluate(
        tasks,
        backend,
        data=data,
        runs=RunStore(tmp_path / "runs"),
        options=EvalOptions(allow_data_mismatch=True),
    )
    loaded = [
        [json.loads(line) for line in Path(r.samples_file).read_text().splitlines()]
        for r in results
    ]
    return loaded[0], {1: loaded[1], 2: loaded[2], 3: loaded[3]}


def test_a_letter_biased_model_drops_and_flips_everything(tmp_path: Path) -> None:
    original, by_shift = run(FakeBackend("bias=A"), tmp_path)
    result = robustness(original, by_shift)
    assert result.n == 8
    assert result.accuracy == 6 / 8
    # Under shift s an answer shown at A was at (0 - s) mod 4: D, C, B -> 0, 1 (q7), 1 (q6) of 8.
    assert dict(result.accuracy_by_shift) == {1: 0.0, 2: 1 / 8, 3: 1 / 8}
    assert result.mean_permuted_accuracy == pytest.approx(1 / 12)
    assert result.flip_rate == 1.0
    assert result.flipped_ids == tuple(f"q{i}" for i in range(8))
    assert dict(result.pred_letters) == {"A": 1.0}
    assert dict(result.gold_letters) == dict.fromkeys(
        "ABCD", 0.25
    )  # every gold visits every letter


def test_a_content_faithful_model_keeps_its_accuracy_and_flips_nothing(tmp_path: Path) -> None:
    original, by_shift = run(ContentModel(), tmp_path)
    result = robustness(original, by_shift)
    assert result.accuracy == 6 / 8
    assert dict(result.accuracy_by_shift) == dict.fromkeys((1, 2, 3), 6 / 8)
    assert result.mean_permuted_accuracy == 6 / 8
    assert result.flip_rate == 0.0 and result.flipped_ids == ()
    assert dict(result.pred_letters) == dict.fromkeys("ABCD", 0.25)  # no positional bias


def record(key: str, pred: int, gold: int) -> dict:
    return {"id": key, "choices": ["A", "B", "C", "D"], "pred": pred, "gold": gold}


def test_flip_rate_counts_a_question_once_whatever_the_number_of_shifts() -> None:
    original = [record("x", 0, 0), record("y", 1, 2)]
    # x: keeps its option under shift 1 (shown at B), changes under shift 2; y: consistent
    by_shift = {
        1: [record("x", 1, 1), record("y", 2, 3)],
        2: [record("x", 0, 2), record("y", 3, 0)],
    }
    result = robustness(original, by_shift)
    assert result.flip_rate == 0.5 and result.flipped_ids == ("x",)
    assert dict(result.accuracy_by_shift) == {1: 0.5, 2: 0.0}


def test_mismatched_records_are_refused() -> None:
    original = [record("x", 0, 0)]
    with pytest.raises(ValueError, match="not on the original questions.*y"):
        robustness(original, {1: [record("y", 0, 1)]})
    with pytest.raises(ValueError, match="gold at 0 under shift 2, expected 2"):
        robustness(original, {2: [record("x", 0, 0)]})
    with pytest.raises(ValueError, match="no permuted records"):
        robustness(original, {})
    with pytest.raises(ValueError, match="no rotation"):
        robustness(original, {4: [record("x", 0, 0)]})
