"""The task registry: suites, name resolution for --suite/--tasks, and errors that help."""

import dataclasses
import re

import pytest

from medboard.errors import MedboardError
from medboard.tasks import REGISTRY, Registry, UnknownTaskError

OPEN_MEDICAL = (
    "medqa_4options",
    "medmcqa",
    "pubmedqa",
    "mmlu_anatomy",
    "mmlu_clinical_knowledge",
    "mmlu_college_biology",
    "mmlu_college_medicine",
    "mmlu_medical_genetics",
    "mmlu_professional_medicine",
)
FLOWERTUNE_MEDICAL = ("pubmedqa", "medmcqa", "medqa_4options", "careqa_en")


def names(tasks) -> list[str]:
    return [t.name for t in tasks]


def test_suites() -> None:
    assert REGISTRY.suite("open_medical") == OPEN_MEDICAL
    assert REGISTRY.suite("flowertune_medical") == FLOWERTUNE_MEDICAL
    # careqa_en and headqa_en are tasks, outside the Open Medical-LLM 9
    assert "careqa_en" not in REGISTRY.suite("open_medical")
    assert "headqa_en" not in REGISTRY.suite("open_medical")


def test_every_suite_task_is_registered() -> None:
    registered = {t.name for t in REGISTRY.tasks()}
    for suite, members in REGISTRY.suites().items():
        assert set(members) <= registered, suite
    assert {*OPEN_MEDICAL, "careqa_en", "headqa_en"} <= registered


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UnknownTaskError) as err:
        REGISTRY.task("medqa")
    message = str(err.value)
    assert "'medqa'" in message
    for known in (*OPEN_MEDICAL, "careqa_en", "headqa_en"):
        assert known in message
    assert isinstance(err.value, MedboardError)  # the CLI prints it without a traceback


def test_unknown_suite_names_the_known_ones() -> None:
    with pytest.raises(UnknownTaskError) as err:
        REGISTRY.suite("open_llm")
    assert "'open_llm'" in str(err.value)
    assert "open_medical" in str(err.value) and "flowertune_medical" in str(err.value)


def test_resolve_suite() -> None:
    assert names(REGISTRY.resolve("open_medical", None)) == list(OPEN_MEDICAL)
    assert names(REGISTRY.resolve("flowertune_medical", None)) == list(FLOWERTUNE_MEDICAL)


def test_resolve_tasks_keeps_order_drops_blanks_and_duplicates() -> None:
    resolved = REGISTRY.resolve(None, " pubmedqa, ,medqa_4options,pubmedqa,")
    assert names(resolved) == ["pubmedqa", "medqa_4options"]


def test_resolve_suite_name_inside_tasks_expands() -> None:
    resolved = REGISTRY.resolve(None, "flowertune_medical,headqa_en")
    assert names(resolved) == [*FLOWERTUNE_MEDICAL, "headqa_en"]


def test_resolve_tasks_within_suite_is_a_subset() -> None:
    resolved = REGISTRY.resolve("flowertune_medical", "careqa_en,pubmedqa")
    assert names(resolved) == ["careqa_en", "pubmedqa"]


def test_resolve_task_outside_suite_fails() -> None:
    with pytest.raises(
        UnknownTaskError, match="'mmlu_anatomy' is not in suite 'flowertune_medical'"
    ):
        REGISTRY.resolve("flowertune_medical", "pubmedqa,mmlu_anatomy")


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("medqa", "medqa_4options"),  # a dataset's name: its tasks
        ("medqa_5options", "medqa_4options"),  # a near miss
        ("pubmed_qa", "pubmedqa"),
    ],
)
def test_an_unknown_task_names_the_tasks_it_may_mean(name: str, meant: str) -> None:
    said = re.escape(f"unknown task '{name}'; did you mean {meant}? (known tasks: ")
    with pytest.raises(UnknownTaskError, match=said):
        REGISTRY.task(name)
    with pytest.raises(UnknownTaskError, match=r"unknown task 'zzz' \(known tasks: "):
        REGISTRY.task("zzz")  # nothing near: the list alone


def test_resolve_unknown_task_within_suite_lists_known_tasks() -> None:
    # An unknown name fails as unknown (with the task list), not as "outside the suite".
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'.*known tasks: .*careqa_en"):
        REGISTRY.resolve("flowertune_medical", "nope")


def test_resolve_unknown_names() -> None:
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'"):
        REGISTRY.resolve(None, "pubmedqa,nope")
    with pytest.raises(UnknownTaskError, match="unknown suite 'nope'"):
        REGISTRY.resolve("nope", None)


@pytest.mark.parametrize("tasks", [None, "", " , "])
def test_resolve_nothing_asks_for_a_suite_or_tasks(tasks: str | None) -> None:
    with pytest.raises(UnknownTaskError, match="no task given"):
        REGISTRY.resolve(None, tasks)


def test_name_collisions_raise() -> None:
    task = REGISTRY.task("pubmedqa")
    registry = Registry()
    registry.add(task)
    with pytest.raises(ValueError, match="'pubmedqa' is already registered"):
        registry.add(task)
    # a suite may not shadow a task, nor a task a suite
    with pytest.raises(ValueError, match="'pubmedqa' is already registered"):
        registry.add_suite("pubmedqa", ("pubmedqa",))
    registry.add_suite("mine", ("pubmedqa",))
    with pytest.raises(ValueError, match="'mine' is already registered"):
        registry.add_suite("mine", ("pubmedqa",))
    with pytest.raises(ValueError, match="'mine' is already registered"):
        registry.add(dataclasses.replace(task, name="mine"))


def test_suite_of_unknown_task_fails() -> None:
    registry = Registry()
    with pytest.raises(UnknownTaskError, match="unknown task 'pubmedqa'"):
        registry.add_suite("mine", ("pubmedqa",))
    assert registry.suites() == {}


def test_every_task_is_hashable_and_equal_to_itself() -> None:
    # Tasks key caches and sets; a module's `reference` (a read-only mapping) is left out of
    # the hash.
    tasks = REGISTRY.tasks()
    assert len({hash(t) for t in tasks}) == len(tasks)
    assert all(t == REGISTRY.task(t.name) for t in tasks)
