"""The openai backend against real servers started here (tests/servers.py): vLLM's OpenAI server
(CPU build) and llama-cpp-python's, on SmolLM2-135M-Instruct, against the transformers backend
on the same questions (the first of each task of the shared benchmarks)."""

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from medboard.backends import registry
from medboard.evaluation import Evaluated, evaluate_spec
from medboard.runner import EvalOptions
from medboard.tasks import REGISTRY
from tests.integration.test_parity_subset import smollm2
from tests.servers import llamacpp_server, vllm_server

TASKS = REGISTRY.resolve("open_medical", None)
LIMIT = 5  # the first questions of each task of the real benchmarks: 45 in all
LLAMA_LIMIT = 2  # llama.cpp asks again, wider, for choices not in its top 20: slower


@pytest.fixture(scope="module")
def vllm(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with vllm_server(model_dir, tmp_path_factory.mktemp("vllm")) as url:
        yield url


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llamacpp_server(smollm2(), tmp_path_factory.mktemp("llamacpp")) as url:
        yield url


def evaluated(spec: str, args: dict[str, str], limit: int = LIMIT) -> Evaluated:
    options = EvalOptions(limit=limit)
    return evaluate_spec(registry.resolve(spec, args), TASKS, options)


def differences(a: Evaluated, b: Evaluated) -> tuple[list[float], int, int]:
    """Per-choice |Δ| over all tasks, and (questions answered alike, questions)."""
    import json

    deltas, same, total = [], 0, 0
    for ra, rb in zip(a.results, b.results, strict=True):
        rows_a = [json.loads(line) for line in Path(ra.samples_file).read_text().splitlines()]
        lines_b = Path(rb.samples_file).read_text().splitlines()
        rows_b = {r["id"]: r for r in map(json.loads, lines_b)}
        for row in rows_a:
            other = rows_b[row["id"]]
            deltas += [abs(x - y) for x, y in zip(row["logprobs"], other["logprobs"], strict=True)]
            same += row["pred"] == other["pred"]
            total += 1
    return deltas, same, total


def prompt_tokens_computed(url: str) -> float:
    text = urllib.request.urlopen(url.replace("/v1", "/metrics"), timeout=10).read().decode()
    found = re.findall(r"^vllm:prompt_tokens_total\{[^}]*\}\s+([0-9.e+]+)", text, re.MULTILINE)
    return sum(float(v) for v in found)


def test_vllm_gives_the_transformers_float32_numbers(
    vllm: str, model_dir: Path, home: Path
) -> None:
    before = prompt_tokens_computed(vllm)
    served = evaluated("openai:smollm2", {"base_url": vllm})
    computed = prompt_tokens_computed(vllm) - before
    local = evaluated(str(model_dir), {"dtype": "float32"})
    deltas, same, total = differences(local, served)
    assert total == LIMIT * len(TASKS) and len(deltas) >= 4 * total - LIMIT
    assert max(deltas) < 1e-3, max(deltas)
    assert same == total
    identity = served.identity
    assert identity["server"].startswith("vllm ") and identity["dtype"] == "served"
    assert identity["revision"] == f"served:{identity['server'].replace(' ', '-')}:{model_dir}"
    # one-token choices: one prefill of the context per question, not one per choice
    contexts = sum(r.prompt_tokens for r in served.results)
    assert contexts <= computed <= 1.05 * contexts + 64, (computed, contexts)


def test_llama_cpp_on_the_same_gguf(llamacpp: str, home: Path) -> None:
    served = evaluated("openai:smollm2", {"base_url": llamacpp}, LLAMA_LIMIT)
    local = evaluated(str(smollm2()), {"dtype": "float32"}, LLAMA_LIMIT)
    deltas, same, total = differences(local, served)
    assert served.identity["server"].startswith("llama.cpp ")
    assert total == LLAMA_LIMIT * len(TASKS)
    # llama.cpp computes with the Q4_1 weights (its products quantize activations too),
    # transformers with them dequantized to float32: close, not equal
    deltas.sort()
    assert deltas[len(deltas) // 2] < 0.5 and same >= 0.7 * total, (deltas[-1], same)
