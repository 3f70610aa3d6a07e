"""From a model spec to results, and from results to a leaderboard entry: the one path that
`medboard eval --record`, the queue's workers and `medboard fl submit` share.

Each caller brings what is its own (the tasks, a progress reporter, a check of the model before
any work, the entry's details and the transaction it is recorded in); the backend is made from
the spec by the registry, whatever backend it names, so every caller takes every backend and
every backend argument (a GPU, the kernel settings) alike.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medboard.backends import ModelSpec, registry
from medboard.results.schema import RunResult
from medboard.runner import EvalOptions, Reporter, evaluate
from medboard.tasks.base import Task

if TYPE_CHECKING:  # the database layer is imported by `record` only: eval without --record
    from sqlalchemy.orm import Session  # never loads it

    from medboard.results.db import Database


@dataclass(frozen=True)
class Evaluated:
    """A model's results on some tasks, with the identity that decided their numbers."""

    spec: ModelSpec
    identity: dict[str, Any]
    results: list[RunResult]

    def record(
        self,
        target: "Database | Session",
        track: str,
        details: Mapping[str, Any],
        source: str,
        extra: dict[str, Any] | None = None,
    ) -> int:
        """The results as one evaluated entry on `track` (in the caller's transaction when
        `target` is a session); the entry is named by the spec's text unless `details` name
        it. Returns the entry's id."""
        from medboard.results.record import record_entry

        named = {"name": self.spec.text, **{k: v for k, v in details.items() if v is not None}}
        limits = [r.spec.limit for r in self.results if r.spec.limit is not None]
        if limits:  # a --limit run: the board shows the entry as partial where it cut a task
            extra = {**(extra or {}), "limit": max(limits)}
        return record_entry(
            target, track, self.results, self.identity, named, source=source, extra=extra
        )


def evaluate_spec(
    spec: ModelSpec,
    tasks: Sequence[Task],
    options: EvalOptions | None = None,
    reporter: Reporter | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Evaluated:
    """Evaluate the spec's model on `tasks`. `check` sees the model's identity before anything
    is computed (and raises to stop there)."""
    backend = registry.create(spec)
    identity = backend.identity()
    if check is not None:
        check(identity)
    results = evaluate(tasks, backend, options=options, reporter=reporter)
    return Evaluated(spec, identity, results)
