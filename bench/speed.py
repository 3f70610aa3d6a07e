"""Speed of medboard against lm-evaluation-harness: same model, dtype, data and machine.

For each model: the reference (hf backend, the same ref_<task> configs as bench/parity.py) runs
once per candidate batch size and the fastest is kept; then medboard and the reference at that
batch size alternate until each has --repeats runs (the reference's selection run counts as its
first). Every run is a fresh process from start to finish (model loading included), with no
cache of results: medboard gets an empty run store over the same data store (it shares, as every
home on a machine does, torch's compile cache and medboard's machine cache: probe verdicts and
built kernels; --cold-machine gives each run an empty machine cache too, a first run on the
machine). Reported per tool, as medians:
wall time, questions/s, prompt tokens/s, peak RSS of the process tree, and the fraction of the
machine's matmul peak (2 x non-embedding parameters x prompt tokens / wall / peak), which the
script measures first. The accuracies of the last runs of both tools are compared as in
bench/parity.py, so a speedup that changed the numbers shows.

    MEDBOARD_HOME=~/.cache/medboard python bench/speed.py \\
        --model ~/.cache/medical-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --dtype bfloat16 --repeats 3 --ref-batch 1,8,32,auto --work /tmp/speed --out speed.json

A .gguf model is dequantized once by medboard into a model directory both tools then load.

--every N times both tools on every Nth question of each task's evaluated split (the first, the
(N+1)th, ...) instead of the first --limit per task: a sample with the whole suite's mix of
tasks, subjects and prompt lengths, for machines where the full suite takes hours. The sampled
files are written under --work (few-shot pools whole), the reference's configs read them, and
medboard's fresh homes share one data store they are imported into.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from lmeval_tasks import default_benchmarks  # noqa: E402
from parity_compare import compare_runs, criteria_for  # noqa: E402
from parity_outputs import load_medboard, load_reference  # noqa: E402
from runners import (  # noqa: E402
    medboard_command,
    offline_env,
    reference_command,
    reference_configs,
    run_logged,
    write_json,
)

OPEN_MEDICAL = [
    t.name for t in __import__("medboard.tasks").tasks.REGISTRY.resolve("open_medical", None)
]


def matmul_peak(dtype: str, size: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of a square torch product at torch's default thread count.

    Measured as torch.nn.functional.linear, the product a model's layers run: on a CPU without
    AVX-512 BF16 or AMX, torch's bfloat16 `a @ b` falls back to a loop about 40x slower than
    its bfloat16 linear (0.28 against 11.6 GFLOP/s on an AMD EPYC with AVX2), which is not the
    machine's peak. One warm-up product, then as many as fit in `seconds` (at least one).
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    a = torch.randn(size, size, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, dtype=getattr(torch, dtype))
    F.linear(a, b)
    runs, started = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - started < seconds:
        F.linear(a, b)
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started)


def model_directory(model: str) -> Path:
    """A transformers directory for both tools (a GGUF file is dequantized by medboard once)."""
    from medboard.backends.hf import HFBackend

    return HFBackend(model).model_dir().resolve()


def non_embedding_parameters(directory: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())  # a tied head is counted once
    embeddings = {id(model.get_input_embeddings().weight): model.get_input_embeddings()}
    head = model.get_output_embeddings()
    if head is not None:
        embeddings.setdefault(id(head.weight), head)
    return total - sum(m.weight.numel() for m in embeddings.values())


def fresh_medboard_home(work: Path, name: str, data_home: Path | None = None) -> Path:
    """An empty run store over a data store (the user's by default), so medboard computes
    everything anew."""
    from medboard.paths import home

    target = work / "homes" / name
    target.mkdir(parents=True, exist_ok=True)
    link = target / "data"
    if not link.exists():
        link.symlink_to(((data_home or home()) / "data").resolve(), target_is_directory=True)
    return target


def sampled_benchmarks(source: Path, out: Path, tasks: list[str], every: int) -> Path:
    """Every `every`-th line (from the first) of each split the tasks evaluate, copied from the
    normalized benchmarks folder `source` into `out`; the datasets' other splits (few-shot
    pools) are copied whole. Returns `out`."""
    from medboard.tasks import REGISTRY

    chosen = [REGISTRY.task(name) for name in tasks]
    evaluated = {(t.dataset, t.split) for t in chosen}
    for dataset in sorted({t.dataset for t in chosen}):
        files = sorted((source / dataset).glob("*.jsonl"))
        if not any((dataset, f.stem) in evaluated for f in files):
            raise SystemExit(f"{source / dataset}: no evaluated split to sample")
        (out / dataset).mkdir(parents=True, exist_ok=True)
        for file in files:
            lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
            if (dataset, file.stem) in evaluated:
                lines = lines[::every]
            (out / dataset / file.name).write_text("".join(lines), encoding="utf-8")
    return out


def sampled_data_home(args: argparse.Namespace) -> Path | None:
    """With --every: the sampled files under --work and a medboard home holding them."""
    if args.every is None:
        return None
    from medboard.data.importer import import_path
    from medboard.data.store import DataStore

    source = (args.benchmarks or default_benchmarks()).resolve()
    folder = args.work / f"benchmarks-every-{args.every}"
    args.benchmarks = sampled_benchmarks(source, folder, args.tasks, args.every)
    data_home = args.work / "homes" / f"data-every-{args.every}"
    store = DataStore(data_home / "data")
    import_path(folder, store)
    check_sample(store, args.tasks, args.every)
    return data_home


def check_sample(store: Any, tasks: list[str], every: int) -> None:
    """Stop before timing anything if the sample leaves a task (an MMLU subject, which shares
    its file with the others) in the data store without questions."""
    from medboard.errors import DataError
    from medboard.tasks import REGISTRY

    for name in tasks:
        try:
            store.task_data(REGISTRY.task(name), allow_mismatch=True)
        except DataError as error:
            raise SystemExit(f"--every {every}: {error}; take a smaller N") from None


def run_summary(tool: str, batch: str, timed: Any, questions: int, tokens: int) -> dict:
    return {
        "tool": tool,
        "batch": batch,
        "wall_seconds": round(timed.wall_seconds, 2),
        "peak_rss_gib": round(timed.peak_rss_bytes / 2**30, 3),
        "questions_per_s": round(questions / timed.wall_seconds, 3),
        "tokens_per_s": round(tokens / timed.wall_seconds, 1),
    }


def median_of(runs: list[dict], flops: float, peaks: dict[str, float]) -> dict[str, Any]:
    wall = statistics.median(r["wall_seconds"] for r in runs)
    return {
        "runs": len(runs),
        "batch": runs[0]["batch"],
        "wall_seconds": round(wall, 2),
        "questions_per_s": round(statistics.median(r["questions_per_s"] for r in runs), 3),
        "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in runs), 1),
        "peak_rss_gib": round(max(r["peak_rss_gib"] for r in runs), 3),
        "pct_bf16_peak": round(100 * flops / wall / peaks["bfloat16"], 1),
        "pct_f32_peak": round(100 * flops / wall / peaks["float32"], 1),
    }


def bench_model(
    args: argparse.Namespace, model: str, peaks: dict[str, float], data_home: Path | None
) -> dict[str, Any]:
    tasks = args.tasks
    directory = model_directory(model)
    label = Path(model).name
    work = args.work / label
    include_path = reference_configs(work / "ref_tasks", tasks, args.benchmarks)
    params = non_embedding_parameters(directory)
    env = offline_env()

    def run_medboard(index: int) -> tuple[dict, Path]:
        out = work / f"medboard-{index}"
        home = fresh_medboard_home(work, f"run-{index}-{time.time_ns()}", data_home)
        extra = [*args.medboard_args, *(["--shots", str(args.shots)] if args.shots else [])]
        if data_home is not None:  # a sample is not the published benchmark medboard checks for
            extra.append("--allow-data-mismatch")
        command = medboard_command(
            directory, args.dtype, tasks, out, args.device, args.limit, extra
        )
        run_env = {**env, "MEDBOARD_HOME": str(home)}
        if args.cold_machine:  # probes timed and kernels built again, in the run's home
            run_env["MEDBOARD_MACHINE_CACHE"] = str(home)
        timed = run_logged(command, out.with_suffix(".log"), run_env)
        summary = json.loads((out / "results.json").read_text())
        questions = sum(r["n_samples"] for r in summary["runs"].values())
        tokens = sum(r["prompt_tokens"] for r in summary["runs"].values())
        return {
            **run_summary("medboard", "-", timed, questions, tokens),
            "q": questions,
            "t": tokens,
        }, out

    def run_reference(
        batch: str, index: int, questions: int, tokens: int, limit: int | None = args.limit
    ) -> tuple[dict, Path]:
        out = work / f"ref-b{batch}-{index}" if limit == args.limit else work / f"sel-b{batch}"
        command = reference_command(
            directory, args.dtype, tasks, include_path, batch, out, args.device, limit, args.shots
        )
        timed = run_logged(command, out.with_suffix(".log"), env)
        return run_summary("lm-eval", batch, timed, questions, tokens), out

    # The first medboard run also counts the questions and prompt tokens both tools read.
    first, mb_out = run_medboard(0)
    questions, tokens = first.pop("q"), first.pop("t")
    medboard_runs = [first]
    selection: dict[str, dict] = {}
    outputs: dict[str, Path] = {}
    # With --select-limit the batch sizes race on the first N questions per task (the same for
    # all of them), and every timed run then uses the winner on the full --limit.
    select_limit = args.select_limit or args.limit
    for batch in args.ref_batch:
        selection[batch], outputs[batch] = run_reference(batch, 0, questions, tokens, select_limit)
    best = min(selection, key=lambda b: selection[b]["wall_seconds"])
    reference_runs: list[dict] = []
    if select_limit == args.limit:
        reference_runs.append(selection[best])
        ref_out = outputs[best]
    else:
        run, ref_out = run_reference(best, 0, questions, tokens)
        reference_runs.append(run)
    for index in range(1, args.repeats):
        run, mb_out = run_medboard(index)
        run.pop("q"), run.pop("t")
        medboard_runs.append(run)
        run, ref_out = run_reference(best, index, questions, tokens)
        reference_runs.append(run)

    flops = 2.0 * params * tokens
    medboard = median_of(medboard_runs, flops, peaks)
    reference = median_of(reference_runs, flops, peaks)
    report = compare_runs(
        load_reference(ref_out), load_medboard(mb_out), criteria_for(args.dtype, False), 1.0
    )
    return {
        "model": model,
        "model_dir": str(directory),
        "non_embedding_parameters": params,
        "questions": questions,
        "prompt_tokens": tokens,
        "reference_batch_selection": {b: r["wall_seconds"] for b, r in selection.items()},
        "selection_limit": select_limit,
        "medboard": medboard,
        "reference": reference,
        "speedup_questions_per_s": round(
            medboard["questions_per_s"] / reference["questions_per_s"], 2
        ),
        "rss_ratio": round(medboard["peak_rss_gib"] / reference["peak_rss_gib"], 2),
        "accuracy": {
            c.task: {"ref": c.acc_a, "medboard": c.acc_b, "diff_points": c.acc_diff_points}
            for c in report.tasks
        },
        "max_abs_acc_diff_points": max(abs(c.acc_diff_points or 0.0) for c in report.tasks),
        "parity_failures": report.failures,
        "runs": {"medboard": medboard_runs, "reference": reference_runs},
    }


def render(result: dict[str, Any]) -> str:
    limit = result["selection_limit"]
    selected_on = f"first {limit} per task" if limit else "on the timed questions"
    lines = [
        f"### {Path(result['model']).name}: {result['questions']} questions, "
        f"{result['prompt_tokens']:,} prompt tokens, "
        f"{result['non_embedding_parameters'] / 1e6:.1f}M non-embedding parameters",
        "",
        "| tool | batch | runs | wall s (median) | questions/s | prompt tokens/s | peak RSS GiB "
        "| % bf16 peak | % f32 peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in ("reference", "medboard"):
        r = result[tool]
        name = "lm-eval" if tool == "reference" else "medboard"
        lines.append(
            f"| {name} | {r['batch']} | {r['runs']} | {r['wall_seconds']:.1f} | "
            f"{r['questions_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['peak_rss_gib']:.2f} | "
            f"{r['pct_bf16_peak']:.1f} | {r['pct_f32_peak']:.1f} |"
        )
    lines += [
        "",
        f"speedup (questions/s): **{result['speedup_questions_per_s']:.2f}x**; "
        f"peak RSS ratio {result['rss_ratio']:.2f}; "
        f"reference batch selection (wall s, {selected_on}): "
        f"{result['reference_batch_selection']}; "
        f"max |acc difference| {result['max_abs_acc_diff_points']:.2f} points",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="GGUF file or HF dir")
    parser.add_argument(
        "--tasks",
        default=",".join(OPEN_MEDICAL),
        help="medboard task names (default: open_medical)",
    )
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="first N questions per task")
    parser.add_argument(
        "--every",
        type=int,
        default=None,
        help="every Nth question of each task (the suite's mix), instead of --limit",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool (median)")
    parser.add_argument(
        "--shots", type=int, default=0, help="few-shot examples (both tools; MMLU tasks)"
    )
    parser.add_argument(
        "--select-limit",
        type=int,
        default=None,
        help="choose the reference's batch size on the first N questions per task "
        "(default: on the timed data itself)",
    )
    parser.add_argument(
        "--ref-batch", default="16", help="reference batch sizes to try, e.g. 1,8,32,auto"
    )
    parser.add_argument(
        "--medboard-args",
        default="",
        help="extra medboard eval options, e.g. '-M batch_tokens=4096'",
    )
    parser.add_argument(
        "--cold-machine",
        action="store_true",
        help="each medboard run with an empty machine cache (probes and kernel builds included)",
    )
    parser.add_argument("--benchmarks", type=Path, default=None, help="normalized JSONL folder")
    parser.add_argument("--work", type=Path, required=True, help="work folder (outputs, logs)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.ref_batch = [b.strip() for b in args.ref_batch.split(",") if b.strip()]
    args.medboard_args = args.medboard_args.split()
    args.work = args.work.resolve()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.every is not None and (args.every < 1 or args.limit or args.select_limit):
        parser.error("--every must be at least 1, and takes the place of --limit/--select-limit")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    machine = {
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "unknown",
        )
        if Path("/proc/cpuinfo").exists()
        else "unknown",
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    peaks = {dtype: matmul_peak(dtype) for dtype in ("bfloat16", "float32")}
    machine["matmul_tflops"] = {k: round(v / 1e12, 3) for k, v in peaks.items()}
    print(f"machine: {machine}", file=sys.stderr, flush=True)
    data_home = sampled_data_home(args)
    results = []
    for model in args.model:
        result = bench_model(args, model, peaks, data_home)
        results.append(result)
        print(render(result), flush=True)
    report = {
        "machine": machine,
        "dtype": args.dtype,
        "tasks": args.tasks,
        "limit": args.limit,
        "every": args.every,
        "shots": args.shots,
        "repeats": args.repeats,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": results,
    }
    if args.out is not None:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
