"""evaluate(): tasks x one model -> versioned results, with an answer cache that makes runs resume.

The engine knows nothing of the web or the queue: give it tasks, a backend and stores. This module
holds the log-likelihood protocol and what every protocol shares (run key, answer cache, result
files); the generative protocols are in runner_generate.
"""

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medboard import __version__
from medboard.backends.base import Backend, ChoiceRequest
from medboard.data.store import DataStore, TaskData
from medboard.errors import MedboardError
from medboard.heap import freeze, long_lived
from medboard.paths import atomic_write_text
from medboard.results.schema import RunResult, RunSpec, Score
from medboard.results.store import RunStore
from medboard.scoring.choice import score_choices
from medboard.scoring.metrics import METRICS
from medboard.tasks.base import Sample, Task
from medboard.tasks.protocols import LOGLIK, LOGLIK_VERSION, protocol_version

PROTOCOL = LOGLIK_VERSION


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


def prompt_hash(request: ChoiceRequest) -> str:
    text = request.context + "\x00" + "\x01".join(request.continuations)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def fewshot_samples(task: Task, data: DataStore, shots: int) -> list[Sample]:
    """The first `shots` examples of the task's few-shot split, as lm-eval's first_n sampler."""
    if shots == 0:
        return []
    if task.fewshot_split is None or task.fewshot_sampler != "first_n":
        raise MedboardError(
            f"--shots: {task.name} takes its few-shot examples with lm-eval's seeded random "
            "sampler, which medboard does not reproduce; few-shot runs cover the tasks with a "
            "canonical first-n pool (the MMLU subjects)"
        )
    if not data.has(task.dataset, task.fewshot_split):
        raise MedboardError(
            f"--shots: no few-shot pool {task.dataset}/{task.fewshot_split} in the data store "
            "(medboard data import <benchmarks folder> brings it)"
        )
    pool = task.select(data.load(task.dataset, task.fewshot_split))
    if len(pool) < shots:
        raise MedboardError(
            f"--shots {shots}: {task.name} has only {len(pool)} examples in "
            f"{task.dataset}/{task.fewshot_split}"
        )
    return [task.to_sample(record) for record in pool[:shots]]


def choice_requests(
    task: Task, samples: Sequence[Sample], shots: list[Sample]
) -> list[ChoiceRequest]:
    """One scoring request per sample: the task's prompt (after `shots`) and its choices."""
    return [ChoiceRequest(task.prompt(s, shots), task.continuations(s)) for s in samples]


def run_spec(
    task: Task,
    backend: Backend,
    data_hash: str,
    limit: int | None,
    protocol: str = PROTOCOL,
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
        adapter=identity.get("adapter"),
        adapter_hash=identity.get("adapter_hash"),
        shots=shots,
        limit=limit,
        harness_version=__version__,
    )


def _sample_record(
    sample: Sample, phash: str, answer: dict[str, Any], task: Task
) -> dict[str, Any]:
    score = score_choices(answer["logprobs"], sample.choices, sample.target)
    record = {
        "id": sample.id,
        "prompt_hash": phash,
        "choices": list(sample.choices),
        "logprobs": answer["logprobs"],
        "greedy": answer["greedy"],
        "n_tokens": answer["n_tokens"],
        "pred": score.pred,
        "pred_norm": score.pred_norm,
        "gold": sample.target,
    }
    for metric in task.metrics:
        record[metric] = getattr(score, metric)
    if sample.subject is not None:
        record["subject"] = sample.subject
    return record


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


def evaluate_task(
    task: Task,
    backend: Backend,
    data: DataStore,
    runs: RunStore,
    options: EvalOptions,
    reporter: Reporter,
) -> RunResult:
    if options.protocol != LOGLIK:
        # imported here: runner_generate builds on this module's helpers
        from medboard.runner_generate import evaluate_generative

        return evaluate_generative(task, backend, data, runs, options, reporter)
    started = time.time()
    task_data = data.task_data(task, allow_mismatch=options.allow_data_mismatch)
    records = task_data.records[: options.limit] if options.limit else task_data.records
    shots = fewshot_samples(task, data, options.shots)
    spec = run_spec(task, backend, task_data.content_hash, options.limit, shots=options.shots)
    key = spec.key()
    finished = runs.finished(key)
    if finished is not None:
        reporter.finish(finished, cached=True)
        return finished

    samples = [task.to_sample(record) for record in records]
    load_backend(backend, spec, reporter)
    requests = choice_requests(task, samples, shots)
    hashes = [prompt_hash(r) for r in requests]

    def answer_batch(batch: list[int]) -> list[dict[str, Any]]:
        results = backend.loglikelihood([requests[i] for i in batch])
        return [
            {
                "logprobs": list(result.logprobs),
                "greedy": list(result.greedy),
                "n_tokens": list(result.n_tokens),
                "prompt_tokens": result.prompt_tokens,
            }
            for result in results
        ]

    answers = compute_answers(
        runs,
        key,
        [s.id for s in samples],
        hashes,
        lambda: backend.plan(requests),
        answer_batch,
        task.name,
        reporter,
    )
    sample_records = [
        _sample_record(s, h, answers[s.id], task) for s, h in zip(samples, hashes, strict=True)
    ]
    prompt_tokens = sum(answers[s.id]["prompt_tokens"] for s in samples)
    return finish_run(
        spec, runs, task_data, sample_records, task.metrics, prompt_tokens, started, reporter
    )


def evaluate(
    tasks: Sequence[Task],
    backend: Backend,
    data: DataStore | None = None,
    runs: RunStore | None = None,
    options: EvalOptions | None = None,
    reporter: Reporter | None = None,
) -> list[RunResult]:
    """Evaluate each task; results of finished runs come back without computing anything.

    The libraries, the model and the compiled code are left frozen out of Python's cyclic
    garbage collector (heap.py); a process that goes on to other work calls heap.thaw().
    """
    data = data or DataStore()
    runs = runs or RunStore()
    options = options or EvalOptions()
    protocol_version(options.protocol, options.max_new_tokens)  # fails before any work
    reporter = reporter or SilentReporter()
    results = []
    for task in tasks:
        results.append(evaluate_task(task, backend, data, runs, options, reporter))
        if options.output is not None:
            write_output(options.output, results, backend)
    return results


def write_output(folder: Path, results: Sequence[RunResult], backend: Backend) -> None:
    """`results.json` (results.<task>.<metric>) and `samples_<task>.jsonl` in one folder."""
    summary: dict[str, Any] = {
        "schema_version": 1,
        "harness": "medboard",
        "harness_version": __version__,
        "model": backend.identity(),
        "results": {},
        "runs": {},
    }
    for result in results:
        entry: dict[str, Any] = {"n": result.n_samples, "run_key": result.key}
        for name, score in result.scores.items():
            entry[name] = score.value
            entry[f"{name}_stderr"] = score.stderr
        summary["results"][result.spec.task] = entry
        summary["runs"][result.spec.task] = result.model_dump(mode="json")
        samples = Path(result.samples_file).read_text(encoding="utf-8")
        atomic_write_text(folder / f"samples_{result.spec.task}.jsonl", samples)
    # permuted copies (task@shiftK, robustness checks) are reported, not averaged
    accs = [r.scores["acc"].value for r in results if "@shift" not in r.spec.task]
    summary["average"] = {"acc": sum(accs) / len(accs), "tasks": len(accs)} if accs else None
    atomic_write_text(folder / "results.json", json.dumps(summary, indent=2) + "\n")
