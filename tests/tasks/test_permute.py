import dataclasses
from pathlib import Path

import pytest

from medboard.backends.fake import FakeBackend
from medboard.data.records import read_jsonl
from medboard.runner import run_spec
from medboard.tasks import REGISTRY
from medboard.tasks.base import LETTERS, Task, text_sample
from medboard.tasks.benchmarks.headqa import HEADQA_EN
from medboard.tasks.benchmarks.medqa import MEDQA_4OPTIONS
from medboard.tasks.benchmarks.pubmedqa import PUBMEDQA
from medboard.tasks.permute import (
    NotPermutableError,
    displayed_index,
    original_index,
    permute_sample,
    permuted,
)
from tests.conftest import fixture_records as dataset_records

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tasks"
LETTER_TASKS = [
    t.name for t in REGISTRY.tasks() if not t.not_permutable and t.to_sample is not text_sample
]


def fixture_records(task: Task) -> list[dict]:
    return task.select(dataset_records(task.dataset))


def test_shift_one_by_hand() -> None:
    record = fixture_records(MEDQA_4OPTIONS)[0]  # answer C, Right coronary artery
    sample = permuted(MEDQA_4OPTIONS, 1).to_sample(record)
    assert dict(sample.options) == {
        "A": "Left main coronary artery",
        "B": "Left anterior descending artery",
        "C": "Left circumflex artery",
        "D": "Right coronary artery",
    }
    assert sample.choices == ("A", "B", "C", "D")
    assert sample.target == 3
    assert sample.metadata["shift"] == 1
    assert sample.metadata["original_keys"] == ("D", "A", "B", "C")


def test_name_version_and_run_key_carry_the_shift() -> None:
    task = permuted(MEDQA_4OPTIONS, 2)
    assert (task.name, task.version) == ("medqa_4options@shift2", "1+shift2")
    assert (task.dataset, task.split, task.expected_hash) == (
        MEDQA_4OPTIONS.dataset,
        MEDQA_4OPTIONS.split,
        MEDQA_4OPTIONS.expected_hash,
    )
    backend = FakeBackend()
    keys = {run_spec(t, backend, "h", None).key() for t in (MEDQA_4OPTIONS, task)}
    assert len(keys) == 2


@pytest.mark.parametrize("name", LETTER_TASKS)
def test_every_shift_moves_every_answer_and_keeps_its_text(name: str) -> None:
    task = REGISTRY.task(name)
    for record in fixture_records(task):
        base = task.to_sample(record)
        n = len(base.choices)
        targets = {base.target}
        for shift in range(1, n):
            sample = permuted(task, shift).to_sample(record)
            targets.add(sample.target)
            assert sample.target != base.target
            assert sample.options[LETTERS[sample.target]] == base.options[LETTERS[base.target]]
            assert sorted(sample.options.values()) == sorted(base.options.values())
            assert sample.choices == base.choices
            for i, key in enumerate(sample.metadata["original_keys"]):
                assert sample.options[LETTERS[i]] == base.options[key]
        assert len(targets) == n  # the answer visits every letter once


@pytest.mark.parametrize("name", LETTER_TASKS)
def test_prompt_is_the_original_template_on_the_rotated_options(name: str) -> None:
    task = REGISTRY.task(name)
    shifted = permuted(task, 1)
    for record in fixture_records(task):
        sample = shifted.to_sample(record)
        prompt = shifted.prompt(sample)
        assert prompt == task.description + task.render(sample)
        assert prompt != task.prompt(task.to_sample(record))
        first = sample.options["A"]
        assert f"\nA. {first}\n" in prompt or prompt.startswith(f"A. {first}\n")
        assert shifted.continuations(sample) == task.continuations(task.to_sample(record))


def test_mmlu_keeps_its_subject_and_description() -> None:
    task = REGISTRY.task("mmlu_anatomy")
    shifted = permuted(task, 3)
    assert shifted.subject == "anatomy" and shifted.description == task.description
    records = list(read_jsonl(FIXTURES / "mmlu_medical.jsonl"))
    assert shifted.select(records) == task.select(records)


def test_index_mapping_round_trips() -> None:
    for shift in range(1, 4):
        for i in range(4):
            assert original_index(displayed_index(i, shift, 4), shift, 4) == i


@pytest.mark.parametrize(
    ("task", "reason"),
    [(HEADQA_EN, "option texts.*changes nothing"), (PUBMEDQA, "yes/no/maybe")],
)
def test_text_choice_tasks_are_refused_with_the_reason(task: Task, reason: str) -> None:
    with pytest.raises(
        NotPermutableError, match=f"task '{task.name}' cannot be permuted.*{reason}"
    ):
        permuted(task, 1)


def test_other_non_letter_samples_are_refused_when_built() -> None:
    task = dataclasses.replace(
        PUBMEDQA, to_sample=lambda r: PUBMEDQA.to_sample(r), not_permutable=""
    )
    record = fixture_records(PUBMEDQA)[0]
    with pytest.raises(NotPermutableError, match="not its option letters"):
        permuted(task, 1).to_sample(record)


def test_shifts_that_move_nothing_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        permuted(MEDQA_4OPTIONS, 0)
    sample = MEDQA_4OPTIONS.to_sample(fixture_records(MEDQA_4OPTIONS)[0])
    with pytest.raises(NotPermutableError, match="shift 4 leaves the 4 options"):
        permute_sample(sample, 4)
    assert permute_sample(sample, 5).target == permute_sample(sample, 1).target


def test_with_permutations_adds_copies_and_names_the_tasks_it_skips() -> None:
    from medboard.tasks import REGISTRY
    from medboard.tasks.permute import with_permutations

    tasks = [REGISTRY.task(n) for n in ("medqa_4options", "pubmedqa", "headqa_en")]
    found, skipped = with_permutations(tasks, [1, 2])
    assert [t.name for t in found] == [
        "medqa_4options", "pubmedqa", "headqa_en", "medqa_4options@shift1", "medqa_4options@shift2",
    ]  # fmt: skip
    assert len(skipped) == 2 and "pubmedqa" in skipped[0] and "headqa_en" in skipped[1]
