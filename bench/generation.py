"""Batched greedy generation (medboard) against `model.generate` one prompt at a time.

Same model object, same prompts (a protocol's prompts for real questions), greedy decoding, the
same max_new_tokens: the baseline is what FlowerTune's evaluation does, one `model.generate` call
per question. Reported: wall time, new tokens/s and all tokens/s (prompt + new) of each, the
speedup, and whether every question got the same tokens (exact equality is expected in
float32). Stop strings are off on both sides (transformers' `stop_strings` is a different
mechanism, and the comparison would be about it); both stop at the model's end-of-sequence token.

    MEDBOARD_HOME=~/.cache/medboard python bench/generation.py \\
        --model ~/.cache/medical-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --data ../shared/benchmarks/medqa/test.jsonl --protocol generative --n 32 \\
        --threads 1 --out generation.json

The machine's load is printed before and after (`os.getloadavg`): other processes on the same
cores slow both sides, one-at-a-time decoding less than batched prefill.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from medboard.backends.base import GenerateRequest
from medboard.backends.hf import HFBackend
from medboard.data.records import read_jsonl
from medboard.runner_generate import generation_requests
from medboard.tasks import REGISTRY
from medboard.tasks.protocols import generation_protocol

SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def build_requests(
    backend: HFBackend, task_name: str, data: Path, protocol: str, n: int, budget: int | None
) -> list[GenerateRequest]:
    task = REGISTRY.task(task_name)
    records = task.select(list(read_jsonl(data)))[:n]
    samples = [task.to_sample(r) for r in records]
    requests = generation_requests(generation_protocol(protocol), task, samples, backend, budget)
    return [GenerateRequest(r.prompt, r.max_new_tokens) for r in requests]  # stops off


def run_batched(backend: HFBackend, requests: list[GenerateRequest]) -> tuple[list, float]:
    started = time.perf_counter()
    results: list[Any] = [None] * len(requests)
    for batch in backend.plan_generate(requests):
        for i, result in zip(batch, backend.generate([requests[i] for i in batch]), strict=True):
            results[i] = result
    return results, time.perf_counter() - started


def run_one_at_a_time(
    backend: HFBackend, requests: list[GenerateRequest]
) -> tuple[list[list[int]], float]:
    import torch

    model = backend.model
    tokenizer = backend.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs = []
    started = time.perf_counter()
    for request in requests:
        ids = torch.tensor([backend.prompt_ids(request)])
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=request.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        outputs.append(out[0, ids.shape[1] :].tolist())
    return outputs, time.perf_counter() - started


def first_difference(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--task", default="medqa_4options")
    parser.add_argument("--data", type=Path, default=SHARED / "medqa" / "test.jsonl")
    parser.add_argument(
        "--protocol", default="generative", choices=("flowertune", "generative", "cot")
    )
    parser.add_argument("--n", type=int, default=32, help="questions (the first N)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the protocol's")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    backend = HFBackend(args.model, dtype=args.dtype, batch_tokens=args.batch_tokens)
    backend.load()
    requests = build_requests(
        backend, args.task, args.data, args.protocol, args.n, args.max_new_tokens
    )
    prompt_tokens = sum(len(backend.prompt_ids(r)) for r in requests)
    warm = [GenerateRequest(requests[0].prompt, 2)]
    backend.generate(warm)  # first calls pay for lazy initialisation on both sides
    run_one_at_a_time(backend, warm)

    batched, batched_s = run_batched(backend, requests)
    single, single_s = run_one_at_a_time(backend, requests)
    load_after = os.getloadavg()

    mismatches = [
        {"index": i, "first_difference": first_difference(list(r.tokens), s)}
        for i, (r, s) in enumerate(zip(batched, single, strict=True))
        if list(r.tokens) != s
    ]
    new_batched = sum(r.n_new_tokens for r in batched)
    new_single = sum(len(s) for s in single)
    report = {
        "model": args.model,
        "dtype": args.dtype,
        "protocol": args.protocol,
        "task": args.task,
        "questions": len(requests),
        "max_new_tokens": requests[0].max_new_tokens,
        "threads": torch.get_num_threads(),
        "batches": [len(b) for b in backend.plan_generate(requests)],
        "prompt_tokens": prompt_tokens,
        "new_tokens": {"batched": new_batched, "one_at_a_time": new_single},
        "median_new_tokens": statistics.median(r.n_new_tokens for r in batched),
        "stopped_by": {k: sum(r.stopped_by == k for r in batched) for k in ("eos", "length")},
        "seconds": {"batched": round(batched_s, 2), "one_at_a_time": round(single_s, 2)},
        "new_tokens_per_s": {
            "batched": round(new_batched / batched_s, 2),
            "one_at_a_time": round(new_single / single_s, 2),
        },
        "all_tokens_per_s": {
            "batched": round((prompt_tokens + new_batched) / batched_s, 1),
            "one_at_a_time": round((prompt_tokens + new_single) / single_s, 1),
        },
        "speedup": round(single_s / batched_s, 2),
        "identical": f"{len(requests) - len(mismatches)}/{len(requests)}",
        "mismatches": mismatches,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
