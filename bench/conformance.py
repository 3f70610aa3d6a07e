"""One model through two backends, on the same questions: how far their numbers are apart.

    python bench/conformance.py --a "MODEL_DIR -M dtype=float32" \\
        --b "openai:smollm2 -M base_url=http://127.0.0.1:8000/v1" \\
        --tasks medqa_4options,pubmedqa --limit 100 --work /tmp/conformance [--out report.json]
    python bench/conformance.py --compare A_OUTPUT B_OUTPUT   # two `medboard eval --output` folders

Each side is a model spec as `medboard eval` takes it (the model, then -M arguments). Both run
`medboard eval` with the same tasks and limit (the data store of MEDBOARD_HOME); the report
gives, per task and over all: per-choice log-likelihood differences (max, 99th percentile,
mean), the share of questions where both pick the same choice (acc and acc_norm), and the
accuracy of each side with their difference in points. `--compare` reads two folders written
before (a run with --limit against a full one compares the questions both have). No harness
publishes this for served models; the float32 criterion of issue 32 is every choice within
1e-3 and identical answers.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runners import offline_env, run_logged, write_json  # noqa: E402


def eval_command(spec: str, tasks: str, limit: int | None, output: Path) -> list[str]:
    model, *args = shlex.split(spec)
    command = [sys.executable, "-c", "from medboard.cli import main; main()", "eval"]
    command += ["--model", model, *args, "--tasks", tasks, "--output", str(output)]
    command += ["--allow-data-mismatch"]
    return command + (["--limit", str(limit)] if limit else [])


def read_samples(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {sample id: record}} of a `medboard eval --output` folder."""
    found = {}
    for path in sorted(folder.glob("samples_*.jsonl")):
        task = path.stem.removeprefix("samples_")
        found[task] = {r["id"]: r for r in map(json.loads, path.open(encoding="utf-8"))}
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def compare(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The differences between two sides' samples of one task (matched by id)."""
    ids = [i for i in a if i in b]
    deltas = [
        abs(x - y) for i in ids for x, y in zip(a[i]["logprobs"], b[i]["logprobs"], strict=True)
    ]
    agree = sum(a[i]["pred"] == b[i]["pred"] for i in ids)
    agree_norm = sum(a[i].get("pred_norm") == b[i].get("pred_norm") for i in ids)
    acc_a = sum(a[i]["acc"] for i in ids) / max(len(ids), 1)
    acc_b = sum(b[i]["acc"] for i in ids) / max(len(ids), 1)
    return {
        "questions": len(ids),
        "choices": len(deltas),
        "max_abs": max(deltas, default=0.0),
        "p99_abs": percentile(deltas, 0.99),
        "mean_abs": sum(deltas) / max(len(deltas), 1),
        "over_1e-3": sum(d > 1e-3 for d in deltas),
        "agree": agree / max(len(ids), 1),
        "agree_norm": agree_norm / max(len(ids), 1),
        "acc_a": acc_a,
        "acc_b": acc_b,
        "acc_diff_points": 100 * (acc_b - acc_a),
        "_deltas": deltas,
    }


def report(a: Path, b: Path) -> dict[str, Any]:
    sides = read_samples(a), read_samples(b)
    tasks = {t: compare(sides[0][t], sides[1][t]) for t in sides[0] if t in sides[1]}
    deltas = [d for row in tasks.values() for d in row.pop("_deltas")]
    questions = sum(r["questions"] for r in tasks.values())
    total = {
        "questions": questions,
        "choices": len(deltas),
        "max_abs": max(deltas, default=0.0),
        "p99_abs": percentile(deltas, 0.99),
        "mean_abs": sum(deltas) / max(len(deltas), 1),
        "over_1e-3": sum(d > 1e-3 for d in deltas),
        "agree": sum(r["agree"] * r["questions"] for r in tasks.values()) / max(questions, 1),
        "max_acc_diff_points": max((abs(r["acc_diff_points"]) for r in tasks.values()), default=0),
    }
    return {"tasks": tasks, "total": total}


def render(result: dict[str, Any]) -> str:
    lines = [
        "| task | questions | choices | max abs Δ | p99 abs Δ | Δ>1e-3 | same answer % | acc A | "
        "acc B | Δacc (pt) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, r in result["tasks"].items():
        lines.append(
            f"| {task} | {r['questions']} | {r['choices']} | {r['max_abs']:.2e} | "
            f"{r['p99_abs']:.2e} | {r['over_1e-3']} | {100 * r['agree']:.1f} | "
            f"{100 * r['acc_a']:.2f} | {100 * r['acc_b']:.2f} | {r['acc_diff_points']:+.2f} |"
        )
    t = result["total"]
    lines.append(
        f"| **all** | {t['questions']} | {t['choices']} | {t['max_abs']:.2e} | {t['p99_abs']:.2e} "
        f"| {t['over_1e-3']} | {100 * t['agree']:.1f} | | | max {t['max_acc_diff_points']:.2f} |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", help="the first side's model spec (-M included)")
    parser.add_argument("--b", help="the second side's model spec")
    parser.add_argument("--tasks", help="comma-separated medboard tasks")
    parser.add_argument("--limit", type=int, help="first N questions per task")
    parser.add_argument("--work", type=Path, help="folder for both outputs")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A_OUTPUT", "B_OUTPUT"))
    parser.add_argument("--out", type=Path, help="write the report as JSON")
    args = parser.parse_args()
    if args.compare:
        missing = [str(p) for p in args.compare if not any(p.glob("samples_*.jsonl"))]
        if missing:
            parser.error(f"no samples_*.jsonl in {', '.join(missing)}")
        result = report(*args.compare) | {"a": str(args.compare[0]), "b": str(args.compare[1])}
        print(render(result))
        if args.out is not None:
            write_json(args.out, result)
        return 0
    if not (args.a and args.b and args.tasks and args.work):
        parser.error("--a, --b, --tasks and --work are needed (or --compare A_OUTPUT B_OUTPUT)")
    timings = {}
    for side, spec in (("a", args.a), ("b", args.b)):
        command = eval_command(spec, args.tasks, args.limit, args.work / side)
        timings[side] = run_logged(command, args.work / f"{side}.log", offline_env()).wall_seconds
    result = report(args.work / "a", args.work / "b")
    result |= {"a": args.a, "b": args.b, "limit": args.limit, "wall_seconds": timings}
    print(render(result))
    if args.out is not None:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
