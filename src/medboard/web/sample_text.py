"""The question and option texts of the sample rows a model page shows, where the data allows.

A samples file keeps each question's id and the scored choices (the option letters for most
tasks), not the question: the texts live in the data store (`medboard.data.store`), under the
task's dataset and split. The model page looks up only the rows it shows, in the task's records
as the runner read them (`task.select`, `task.to_sample`; a permuted copy `task@shiftK` shows its
options rotated, as the model saw them), and only when

- the task's terms allow showing its text on a public page (`terms_of`: from the license its
  module states, after the benchmark's SOURCE.md), and
- the store holds the very data the run evaluated (its content hash is the run's `data_hash`), so
  an id never shows another version's question.

The records of a split are read once per file version (path, mtime, size) and kept for a few
splits; nothing is read for a page without samples, so the leaderboard never pays for it.
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from medboard.data.records import content_hash, read_jsonl
from medboard.errors import MedboardError
from medboard.leaderboard.analysis import split_shift
from medboard.paths import home
from medboard.tasks import REGISTRY
from medboard.tasks.base import Sample, Task
from medboard.tasks.declared import FAMILY
from medboard.tasks.permute import permuted


@dataclass(frozen=True)
class DatasetTerms:
    """A dataset's license, and whether a public page may show its questions."""

    license: str
    show_text: bool
    note: str = ""  # the attribution shown with the texts, or why they are not shown


@dataclass(frozen=True)
class TaskTexts:
    """A task's samples by id, from the store, or why there are none to show."""

    samples: dict[str, Sample]
    note: str
    shown: bool


def _task_of(name: str) -> Task | None:
    base, shift = split_shift(name)
    try:
        task = REGISTRY.task(base)
        return permuted(task, shift) if shift is not None else task
    except (MedboardError, ValueError):
        return None


def terms_of(task: Task) -> DatasetTerms:
    """What a public page may show of a task's questions, from its module: a permissive license
    (MIT, Apache-2.0): shown, with the source named (`Task.attribution`); a non-commercial
    license or none stated: not shown, since whoever runs a board may do so commercially; a
    declared exam: shown only where its owner made it public."""
    if task.family == FAMILY:
        return _declared_terms(task)
    if task.noncommercial:
        stated = task.license not in ("", "none stated")
        why = "its license is non-commercial" if stated else "its terms of use are not stated"
        return DatasetTerms(task.license or "none stated", False, why)
    return DatasetTerms(task.license, True, task.attribution or f"{task.label}, {task.license}")


def _declared_terms(task: Task) -> DatasetTerms:
    """A declared exam's owner made it public (public = true): shown, under its stated license."""
    stated = task.license or "no license stated"
    return DatasetTerms(stated, True, f"{task.label}: made public by its owner ({stated})")


def private_task(name: str) -> bool:
    """Whether a task (or a permuted copy of it) is a private exam: none of its samples served."""
    task = _task_of(name)
    return task is not None and task.private


def _data_file(task: Task) -> Path:
    return home() / "data" / task.dataset / f"{task.split}.jsonl"


@lru_cache(maxsize=16)
def _records(
    task_name: str, path: str, _mtime_ns: int, _size: int
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The content hash of the task's records in a store file, and the records by id."""
    task = REGISTRY.task(task_name)
    records = task.select(list(read_jsonl(Path(path))))
    return content_hash(records), {str(r["id"]): r for r in records}


def _plain(digest: str) -> str:
    return digest.removeprefix("sha256:")


def task_texts(task_name: str, data_hash: str, ids: list[str]) -> TaskTexts:
    """The samples of `ids` (those found) with their question and option texts, if shown."""
    task = _task_of(task_name)
    if task is None:
        return TaskTexts({}, "the task is not registered here", False)
    if task.private:  # a declared exam (medboard exam add) not declared public
        return TaskTexts({}, f"{task.label} is a private exam: its questions are not shown", False)
    terms = terms_of(task)
    if not terms.show_text:
        return TaskTexts({}, f"{task.dataset}: {terms.note} ({terms.license})", False)
    path = _data_file(task)
    try:
        stat = path.stat()
        base = split_shift(task.name)[0]  # permuted copies read the same records
        digest, by_id = _records(base, str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError, MedboardError):  # absent, unreadable, not UTF-8, malformed
        return TaskTexts({}, f"the data store has no readable copy of {task.dataset}", False)
    if _plain(digest) != _plain(data_hash):
        note = f"the data store's {task.dataset}/{task.split} is not the data this run evaluated"
        return TaskTexts({}, note, False)
    found = {i: task.to_sample(by_id[i]) for i in ids if i in by_id}
    return TaskTexts(found, terms.note, True)


def with_texts(row: dict[str, Any], sample: Sample | None) -> dict[str, Any]:
    """A sample row with its question, context and each choice's option text (None: unknown,
    or the choice is that text already). The choices are the options in display order (their
    letters, or their texts where those are scored), so the i-th choice is the i-th option."""
    options = dict(sample.options) if sample is not None else {}
    row["question"] = sample.question if sample is not None else None
    row["context"] = sample.context if sample is not None else None
    if sample is not None and not row["choices"]:  # a generative run: the options, no scores
        row["choices"] = [{"text": key, "logprob": None, "prob": None} for key in options]
    texts = list(options.values()) if len(options) == len(row["choices"]) else []
    for i, choice in enumerate(row["choices"]):
        text = texts[i] if texts else None
        choice["option"] = text if text != choice["text"] else None
    return row
