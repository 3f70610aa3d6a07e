"""evaluate(): tasks x one model -> versioned results, with an answer cache that makes runs resume.

The engine knows nothing of the web or the queue: give it tasks, a backend and stores.
"""

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from medboard import __version__
from medboard.backends.base import Backend, ChoiceRequest
from medboard.data.store import DataStore
from medboard.results.schema import RunResult, RunSpec, Score
from medboard.results.store import RunStore, atomic_write_text
from medboard.scoring.choice import score_choices
from medboard.scoring.metrics import METRICS
from medboard.tasks.base import Sample, Task

PROTOCOL = "loglik/1"


class Reporter(Protocol):
    """Progress of a run; the CLI draws it, a library caller may ignore it."""

    def status(self, message: str) -> None: ...
    def start(self, task: str, total: int, done: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self, result: RunResult, cached: bool) -> None: ...


class SilentReporter:
    def status(self, message: str) -> None:
        pass

    def start(self, task: str, total: int, done: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self, result: RunResult, cached: bool) -> None:
        pass


@dataclass(frozen=True)
class EvalOptions:
    limit: int | None = None
    allow_data_mismatch: bool = False
    output: Path | None = None


def prompt_hash(request: ChoiceRequest) -> str:
    text = request.context + "\x00" + "\x01".join(request.continuations)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_spec(task: Task, backend: Backend, data_hash: str, limit: int | None) -> RunSpec:
    identity = backend.identity()
    return RunSpec(
        task=task.name,
        task_version=task.version,
        protocol=PROTOCOL,
        dataset=task.dataset,
        split=task.split,
        data_hash=data_hash,
        model=identity["model"],
        model_revision=identity["revision"],
        dtype=identity["dtype"],
        matmul=identity.get("matmul"),
        adapter=identity.get("adapter"),
        adapter_hash=identity.get("adapter_hash"),
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


def evaluate_task(
    task: Task,
    backend: Backend,
    data: DataStore,
    runs: RunStore,
    options: EvalOptions,
    reporter: Reporter,
) -> RunResult:
    started = time.time()
    task_data = data.task_data(task, allow_mismatch=options.allow_data_mismatch)
    records = task_data.records[: options.limit] if options.limit else task_data.records
    spec = run_spec(task, backend, task_data.content_hash, options.limit)
    key = spec.key()
    finished = runs.finished(key)
    if finished is not None:
        reporter.finish(finished, cached=True)
        return finished

    samples = [task.to_sample(record) for record in records]
    load = getattr(backend, "load", None)
    if load is not None and not getattr(backend, "loaded", True):
        reporter.status(f"loading model {spec.model} ({spec.dtype})")
        load()
    requests = [ChoiceRequest(task.prompt(s), task.continuations(s)) for s in samples]
    hashes = [prompt_hash(r) for r in requests]
    cache = runs.cache(key)
    try:
        stored = cache.get_all()
        # An answer cached under the same id for another prompt is stale: it is recomputed.
        answers = {
            s.id: stored[s.id][1]
            for s, h in zip(samples, hashes, strict=True)
            if s.id in stored and stored[s.id][0] == h
        }
        reporter.start(task.name, len(samples), sum(1 for s in samples if s.id in answers))
        for batch in backend.plan(requests):
            if all(samples[i].id in answers for i in batch):
                continue
            # The whole batch is recomputed so its composition, and its numbers, never change.
            results = backend.loglikelihood([requests[i] for i in batch])
            fresh = []
            for i, result in zip(batch, results, strict=True):
                answer = {
                    "logprobs": list(result.logprobs),
                    "greedy": list(result.greedy),
                    "n_tokens": list(result.n_tokens),
                    "prompt_tokens": result.prompt_tokens,
                }
                if samples[i].id not in answers:
                    answers[samples[i].id] = answer
                    fresh.append((samples[i].id, hashes[i], answer))
            cache.put_many(fresh)
            reporter.advance(len(fresh))
    finally:
        cache.close()

    sample_records = [
        _sample_record(s, h, answers[s.id], task) for s, h in zip(samples, hashes, strict=True)
    ]
    scores = {}
    for name in task.metrics:
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
        n_samples=len(samples),
        prompt_tokens=sum(answers[s.id]["prompt_tokens"] for s in samples),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        finished_at=_now(),
        wall_seconds=round(time.time() - started, 3),
        data_source=task_data.info.source,
        samples_file=str(samples_path),
    )
    atomic_write_text(folder / "result.json", result.model_dump_json(indent=2) + "\n")
    reporter.finish(result, cached=False)
    return result


def evaluate(
    tasks: Sequence[Task],
    backend: Backend,
    data: DataStore | None = None,
    runs: RunStore | None = None,
    options: EvalOptions | None = None,
    reporter: Reporter | None = None,
) -> list[RunResult]:
    """Evaluate each task; results of finished runs come back without computing anything."""
    data = data or DataStore()
    runs = runs or RunStore()
    options = options or EvalOptions()
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
    accs = [r.scores["acc"].value for r in results]
    summary["average"] = {"acc": sum(accs) / len(accs), "tasks": len(accs)}
    atomic_write_text(folder / "results.json", json.dumps(summary, indent=2) + "\n")
