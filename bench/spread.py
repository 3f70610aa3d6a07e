"""The reference's own spread across batch sizes, and where medboard falls in it.

In bfloat16 the reference's answers move with batch composition (padding changes the rounding
of near-tied log-likelihoods), so "the same accuracy" can only mean "inside the band the
reference itself spans". This script runs lm-evaluation-harness at several batch sizes and
medboard once, on the same model, dtype and data, and prints per task: the reference's accuracy
at each batch size, how many answers its runs change between themselves, medboard's accuracy,
how many answers medboard changes against each reference run, and whether medboard's accuracy
lies inside the reference's band.

    MEDBOARD_HOME=~/.cache/medboard python bench/spread.py --model <HF dir or .gguf> \\
        --dtype bfloat16 --tasks mmlu_college_medicine,mmlu_medical_genetics \\
        --ref-batch 1,8,16 --work /tmp/spread --out /tmp/spread.json

Runs already in --work are reused (a stopped run resumes with the batch sizes still missing);
--medboard-dir takes an existing `medboard eval --output` folder instead of running medboard.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from parity_compare import DEFAULT_TASKS, compare_task  # noqa: E402
from parity_outputs import Run, load_medboard, load_reference  # noqa: E402
from runners import (  # noqa: E402
    medboard_command,
    offline_env,
    reference_command,
    reference_configs,
    run_logged,
    write_json,
)
from speed import model_directory  # noqa: E402


@dataclass
class TaskSpread:
    task: str
    n: int
    reference: dict[str, float]  # batch size -> accuracy (%)
    reference_disagreements: tuple[int, int]  # fewest and most answers two batch sizes differ on
    medboard: float | None = None
    medboard_disagreements: tuple[int, int] | None = None  # against each reference run
    outside_points: float | None = None  # 0 inside the reference's band, else distance to it

    @property
    def low(self) -> float:
        return min(self.reference.values())

    @property
    def high(self) -> float:
        return max(self.reference.values())


def _accuracy(run: Run, task: str) -> float:
    value = run.tasks[task].metric("acc")
    if value is None:
        raise SystemExit(f"{task}: no accuracy in {run.folder}")
    return 100.0 * value


def _differ(a: Run, b: Run, task: str) -> int:
    """Answers that differ between two runs, on the questions both answered."""
    comparison = compare_task(a.tasks[task], b.tasks[task])
    return comparison.n_matched - comparison.agree


def spread(
    references: Mapping[str, Run], medboard: Run | None, tasks: Sequence[str]
) -> list[TaskSpread]:
    """Per task present in every run: the reference's band and medboard's place in it."""
    if len(references) < 2:
        raise SystemExit("a spread needs reference runs at two batch sizes at least")
    runs = [*references.values(), *([medboard] if medboard else [])]
    rows = []
    for task in tasks:
        if not all(task in run.tasks for run in runs):
            continue
        accuracy = {b: _accuracy(run, task) for b, run in references.items()}
        pairs = [_differ(a, b, task) for a, b in itertools.combinations(references.values(), 2)]
        n = len(runs[0].tasks[task].samples)
        row = TaskSpread(task, n, accuracy, (min(pairs), max(pairs)))
        if medboard is not None:
            counts = [_differ(r, medboard, task) for r in references.values()]
            row.medboard = _accuracy(medboard, task)
            row.medboard_disagreements = (min(counts), max(counts))
            row.outside_points = max(row.low - row.medboard, row.medboard - row.high, 0.0)
        rows.append(row)
    return rows


def _span(pair: tuple[int, int] | None) -> str:
    if pair is None:
        return "-"
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"


def render(rows: Sequence[TaskSpread]) -> str:
    if not rows:
        return "no task present in every run"
    batches = list(rows[0].reference)
    head = ["task", "n", *(f"ref b{b}" for b in batches), "ref band (points)"]
    head += ["ref vs ref differ", "medboard", "medboard vs ref differ", "outside band"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.task, str(row.n), *(f"{row.reference[b]:.2f}" for b in batches)]
        cells += [f"{row.high - row.low:.2f}", _span(row.reference_disagreements)]
        cells += ["-" if row.medboard is None else f"{row.medboard:.2f}"]
        cells += [_span(row.medboard_disagreements)]
        cells += ["-" if row.outside_points is None else f"{row.outside_points:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _has_reference_output(folder: Path) -> bool:
    return folder.is_dir() and any(folder.rglob("samples_ref_*.jsonl"))


def run_missing(args: argparse.Namespace, tasks: Sequence[str]) -> tuple[dict[str, Run], Path]:
    """Run each reference batch size and medboard unless their outputs are already in --work."""
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = model_directory(args.model)
    env = offline_env()
    include_path = reference_configs(work / "ref_tasks", tasks, args.benchmarks)
    references = {}
    for batch in args.ref_batch:
        out = work / f"ref-b{batch}"
        if not _has_reference_output(out):
            command = reference_command(
                model,
                args.dtype,
                tasks,
                include_path,
                batch,
                out,
                args.device,
                args.limit,
                args.shots,
            )
            run_logged(command, work / f"ref-b{batch}.log", env)
        references[batch] = load_reference(out)
    if args.medboard_dir is not None:
        if not (args.medboard_dir / "results.json").exists():
            raise SystemExit(f"--medboard-dir {args.medboard_dir} has no results.json")
        return references, args.medboard_dir
    medboard_dir = work / "medboard"
    if not (medboard_dir / "results.json").exists():
        extra = [*args.medboard_args, *(["--shots", str(args.shots)] if args.shots else [])]
        command = medboard_command(
            model, args.dtype, tasks, medboard_dir, args.device, args.limit, extra
        )
        run_logged(command, work / "medboard.log", env)
    return references, medboard_dir


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="GGUF file or HF model directory")
    parser.add_argument("--tasks", default=None, help="medboard task names (default: all nine)")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--ref-batch", default="1,8,16", help="reference batch sizes, e.g. 1,8,16")
    parser.add_argument("--limit", type=int, default=None, help="first N questions per task")
    parser.add_argument("--shots", type=int, default=0, help="few-shot examples (MMLU tasks)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--benchmarks", type=Path, default=None, help="normalized JSONL folder")
    parser.add_argument("--medboard-dir", type=Path, default=None, help="existing medboard output")
    parser.add_argument(
        "--medboard-args", default="", help="extra medboard eval options, e.g. '-M compile=off'"
    )
    parser.add_argument("--work", type=Path, required=True, help="outputs and logs (reused)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    args.ref_batch = [b.strip() for b in args.ref_batch.split(",") if b.strip()]
    args.medboard_args = args.medboard_args.split()
    if args.medboard_dir is not None and args.medboard_args:
        parser.error("--medboard-args runs medboard; --medboard-dir reads an existing output")
    if len(args.ref_batch) < 2 or len(set(args.ref_batch)) != len(args.ref_batch):
        parser.error("--ref-batch needs two different batch sizes at least, e.g. 1,8,16")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else list(DEFAULT_TASKS)
    references, medboard_dir = run_missing(args, tasks)
    rows = spread(references, load_medboard(medboard_dir), tasks)
    print(render(rows))
    if args.out is not None:
        report = {"model": args.model, "dtype": args.dtype, "tasks": [asdict(r) for r in rows]}
        write_json(args.out, report)
        print(f"report: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
