"""medboard's prompts against lm-eval's, string for string.

The golden files (tests/tasks/golden/<task>.json) hold the context and continuation strings of the
requests lm-eval itself builds for the fixture records, from the reference configs in
bench/lmeval_tasks/ (regenerate with `python bench/make_golden_prompts.py`). These tests need
neither lm-eval nor a model: they compare medboard's rendering with those recorded strings.
"""

import json
from pathlib import Path

import pytest

from medboard.data.records import read_jsonl
from medboard.tasks import REGISTRY

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "tasks"
GOLDEN = HERE / "golden"

TASKS = [t.name for t in REGISTRY.tasks()]


def load_case(name: str):
    task = REGISTRY.task(name)
    records = task.select(list(read_jsonl(FIXTURES / f"{task.dataset}.jsonl")))
    golden = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    return task, records, golden["samples"]


@pytest.mark.parametrize("name", TASKS)
def test_same_records_as_lm_eval(name: str) -> None:
    # Same documents in the same order: MMLU's subject filter keeps what lm-eval keeps.
    _, records, golden = load_case(name)
    assert [str(r["id"]) for r in records] == [g["id"] for g in golden]
    assert golden, "every task needs at least one fixture record"


@pytest.mark.parametrize("name", TASKS)
def test_prompt_matches_lm_eval(name: str) -> None:
    task, records, golden = load_case(name)
    for record, expected in zip(records, golden, strict=True):
        sample = task.to_sample(record)
        assert sample.id == expected["id"]
        assert task.prompt(sample) == expected["context"], sample.id


@pytest.mark.parametrize("name", TASKS)
def test_continuations_and_target_match_lm_eval(name: str) -> None:
    task, records, golden = load_case(name)
    for record, expected in zip(records, golden, strict=True):
        sample = task.to_sample(record)
        assert list(task.continuations(sample)) == expected["continuations"], sample.id
        assert sample.target == expected["gold"], sample.id


def test_fixtures_exercise_the_edge_cases() -> None:
    # Guard the fixtures themselves: the golden tests only prove what the fixtures contain.
    mmlu = list(read_jsonl(FIXTURES / "mmlu_medical.jsonl"))
    assert any(r["question"] != r["question"].strip() for r in mmlu)  # MMLU strips the question
    assert len({r["subject"] for r in mmlu}) == 6
    headqa = list(read_jsonl(FIXTURES / "headqa.jsonl"))
    assert len({len(r["options"]) for r in headqa}) > 1  # 4- and 5-option exams
    assert any(any(not t.isascii() for t in r["options"].values()) for r in headqa)
    pubmedqa = list(read_jsonl(FIXTURES / "pubmedqa.jsonl"))
    assert any("contexts" in r for r in pubmedqa) and any("contexts" not in r for r in pubmedqa)


@pytest.mark.parametrize("golden_file", sorted(GOLDEN.glob("*shot.json")), ids=lambda p: p.stem)
def test_fewshot_prompt_matches_lm_eval(golden_file: Path) -> None:
    # lm-eval's first_n sampler: the first k dev examples of the subject, in file order.
    golden = json.loads(golden_file.read_text(encoding="utf-8"))
    task = REGISTRY.task(golden["task"])
    assert task.fewshot_sampler == "first_n"
    pool = task.select(list(read_jsonl(FIXTURES / f"{task.dataset}_{task.fewshot_split}.jsonl")))
    shots = [task.to_sample(r) for r in pool[: golden["num_fewshot"]]]
    records = task.select(list(read_jsonl(FIXTURES / f"{task.dataset}.jsonl")))
    for record, expected in zip(records, golden["samples"], strict=True):
        sample = task.to_sample(record)
        assert task.prompt(sample, shots) == expected["context"], sample.id
        assert list(task.continuations(sample)) == expected["continuations"], sample.id
