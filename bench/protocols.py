"""Compare models across evaluation protocols (loglik, flowertune, generative, cot) on a suite.

Runs `medboard eval --protocol P` for every model and protocol on the same questions, then
prints (and writes as Markdown and JSON) accuracy with its 95% bootstrap interval per task, the
average with its interval, the unparsed answers of the generative protocols, the wall time, and
a paired test (McNemar) between the first two models under each protocol.

    M=~/.cache/medical-models
    MEDBOARD_HOME=~/.cache/medboard python bench/protocols.py \\
        --model smollm2=$M/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --model gemma3=$M/gemma-3-270m/gemma-3-270m-q4_k_m.gguf \\
        --suite flowertune_medical --limit 50 --dtype bfloat16 --work /tmp/protocols \\
        --out docs/protocols_run.json --markdown docs/protocols_table.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runners import medboard_command, offline_env, run_logged  # noqa: E402

from medboard.cli_analysis import compare_outputs, read_output  # noqa: E402
from medboard.leaderboard.analysis import entry_analysis  # noqa: E402
from medboard.tasks import REGISTRY  # noqa: E402

PROTOCOLS = ("loglik", "flowertune", "generative", "cot")


def evaluate(
    name: str, model: Path, protocol: str, tasks: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    output = args.work / f"{name}-{protocol}"
    extra = ["--protocol", protocol]
    if protocol == "cot" and args.cot_max_new_tokens:
        extra += ["--max-new-tokens", str(args.cot_max_new_tokens)]
    if args.allow_data_mismatch:
        extra.append("--allow-data-mismatch")
    command = medboard_command(model, args.dtype, tasks, output, args.device, args.limit, extra)
    timed = run_logged(command, args.work / f"{name}-{protocol}.log", offline_env())
    summary, samples = read_output(output)
    analysis = entry_analysis(samples, track_tasks=tasks, seed=0)
    return {
        "model": name,
        "protocol": protocol,
        "output": str(output),
        "wall_seconds": round(timed.wall_seconds, 1),
        "peak_rss_gib": round(timed.peak_rss_bytes / 2**30, 2),
        "acc": {t: summary["results"][t]["acc"] for t in tasks},
        "n": {t: summary["results"][t]["n"] for t in tasks},
        "intervals": analysis["intervals"],
        "average": analysis["average"],
        "unparsed": analysis["unparsed"],
    }


def _pct(interval: dict[str, float] | None) -> str:
    if not interval:
        return "-"
    point, low, high = (100 * interval[k] for k in ("point", "low", "high"))
    return f"{point:.1f} [{low:.1f}, {high:.1f}]"


def markdown(rows: list[dict[str, Any]], tasks: list[str], pairs: list[dict[str, Any]]) -> str:
    head = ["model", "protocol", *tasks, "average", "unparsed", "wall (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        unparsed = row["unparsed"]
        missed = sum(u["unparsed"] for u in unparsed.values()) if unparsed else None
        total = sum(u["n"] for u in unparsed.values()) if unparsed else None
        cells = [row["model"], row["protocol"]]
        cells += [_pct(row["intervals"].get(t)) for t in tasks]
        cells += [_pct(row["average"]), "-" if missed is None else f"{missed}/{total}"]
        cells += [f"{row['wall_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if pairs:
        lines += [
            "",
            "| protocol | task | A - B (pt) | 95% interval | McNemar A only / B only | p |",
        ]
        lines.append("|---|---|---|---|---|---|")
        for pair in pairs:
            for task, found in pair["report"]["tasks"].items():
                test = found["mcnemar"]
                low, high = (100 * x for x in found["interval"])
                lines.append(
                    f"| {pair['protocol']} | {task} | {100 * found['difference']:+.1f} "
                    f"| [{low:+.1f}, {high:+.1f}] | {test['a_only']} / {test['b_only']} "
                    f"| {test['p_value']:.3f} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="name=path (repeat)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--suite", default="flowertune_medical")
    parser.add_argument("--limit", type=int, default=None, help="first N questions per task")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--allow-data-mismatch", action="store_true")
    parser.add_argument(
        "--cot-max-new-tokens", type=int, help="budget of the cot protocol (default its own)"
    )
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="JSON report")
    parser.add_argument("--markdown", type=Path, help="Markdown tables")
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    tasks = [t.name for t in REGISTRY.resolve(args.suite, None)]
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for protocol in args.protocols.split(","):
        for name, path in models.items():
            rows.append(evaluate(name, Path(path).expanduser(), protocol, tasks, args))
            print(json.dumps(rows[-1]["average"]), name, protocol, file=sys.stderr, flush=True)
    pairs = []
    names = list(models)
    if len(names) >= 2:
        for protocol in args.protocols.split(","):
            first, second = (args.work / f"{n}-{protocol}" for n in names[:2])
            pairs.append({"protocol": protocol, "report": compare_outputs(first, second)})
    table = markdown(rows, tasks, pairs)
    print(table)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "pairs": pairs}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
