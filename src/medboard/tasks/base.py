"""Task definitions: what a sample is, how it becomes a prompt, and the task registry.

A task knows its data (a dataset name and split in the local store, and where to pull it from),
how a stored record becomes a Sample, and how a Sample becomes a prompt. It knows no model.
"""

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from medboard.data.sources import HubSource as HubSource  # re-exported for the task modules
from medboard.errors import MedboardError

LETTERS = ("A", "B", "C", "D", "E", "F", "G", "H")
FEWSHOT_DELIMITER = "\n\n"  # lm-eval's default between few-shot examples


@dataclass(frozen=True)
class Sample:
    """One question, ready to be rendered and scored."""

    id: str
    question: str
    options: Mapping[str, str]  # option key -> option text, in display order
    choices: tuple[str, ...]  # the continuations that are scored (letters, or option texts)
    target: int  # index into choices of the gold answer
    context: str | None = None
    subject: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Task:
    """A benchmark task under one protocol (choice log-likelihood, zero-shot by default).

    `version` changes whenever anything that decides the numbers changes: prompt, choices, data
    selection. `expected_hash` is the content hash of the records the task evaluates (see
    medboard.data.store.content_hash); evaluation refuses other data unless told otherwise.
    """

    name: str
    version: str
    dataset: str  # dataset name in the local store
    split: str
    render: Callable[[Sample], str]
    to_sample: Callable[[Mapping[str, Any]], Sample]
    description: str = ""  # prefix before the question (MMLU's subject header)
    subject: str | None = None  # keep only records of this subject
    metrics: tuple[str, ...] = ("acc", "acc_norm")
    expected_size: int | None = None
    expected_hash: str | None = None
    fewshot_split: str | None = None
    # How lm-eval picks few-shot examples from fewshot_split: "first_n" (MMLU's canonical first
    # examples) is reproduced; None means lm-eval's seeded random sampler, which is not.
    fewshot_sampler: str | None = None
    hub: HubSource | None = None
    family: str = ""
    target_delimiter: str = " "
    title: str = ""  # the name pages give it (column headers)
    language: str = "en"  # ISO 639-1 code of the questions
    license: str = ""  # the data's license, as its source states it
    noncommercial: bool = False  # the license forbids commercial use, or no license is stated
    attribution: str = ""  # shown with its questions on public pages (permissive licenses)
    tracks: tuple[str, ...] = ()  # the open tracks it is a column of (multilingual_medical, ...)
    group: str | None = None  # the benchmark a per-subject task belongs to (cmmlu_medical)
    group_title: str = ""  # that benchmark's name on pages
    exclude: Callable[[Mapping[str, Any]], bool] | None = None  # records left out, counted
    private: bool = False  # its questions are never shown on public pages (a declared exam)
    not_permutable: str = ""  # why its options cannot be rotated among letters (--permute)
    # How lm-eval asks it, where no bench/lmeval_tasks/ref_<name>.yaml says so: the keys of an
    # lm-eval task config (include, process_docs, doc_to_text, ...; "utils.f" for a function of
    # bench/lmeval_tasks/utils.py), from which bench/lmeval_tasks.py writes the reference config.
    reference: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        hash=False,  # a Task stays hashable
    )

    @property
    def label(self) -> str:
        return self.title or self.name

    @property
    def benchmark(self) -> str:
        """The benchmark's name: its group (a subject's benchmark), else the task's own."""
        return self.group or self.name

    def prompt(self, sample: Sample, shots: Sequence[Sample] = ()) -> str:
        """The full context given to the model, without the answer: description, solved
        few-shot examples (as lm-eval joins them: question, target delimiter, answer, blank
        line), then the question."""
        examples = "".join(
            self.render(s) + self.target_delimiter + s.choices[s.target] + FEWSHOT_DELIMITER
            for s in shots
        )
        return self.description + examples + self.render(sample)

    def continuations(self, sample: Sample) -> tuple[str, ...]:
        """The scored continuations, each with the target delimiter in front (' A')."""
        return tuple(self.target_delimiter + choice for choice in sample.choices)

    def _of_subject(self, records: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        if self.subject is None:
            return records
        return [r for r in records if r.get("subject") == self.subject]

    def select(self, records: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The records this task evaluates, from its dataset split."""
        records = self._of_subject(records)
        if self.exclude is not None:
            records = [r for r in records if not self.exclude(r)]
        return records

    def excluded(self, records: list[Mapping[str, Any]]) -> int:
        """How many of the dataset split's records (of its subject) `exclude` leaves out."""
        if self.exclude is None:
            return 0
        return sum(1 for r in self._of_subject(records) if self.exclude(r))


class UnknownTaskError(MedboardError):
    pass


@dataclass(frozen=True)
class Track:
    """A suite that is a leaderboard: runs of it become ranked entries."""

    name: str
    title: str
    protocol: str = "loglik"  # the protocol its reference numbers were scored by: ranked first


class Registry:
    """Name -> Task and name -> suite, with clear errors on collisions and unknown names."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._suites: dict[str, tuple[str, ...]] = {}
        self._tracks: dict[str, Track] = {}

    def add(self, task: Task) -> Task:
        if task.name in self._tasks or task.name in self._suites:
            raise ValueError(f"task name '{task.name}' is already registered")
        self._tasks[task.name] = task
        return task

    def add_suite(self, name: str, task_names: tuple[str, ...]) -> None:
        if name in self._suites or name in self._tasks:
            raise ValueError(f"suite name '{name}' is already registered")
        for task_name in task_names:
            self.task(task_name)
        self._suites[name] = task_names

    def add_track(self, track: Track, task_names: tuple[str, ...]) -> None:
        """A suite that is also a leaderboard track."""
        self.add_suite(track.name, task_names)
        self._tracks[track.name] = track

    def add_task_track(self, task: Task, track: Track) -> None:
        """A task that is a track of its own, of the same name and one column (a declared exam:
        `--tasks NAME --suite NAME`); the one suite that carries a task's name."""
        if track.name != task.name or track.name in self._suites:
            raise ValueError(f"track name '{track.name}' is taken or not its task's")
        self.add(task)
        self._suites[track.name] = (task.name,)
        self._tracks[track.name] = track

    def tracks(self) -> dict[str, Track]:
        return dict(self._tracks)

    def label(self, name: str) -> str | None:
        """What pages call a task or a benchmark group; None for a name that is neither."""
        if name in self._tasks:
            return self._tasks[name].label
        group = next((t for t in self._tasks.values() if t.group == name), None)
        return (group.group_title or name) if group is not None else None

    def columns(self, suite: str) -> tuple[str, ...]:
        """A suite's board columns: one per benchmark (a group's subjects share one column)."""
        return tuple(dict.fromkeys(self.task(t).benchmark for t in self.suite(suite)))

    def members(self, suite: str, column: str) -> tuple[str, ...]:
        """The suite's tasks that make up one of its columns."""
        return tuple(t for t in self.suite(suite) if self.task(t).benchmark == column)

    def task(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks))
            raise UnknownTaskError(
                f"unknown task '{name}'{self._did_you_mean(name)} (known tasks: {known})"
            ) from None

    def _did_you_mean(self, name: str) -> str:
        """The tasks a mistyped name may mean: those of a dataset so named, else close names."""
        meant = sorted(t.name for t in self._tasks.values() if t.dataset == name)
        meant = meant or difflib.get_close_matches(name, list(self._tasks), n=3, cutoff=0.8)
        return f"; did you mean {' or '.join(meant)}?" if meant else ""

    def suite(self, name: str) -> tuple[str, ...]:
        try:
            return self._suites[name]
        except KeyError:
            known = ", ".join(sorted(self._suites))
            raise UnknownTaskError(f"unknown suite '{name}' (known suites: {known})") from None

    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def suites(self) -> dict[str, tuple[str, ...]]:
        return dict(self._suites)

    def resolve(self, suite: str | None, tasks: str | None) -> list[Task]:
        """Tasks named by --suite and/or --tasks (comma-separated; suite names allowed too).

        With both, --tasks picks a subset of the suite.
        """
        names: list[str] = []
        if tasks:
            for name in (n.strip() for n in tasks.split(",")):
                if not name:
                    continue
                names.extend(self._suites.get(name, (name,)))
        if suite:
            suite_names = self.suite(suite)
            if names:
                outside = [n for n in names if n not in suite_names]
                for n in outside:
                    self.task(n)  # unknown names fail first, with the list of known tasks
                if outside:
                    raise UnknownTaskError(
                        f"task '{outside[0]}' is not in suite '{suite}' ({', '.join(suite_names)})"
                    )
            else:
                names = list(suite_names)
        if not names:
            raise UnknownTaskError("no task given: use --suite NAME or --tasks a,b")
        return [self.task(n) for n in dict.fromkeys(names)]


def letter_sample(record: Mapping[str, Any], score_texts: bool = False) -> Sample:
    """A Sample whose choices are the option letters (A, B, C, D), or with `score_texts` the
    option texts themselves (multi-token continuations)."""
    options = dict(record["options"])
    keys = list(options)
    return Sample(
        id=str(record["id"]),
        question=record["question"],
        options=MappingProxyType(options),
        choices=tuple(options.values()) if score_texts else tuple(keys),
        target=keys.index(record["answer"]),
        subject=record.get("subject"),
    )


def text_sample(record: Mapping[str, Any]) -> Sample:
    return letter_sample(record, score_texts=True)


def option_lines(sample: Sample) -> str:
    """'A. text\\nB. text\\n...' with a newline after every option."""
    return "".join(f"{key}. {text}\n" for key, text in sample.options.items())
