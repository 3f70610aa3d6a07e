"""evaluate(): tasks x one model -> versioned results, with an answer cache that makes runs resume.

The engine knows nothing of the web or the queue: give it tasks, a backend and stores. This module
holds the log-likelihood protocol and dispatches the generative ones to runner_generate; what every
protocol shares (run options and key, answer cache, result files, progress) is in runs.py, and is
re-exported here for the callers that know the runner as `medboard.runner`.
"""

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medboard import __version__
from medboard.backends.base import Backend, ChoiceRequest
from medboard.data.store import DataStore
from medboard.errors import MedboardError
from medboard.paths import atomic_write_text
from medboard.results.schema import RunResult
from medboard.results.store import RunStore
from medboard.runner_generate import evaluate_generative
from medboard.runs import (
    BatchPace,
    EvalOptions,
    Reporter,
    SilentReporter,
    compute_answers,
    finish_run,
    load_backend,
    run_spec,
)
from medboard.scoring.choice import score_choices
from medboard.tasks.base import Sample, Task
from medboard.tasks.protocols import LOGLIK, protocol_version

__all__ = [
    "BatchPace",
    "EvalOptions",
    "Reporter",
    "SilentReporter",
    "choice_requests",
    "evaluate",
    "evaluate_task",
    "fewshot_samples",
    "prompt_hash",
    "run_spec",
    "write_output",
]


def prompt_hash(request: ChoiceRequest) -> str:
    text = request.context + "\x00" + "\x01".join(request.continuations)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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
    if options.protocol != LOGLIK:
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
    if options.output is not None:
        check_output_folder(options.output)
    reporter = reporter or SilentReporter()
    results = []
    for task in tasks:
        results.append(evaluate_task(task, backend, data, runs, options, reporter))
        if options.output is not None:
            write_output(options.output, results, backend)
    return results


def check_output_folder(folder: Path) -> None:
    """Make the output folder and write in it now: one that cannot be written fails before
    any work (it was found after the first task), naming the folder and why."""
    if folder.exists() and not folder.is_dir():
        raise MedboardError(f"the output folder {folder} is a file")
    check = folder / f".medboard-check-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        check.write_bytes(b"")
        check.unlink()
    except OSError as exc:
        raise MedboardError(
            f"cannot write to the output folder {folder}: {exc.strerror or type(exc).__name__}"
        ) from None


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
            dumped = score.model_dump(mode="json")  # an undefined stderr as null (Score)
            entry[name], entry[f"{name}_stderr"] = dumped["value"], dumped["stderr"]
        summary["results"][result.spec.task] = entry
        summary["runs"][result.spec.task] = result.model_dump(mode="json")
        samples = Path(result.samples_file).read_text(encoding="utf-8")
        atomic_write_text(folder / f"samples_{result.spec.task}.jsonl", samples)
    # permuted copies (task@shiftK, robustness checks) are reported, not averaged
    accs = [r.scores["acc"].value for r in results if "@shift" not in r.spec.task]
    summary["average"] = {"acc": sum(accs) / len(accs), "tasks": len(accs)} if accs else None
    atomic_write_text(folder / "results.json", json.dumps(summary, indent=2) + "\n")
