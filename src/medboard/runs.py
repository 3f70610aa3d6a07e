"""What every protocol of evaluate() shares: the run's spec and key, its answer cache, its result
files, progress.

The log-likelihood protocol (runner.py) and the generative ones (runner_generate.py) both build on
these; they live apart from either so that each protocol imports them and neither imports the other.
"""

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medboard import __version__
from medboard.backends.base import Backend
from medboard.data.store import TaskData
from medboard.heap import freeze, long_lived
from medboard.paths import atomic_write_text
from medboard.results.schema import RunResult, RunSpec, Score
from medboard.results.store import RunStore
from medboard.scoring.metrics import METRICS
from medboard.tasks.base import Task
from medboard.tasks.protocols import LOGLIK, LOGLIK_VERSION


class Reporter(Protocol):
    """Progress of a run; the CLI draws it, a library caller may ignore it."""

    def status(self, message: str) -> None: ...
    def start(self, task: str, total: int, done: int) -> None: ...
    def batches(self, pending: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self, result: RunResult, cached: bool) -> None: ...


class SilentReporter:
    def status(self, message: str) -> None:
        pass

    def start(self, task: str, total: int, done: int) -> None:
        pass

    def batches(self, pending: int) -> None:
        """The batches the current task has left to compute, once planned (each `advance`
        is one of them)."""

    def advance(self, n: int) -> None:
        pass

    def finish(self, result: RunResult, cached: bool) -> None:
        pass


class BatchPace:
    """The time a task has left, from the pace of its batches: they hold about the same number
    of tokens (backends/packing.py), so each remaining one is taken to last as long as those
    since the first (which also compiles). A question rate would not do: the batches go from
    the longest questions to the shortest, so early on it overestimates several times over
    (SmolLM2's MedQA on 2 AVX2 cores: about 3,400 s left by questions/s at 45 s, 685 s by
    batches; the task ended at 700 s)."""

    def __init__(self) -> None:
        self.left = 0
        self._since: tuple[float, int] | None = None  # (time, batches left) after the first

    def plan(self, pending: int) -> None:
        self.left, self._since = pending, None

    def step(self) -> int | None:
        """One batch done: the seconds the task has left, None until two are done."""
        self.left -= 1
        now = time.monotonic()
        if self._since is None:
            self._since = (now, self.left)
            return None
        since, left_then = self._since
        if left_then == self.left:
            return None
        return round((now - since) / (left_then - self.left) * self.left)


@dataclass(frozen=True)
class EvalOptions:
    limit: int | None = None
    allow_data_mismatch: bool = False
    output: Path | None = None
    protocol: str = LOGLIK  # loglik, flowertune, generative, cot (medboard.tasks.protocols)
    max_new_tokens: int | None = None  # overrides a generative protocol's budget
    shots: int = 0  # few-shot examples before each question (loglik, first_n tasks)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_spec(
    task: Task,
    backend: Backend,
    data_hash: str,
    limit: int | None,
    protocol: str = LOGLIK_VERSION,
    shots: int = 0,
) -> RunSpec:
    identity = backend.identity()
    return RunSpec(
        task=task.name,
        task_version=task.version,
        protocol=protocol,
        dataset=task.dataset,
        split=task.split,
        data_hash=data_hash,
        model=identity["model"],
        model_revision=identity["revision"],
        dtype=identity["dtype"],
        matmul=identity.get("matmul"),
        compiled=identity.get("compiled"),
        attention=identity.get("attention"),
        activation=identity.get("activation"),
        backend=identity.get("backend"),
        adapter=identity.get("adapter"),
        adapter_hash=identity.get("adapter_hash"),
        shots=shots,
        limit=limit,
        harness_version=__version__,
    )


def compute_answers(
    runs: RunStore,
    key: str,
    ids: Sequence[str],
    hashes: Sequence[str],
    plan: Callable[[], list[list[int]]],
    answer_batch: Callable[[list[int]], list[dict[str, Any]]],
    task_name: str,
    reporter: Reporter,
) -> dict[str, dict[str, Any]]:
    """Every sample's answer: from the run's cache, else computed a whole batch at a time."""
    cache = runs.cache(key)
    try:
        stored = cache.get_all()
        # An answer cached under the same id for another prompt is stale: it is recomputed.
        answers = {
            sid: stored[sid][1]
            for sid, h in zip(ids, hashes, strict=True)
            if sid in stored and stored[sid][0] == h
        }
        reporter.start(task_name, len(ids), sum(1 for sid in ids if sid in answers))
        pending = [batch for batch in plan() if not all(ids[i] in answers for i in batch)]
        reporter.batches(len(pending))
        first = True
        for batch in pending:
            # The whole batch is recomputed so its composition, and its numbers, never change.
            fresh = []
            for i, answer in zip(batch, answer_batch(batch), strict=True):
                if ids[i] not in answers:
                    answers[ids[i]] = answer
                    fresh.append((ids[i], hashes[i], answer))
            cache.put_many(fresh)
            reporter.advance(len(fresh))
            if first:  # what the first batch compiles lives to the end (heap.py)
                first = False
                freeze()
    finally:
        cache.close()
    return answers


def load_backend(backend: Backend, spec: RunSpec, reporter: Reporter) -> None:
    load = getattr(backend, "load", None)
    if load is not None and not getattr(backend, "loaded", True):
        reporter.status(f"loading model {spec.model} ({spec.dtype})")
        with long_lived():
            load()


def finish_run(
    spec: RunSpec,
    runs: RunStore,
    task_data: TaskData,
    sample_records: list[dict[str, Any]],
    metrics: Sequence[str],
    prompt_tokens: int,
    started: float,
    reporter: Reporter,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """Score the sample records, write samples.jsonl, then result.json (which marks it done)."""
    key = spec.key()
    scores = {}
    for name in metrics:
        values = [r[name] for r in sample_records]
        metric = METRICS[name]
        scores[name] = Score(value=metric.aggregate(values), stderr=metric.stderr(values))
    folder = runs.folder(key)
    samples_path = folder / "samples.jsonl"
    atomic_write_text(
        samples_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sample_records)
    )
    result = RunResult(
        key=key,
        spec=spec,
        scores=scores,
        n_samples=len(sample_records),
        prompt_tokens=prompt_tokens,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        finished_at=_now(),
        wall_seconds=round(time.time() - started, 3),
        data_source=task_data.info.source,
        samples_file=str(samples_path),
        extra=extra or {},
    )
    atomic_write_text(folder / "result.json", result.model_dump_json(indent=2) + "\n")
    reporter.finish(result, cached=False)
    return result
