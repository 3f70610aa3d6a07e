"""The generative protocols of evaluate(): a prompt per question, greedy decoding, extraction.

Same contract as the log-likelihood path in runner.py, on the same shared parts (runs.py): the
run key holds the protocol's version (and a budget that overrides its own), each generated text
is cached as soon as its batch is done, a killed run resumes with the same batches and so the
same texts, and a finished run is returned without computing anything. What is cached is the raw
text: extraction runs again when the run is scored, so it never goes stale in the cache.
"""

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from medboard.backends.base import Backend, GenerateRequest, GenerativeBackend
from medboard.data.store import DataStore
from medboard.errors import ModelError
from medboard.results.schema import RunResult
from medboard.results.store import RunStore
from medboard.runs import (
    EvalOptions,
    Reporter,
    compute_answers,
    finish_run,
    load_backend,
    run_spec,
)
from medboard.scoring.extract import extract
from medboard.tasks.base import Sample, Task
from medboard.tasks.protocols import GenerationProtocol, generation_protocol, protocol_version

# the names of medboard.scoring.metrics.METRICS that a generative run reports
GENERATIVE_METRICS = ("acc", "unparsed")


def request_hash(request: GenerateRequest) -> str:
    """What the cached text depends on: prompt, budget and stops."""
    text = f"{request.prompt}\x00{request.max_new_tokens}\x00" + "\x01".join(request.stop)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def generation_requests(
    protocol: GenerationProtocol,
    task: Task,
    samples: Sequence[Sample],
    backend: GenerativeBackend,
    max_new_tokens: int | None,
) -> list[GenerateRequest]:
    """One request per sample: the protocol's prompt (in the model's chat template when the
    protocol uses it and the model has one), its budget and its stop strings."""
    budgets = protocol.budgets(
        samples, lambda text: backend.count_tokens(text, add_special_tokens=False), max_new_tokens
    )
    return [
        GenerateRequest(protocol.prompt(task, s, backend.chat_prompt), budget, protocol.stop)
        for s, budget in zip(samples, budgets, strict=True)
    ]


def output_sources(
    protocol: GenerationProtocol, samples: Sequence[Sample], requests: Sequence[GenerateRequest]
) -> list[str]:
    """The id of the sample whose output each sample is scored on: its own, except under
    FlowerTune's matching by prompt string, where every question with the same prompt gets the
    output of the last of them (pandas `.loc[prompt == p] = out`, batch after batch)."""
    if not protocol.share_duplicate_prompts:
        return [s.id for s in samples]
    last = {r.prompt: s.id for s, r in zip(samples, requests, strict=True)}
    return [last[r.prompt] for r in requests]


def sample_record(
    protocol: GenerationProtocol,
    sample: Sample,
    phash: str,
    request: GenerateRequest,
    answer: Mapping[str, Any],
    scored_on: str,
) -> dict[str, Any]:
    keys = list(sample.options)
    extracted = extract(protocol.extractor, answer["text"], sample.options)
    pred = keys.index(extracted) if extracted is not None else -1
    record: dict[str, Any] = {
        "id": sample.id,
        "prompt_hash": phash,
        "generated": answer["text"],
        "extracted": extracted,
        "pred": pred,
        "gold": sample.target,
        "acc": float(pred == sample.target),
        "parsed": extracted is not None,
        "unparsed": float(extracted is None),
        "max_new_tokens": request.max_new_tokens,
        "n_new_tokens": answer["n_new_tokens"],
        "stopped_by": answer["stopped_by"],
    }
    if scored_on != sample.id:
        record["output_of"] = scored_on  # FlowerTune's prompt matching gave it another's text
    if sample.subject is not None:
        record["subject"] = sample.subject
    return record


def evaluate_generative(
    task: Task,
    backend: Backend,
    data: DataStore,
    runs: RunStore,
    options: EvalOptions,
    reporter: Reporter,
) -> RunResult:
    protocol = generation_protocol(options.protocol)
    if "generate" not in backend.supports:
        raise ModelError(
            f"model {backend.identity()['model']} cannot generate text, which protocol "
            f"'{protocol.name}' needs; use --protocol loglik"
        )
    generator = cast(GenerativeBackend, backend)
    started = time.time()
    task_data = data.task_data(task, allow_mismatch=options.allow_data_mismatch)
    records = task_data.records[: options.limit] if options.limit else task_data.records
    version = protocol_version(protocol.name, options.max_new_tokens)
    spec = run_spec(task, backend, task_data.content_hash, options.limit, protocol=version)
    finished = runs.finished(spec.key())
    if finished is not None:
        reporter.finish(finished, cached=True)
        return finished

    samples = [task.to_sample(record) for record in records]
    load_backend(backend, spec, reporter)
    requests = generation_requests(protocol, task, samples, generator, options.max_new_tokens)
    hashes = [request_hash(r) for r in requests]

    def answer_batch(batch: list[int]) -> list[dict[str, Any]]:
        results = generator.generate([requests[i] for i in batch])
        return [
            {
                "text": r.text,
                "n_prompt_tokens": r.n_prompt_tokens,
                "n_new_tokens": r.n_new_tokens,
                "stopped_by": r.stopped_by,
            }
            for r in results
        ]

    answers = compute_answers(
        runs,
        spec.key(),
        [s.id for s in samples],
        hashes,
        lambda: generator.plan_generate(requests),
        answer_batch,
        task.name,
        reporter,
    )
    scored_on = output_sources(protocol, samples, requests)
    sample_records = [
        sample_record(protocol, s, h, r, answers[on], on)
        for s, h, r, on in zip(samples, hashes, requests, scored_on, strict=True)
    ]
    return finish_run(
        spec,
        runs,
        task_data,
        sample_records,
        GENERATIVE_METRICS,
        prompt_tokens=sum(answers[s.id]["n_prompt_tokens"] for s in samples),
        started=started,
        reporter=reporter,
        extra={
            "protocol": protocol.name,
            "new_tokens": sum(answers[s.id]["n_new_tokens"] for s in samples),
        },
    )
