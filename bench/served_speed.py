"""Speed of medboard's openai backend against lm-evaluation-harness's local-completions, on the
same OpenAI-compatible server, model and questions.

    python bench/served_speed.py --base-url http://127.0.0.1:8000/v1 --model smollm2 \\
        --tokenizer MODEL_DIR --every 20 --concurrent 1,4,8 --work /tmp/served-speed

The server is started by the caller (bench/README's recipe, or tests/servers.py). The reference
runs at each `--concurrent` (lm-eval's num_concurrent) and its fastest counts; medboard runs
with its defaults (concurrency 8). Both read the same sample (`--every N`: every Nth question of
each task, as bench/speed.py). Reported: wall time, questions per second, the answers of both
(they must be the same), the prompt tokens each sent and, where the server exposes Prometheus
metrics (vLLM's /metrics, `vllm:prompt_tokens_total`), the prompt tokens it computed per question.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from parity_compare import compare_runs, criteria_for  # noqa: E402
from parity_outputs import load_medboard, load_reference  # noqa: E402
from runners import offline_env, reference_configs, run_logged, write_json  # noqa: E402
from speed import OPEN_MEDICAL, sampled_data_home  # noqa: E402

PROMPT_TOKENS = re.compile(r"^vllm:prompt_tokens_total\{[^}]*\}\s+([0-9.e+]+)", re.MULTILINE)


def computed_tokens(base_url: str) -> float | None:
    """The server's count of prompt tokens computed so far (vLLM's /metrics), or None."""
    origin = base_url.split("/v1")[0]
    try:
        with urllib.request.urlopen(f"{origin}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    found = PROMPT_TOKENS.findall(text)
    return sum(float(v) for v in found) if found else None


def timed(command: list[str], log: Path, env: dict[str, str], base_url: str) -> dict[str, Any]:
    before = computed_tokens(base_url)
    run = run_logged(command, log, env)
    after = computed_tokens(base_url)
    computed = None if before is None or after is None else after - before
    return {"wall_seconds": round(run.wall_seconds, 2), "computed_tokens": computed}


def reference(args: argparse.Namespace, include: str, concurrent: int) -> list[str]:
    model_args = ",".join(
        [
            f"model={args.model}",
            f"base_url={args.base_url}/completions",
            f"num_concurrent={concurrent}",
            "max_retries=3",
            "tokenized_requests=True",
            f"tokenizer={args.tokenizer}",
        ]
    )
    command = [sys.executable, "-m", "lm_eval", "--model", "local-completions"]
    command += ["--model_args", model_args, "--tasks", ",".join(f"ref_{t}" for t in args.tasks)]
    command += ["--include_path", include, "--batch_size", "1", "--log_samples"]
    return command + ["--output_path", str(args.work / f"ref-c{concurrent}")]


def medboard(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-c", "from medboard.cli import main; main()", "eval"]
    command += ["--model", f"openai:{args.model}", "-M", f"base_url={args.base_url}"]
    command += ["--tasks", ",".join(args.tasks), "--allow-data-mismatch"]
    return command + ["--output", str(args.work / "medboard")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the server, e.g. http://HOST:PORT/v1")
    parser.add_argument("--model", required=True, help="the served model's name")
    parser.add_argument("--tokenizer", required=True, help="its tokenizer (for lm-eval)")
    parser.add_argument("--tasks", default=",".join(OPEN_MEDICAL))
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--concurrent", default="1,4,8", help="lm-eval num_concurrent to try")
    parser.add_argument("--benchmarks", type=Path, default=None)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.work = args.work.resolve()
    args.base_url = args.base_url.rstrip("/")
    data_home = sampled_data_home(args)
    include = reference_configs(args.work / "ref_tasks", args.tasks, args.benchmarks)
    env = offline_env()

    mb_env = {**env, "MEDBOARD_HOME": str(args.work / "homes" / f"run-{time.time_ns()}")}
    Path(mb_env["MEDBOARD_HOME"]).mkdir(parents=True)
    (Path(mb_env["MEDBOARD_HOME"]) / "data").symlink_to(Path(data_home, "data").resolve())
    ours = timed(medboard(args), args.work / "medboard.log", mb_env, args.base_url)
    summary = json.loads((args.work / "medboard" / "results.json").read_text())
    questions = sum(r["n_samples"] for r in summary["runs"].values())
    theirs = {}
    for concurrent in (int(c) for c in args.concurrent.split(",")):
        log = args.work / f"ref-c{concurrent}.log"
        theirs[concurrent] = timed(reference(args, include, concurrent), log, env, args.base_url)
    best = min(theirs, key=lambda c: theirs[c]["wall_seconds"])
    compared = compare_runs(
        load_reference(args.work / f"ref-c{best}"),
        load_medboard(args.work / "medboard"),
        criteria_for("float32", False),
        1.0,
    )
    per_question = {
        name: (run["computed_tokens"] / questions if run["computed_tokens"] else None)
        for name, run in (("medboard", ours), ("lm-eval", theirs[best]))
    }
    result = {
        "questions": questions,
        "medboard": ours,
        "lm_eval": theirs,
        "lm_eval_best_concurrent": best,
        "speedup_questions_per_s": round(theirs[best]["wall_seconds"] / ours["wall_seconds"], 2),
        "computed_tokens_per_question": per_question,
        "answers_differ": sum(t.n_matched - t.agree for t in compared.tasks),
        "accuracy": {t.task: (t.acc_a, t.acc_b) for t in compared.tasks},
        "max_abs_logprob_diff": max(t.max_abs_delta for t in compared.tasks),
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
