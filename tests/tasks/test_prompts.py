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
from medboard.tasks import BUILTIN_TASKS, REGISTRY
from tests.conftest import fixture_records

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "tasks"
GOLDEN = HERE / "golden"

TASKS = list(BUILTIN_TASKS)  # a developer's own registered exams have no golden file


def load_case(name: str):
    task = REGISTRY.task(name)
    records = task.select(fixture_records(task.dataset))
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


def _has(text: str, first: str, last: str) -> bool:
    return any(first <= ch <= last for ch in text)


def test_fixtures_of_the_other_languages_exercise_their_scripts() -> None:
    # CJK (Chinese, Japanese kana), Cyrillic and accented Latin go through lm-eval's templates.
    def text(dataset: str) -> str:
        return json.dumps(fixture_records(dataset), ensure_ascii=False)

    assert _has(text("medqa_zh"), "\u4e00", "\u9fff") and _has(
        text("cmmlu_medical"), "\u4e00", "\u9fff"
    )
    assert _has(text("igakuqa"), "\u3040", "\u30ff")  # hiragana and katakana
    assert _has(text("rumeddanet"), "\u0400", "\u04ff")  # Cyrillic
    assert "é" in text("frenchmedmcqa") and "ó" in text("headqa_es")


def test_igakuqa_leaves_out_the_image_items_and_counts_them() -> None:
    records = fixture_records("igakuqa")
    task, everything = REGISTRY.task("igakuqa"), REGISTRY.task("igakuqa_with_images")
    assert [r["id"] for r in task.select(records)] == ["fx-igaku-1", "fx-igaku-3"]
    assert task.excluded(records) == 1 and everything.excluded(records) == 0
    assert len(everything.select(records)) == 3
    sample = task.to_sample(records[2])  # six options: the prompt lists them all, A to F
    assert task.prompt(sample).endswith("F. 44\nAnswer:") and sample.choices[-1] == "F"


def test_every_task_states_its_language_and_license() -> None:
    for task in REGISTRY.tasks():
        assert task.license and len(task.language) == 2, task.name
    restricted = {t.family for t in REGISTRY.tasks() if t.noncommercial}
    assert {"cmmlu", "rumeddanet", "igakuqa"} <= restricted
    assert not {"medqa", "medmcqa", "pubmedqa", "mmlu", "headqa", "careqa"} & restricted


@pytest.mark.parametrize("golden_file", sorted(GOLDEN.glob("*shot.json")), ids=lambda p: p.stem)
def test_fewshot_prompt_matches_lm_eval(golden_file: Path) -> None:
    # lm-eval's first_n sampler: the first k dev examples of the subject, in file order.
    golden = json.loads(golden_file.read_text(encoding="utf-8"))
    task = REGISTRY.task(golden["task"])
    assert task.fewshot_sampler == "first_n"
    pool = task.select(fixture_records(task.dataset, task.fewshot_split or ""))
    shots = [task.to_sample(r) for r in pool[: golden["num_fewshot"]]]
    records = task.select(fixture_records(task.dataset))
    for record, expected in zip(records, golden["samples"], strict=True):
        sample = task.to_sample(record)
        assert task.prompt(sample, shots) == expected["context"], sample.id
        assert list(task.continuations(sample)) == expected["continuations"], sample.id
