"""Option-order robustness: the same questions with their options rotated among the letters.

A model that has learnt the answer picks the same option wherever it is shown; a model that leans
on a letter ("when unsure, say A") follows the letter. Rotating the options cyclically by `shift`
positions moves every answer to another letter (for 1 <= shift % n < n), keeps the letters and
the prompt template, and costs one more run per shift.

Convention, shared with medboard.scoring.robustness: the option shown at position i after a shift
s was at position (i - s) mod n; an option at position j is shown at (j + s) mod n. With shift 1,
A's text is shown under B and D's under A. Each permuted sample keeps the rotation in its
metadata (`shift`, and `original_keys`: the original option key of each displayed letter), so a
prediction can be traced back to the option it chose.

Only tasks whose scored choices are the option letters can be permuted. Where the choices are
texts (HEAD-QA) the prompt does not list the options and each text is scored on its own, so a new
order changes nothing; PubMedQA's yes/no/maybe are labels, not options, and moving them would
change the question.
"""

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from medboard.errors import MedboardError
from medboard.tasks.base import LETTERS, Sample, Task, text_sample

# Sample builders known to produce text choices, with the reason they cannot be permuted (a task
# states its own reason in `Task.not_permutable`).
_NOT_PERMUTABLE: dict[Callable[[Mapping[str, Any]], Sample], str] = {
    text_sample: (
        "its choices are the option texts, scored on their own after a prompt that does not "
        "list the options: their order changes nothing"
    ),
}


class NotPermutableError(MedboardError):
    """A task or sample whose options cannot be rotated among letters."""


def displayed_index(original: int, shift: int, n: int) -> int:
    """Position at which the option at `original` is shown after the rotation."""
    return (original + shift) % n


def original_index(displayed: int, shift: int, n: int) -> int:
    """Position the option shown at `displayed` had before the rotation."""
    return (displayed - shift) % n


def permute_sample(sample: Sample, shift: int) -> Sample:
    """The sample with its option texts rotated by `shift` among the same letters."""
    keys = tuple(sample.options)
    n = len(keys)
    if keys != LETTERS[:n] or sample.choices != keys:
        raise NotPermutableError(
            f"sample '{sample.id}' cannot be permuted: its choices {sample.choices} are not its "
            f"option letters {LETTERS[:n]}"
        )
    if shift % n == 0:
        raise NotPermutableError(
            f"shift {shift} leaves the {n} options of sample '{sample.id}' in place"
        )
    texts = tuple(sample.options.values())
    sources = [original_index(i, shift, n) for i in range(n)]
    return dataclasses.replace(
        sample,
        options=MappingProxyType({keys[i]: texts[j] for i, j in enumerate(sources)}),
        target=displayed_index(sample.target, shift, n),
        metadata=MappingProxyType(
            {**sample.metadata, "shift": shift, "original_keys": tuple(keys[j] for j in sources)}
        ),
    )


def permuted(task: Task, shift: int) -> Task:
    """A derived task whose samples show the options rotated by `shift` positions.

    Same data, same prompt template (the original render function on the rotated sample); the
    name and version carry the shift, so its runs have their own keys.
    """
    if shift < 1:
        raise ValueError(f"shift must be a positive number of positions, got {shift}")
    reason = task.not_permutable or _NOT_PERMUTABLE.get(task.to_sample)
    if reason is not None:
        raise NotPermutableError(f"task '{task.name}' cannot be permuted: {reason}")
    to_sample = task.to_sample

    def rotated(record: Mapping[str, Any]) -> Sample:
        return permute_sample(to_sample(record), shift)

    return dataclasses.replace(
        task,
        name=f"{task.name}@shift{shift}",
        version=f"{task.version}+shift{shift}",
        to_sample=rotated,
    )


def with_permutations(tasks: list[Task], shifts: list[int]) -> tuple[list[Task], list[str]]:
    """The tasks followed by their permuted copies for each shift; and the names of the tasks
    that cannot be permuted (with the reason), which are evaluated once, as they are."""
    copies: list[Task] = []
    skipped: list[str] = []
    for task in tasks:
        try:
            copies.extend(permuted(task, shift) for shift in shifts)
        except NotPermutableError as exc:
            skipped.append(str(exc))
    return [*tasks, *copies], skipped
