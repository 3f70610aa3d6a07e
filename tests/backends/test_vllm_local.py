"""The vllm backend: vLLM's engine in the process that evaluates (a GPU user's way), run here
on the CPU build in its own venv (MEDBOARD_TEST_VLLM, .ci/servers.sh) with medboard's source on
its path, against the transformers backend on the same folder and questions."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from medboard.backends import registry
from medboard.evaluation import evaluate_spec
from medboard.runner import EvalOptions
from medboard.tasks import REGISTRY
from tests.servers import VLLM

SRC = Path(__file__).parents[2] / "src"
TASKS = "medqa_4options,pubmedqa,mmlu_anatomy"
LIMIT = 4
SCRIPT = """
import json, sys
from medboard.backends import registry
from medboard.evaluation import evaluate_spec
from medboard.runner import EvalOptions
from medboard.tasks import REGISTRY

def main():
    spec = registry.resolve("vllm:" + sys.argv[1], {"dtype": "float32", "enforce_eager": "true",
                            "max_model_len": "2048"})
    tasks = REGISTRY.resolve(None, sys.argv[2])
    done = evaluate_spec(spec, tasks, EvalOptions(limit=int(sys.argv[3])))
    print(json.dumps({"identity": done.identity, "samples": [r.samples_file for r in done.results],
                      "keys": [r.key for r in done.results]}))

if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
"""


def test_vllm_in_process_gives_the_transformers_float32_numbers(
    model_dir: Path, home: Path, tmp_path: Path
) -> None:
    if not VLLM:
        pytest.skip("MEDBOARD_TEST_VLLM is not set (.ci/servers.sh installs vLLM's CPU build)")
    script = tmp_path / "evaluate.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC), "VLLM_CPU_KVCACHE_SPACE": "2",
           "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    done = subprocess.run(
        [VLLM, str(script), str(model_dir), TASKS, str(LIMIT)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith('{"identity"')]
    theirs = json.loads(printed[-1])  # vLLM logs to stdout too
    assert theirs["identity"]["backend"].startswith("vllm-")
    assert theirs["identity"]["server"].endswith("(in process)")
    options = EvalOptions(limit=LIMIT)
    spec = registry.resolve(str(model_dir), {"dtype": "float32"})
    ours = evaluate_spec(spec, REGISTRY.resolve(None, TASKS), options)
    # the same weights (the same content hash) computed by another engine: other runs
    assert theirs["identity"]["revision"] == ours.identity["revision"]
    assert not set(theirs["keys"]) & {r.key for r in ours.results}
    deltas, same, total = [], 0, 0
    for path, result in zip(theirs["samples"], ours.results, strict=True):
        mine = {
            r["id"]: r for r in map(json.loads, Path(result.samples_file).read_text().splitlines())
        }
        for row in map(json.loads, Path(path).read_text().splitlines()):
            deltas += [
                abs(a - b)
                for a, b in zip(row["logprobs"], mine[row["id"]]["logprobs"], strict=True)
            ]
            same += row["pred"] == mine[row["id"]]["pred"]
            total += 1
    assert total == LIMIT * 3 and max(deltas) < 1e-3 and same == total, (max(deltas), same)
