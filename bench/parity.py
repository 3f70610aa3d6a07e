"""Compare medboard with lm-evaluation-harness, per choice log-likelihood, on the same model.

Three modes:

  compare existing outputs (an `lm_eval --log_samples --output_path` folder and a
  `medboard eval --output` folder):

    python bench/parity.py --ref-dir /tmp/ref_out --medboard-dir /tmp/mb_out --check

  run both tools on one HF model directory, then compare (configs from bench/lmeval_tasks.py):

    MEDBOARD_HOME=/tmp/mbhome python bench/parity.py --run --model /tmp/smollm2-f32 \\
        --tasks medqa_4options,headqa_en --limit 3 --work /tmp/parity_try --check

  compare two reference runs with each other (the reference's own spread, e.g. bf16 batch 16
  against batch 1):

    python bench/parity.py --ref-dir /tmp/ref_bf16_b16 --ref-dir-b /tmp/ref_bf16_b1

Samples are matched by id (the reference configs keep medboard's `id` in every doc). The
reference's predictions are recomputed from its log-likelihoods the way lm-eval does it: argmax
with ties to the first choice, and for acc_norm the log-likelihood divided by the character
length of the choice string (without the leading target delimiter), taken from the medboard
samples' `choices`.

Criteria of --check: float32: max |delta loglik| <= 1e-3, acc within 0.1 point, prediction
agreement >= 99.5% (acc_norm agreement too where both tools report acc_norm), same gold labels
and the same samples; bfloat16 (or float16): only |delta acc| <= --tolerance points; reference
against reference: |delta acc| <= --tolerance points.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# bench/ is not a package: put this script's folder on sys.path so that its sibling modules
# import however the script is started (`python bench/parity.py` from any cwd, or by file path).
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from parity_compare import DEFAULT_TASKS, compare_runs, criteria_for, render_report  # noqa: E402
from parity_outputs import load_medboard, load_reference  # noqa: E402
from runners import (  # noqa: E402
    medboard_command,
    offline_env,
    reference_command,
    reference_configs,
    run_logged,
    write_json,
)

# ---------------------------------------------------------------------------------------------
# Running both tools


def run_both(args: argparse.Namespace, tasks: Sequence[str]) -> tuple[Path, Path]:
    """Generate the configs, run lm-eval then medboard; returns (ref output, medboard output)."""
    work: Path = args.work.resolve()
    model = Path(args.model).resolve()
    if not (model / "config.json").exists():
        raise SystemExit(f"{model} is not a Hugging Face model directory (no config.json)")
    env = offline_env()
    work.mkdir(parents=True, exist_ok=True)
    include_path = reference_configs(work / "ref_tasks", tasks, args.benchmarks)
    ref_out, mb_out = work / "ref", work / "medboard"
    command = reference_command(
        model,
        args.dtype,
        tasks,
        include_path,
        str(args.batch_size),
        ref_out,
        args.device,
        args.limit,
        args.shots,
    )
    run_logged(command, work / "ref.log", env)
    extra = ["--shots", str(args.shots)] if args.shots else []
    command = medboard_command(model, args.dtype, tasks, mb_out, args.device, args.limit, extra)
    run_logged(command, work / "medboard.log", env)
    return ref_out, mb_out


# ---------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Modes: --ref-dir with --medboard-dir; --run; --ref-dir with --ref-dir-b.",
    )
    parser.add_argument("--ref-dir", type=Path, help="lm-eval --output_path folder (side A)")
    parser.add_argument("--medboard-dir", type=Path, help="medboard eval --output folder")
    parser.add_argument("--ref-dir-b", type=Path, help="a second lm-eval output folder (side B)")
    parser.add_argument("--run", action="store_true", help="run lm-eval and medboard first")
    parser.add_argument("--model", help="HF model directory (--run)")
    parser.add_argument("--tasks", default=None, help="comma-separated medboard task names")
    parser.add_argument("--limit", type=int, default=None, help="first N questions per task")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=("float32", "bfloat16", "float16"),
        help="float32 or bfloat16 (--run: default float32; compare: from the outputs)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="lm-eval batch size (--run)")
    parser.add_argument(
        "--shots", type=int, default=0, help="few-shot examples, both tools (--run; MMLU tasks)"
    )
    parser.add_argument("--device", default="cpu", help="device for both tools (--run)")
    parser.add_argument("--benchmarks", type=Path, default=None, help="normalized JSONL folder")
    parser.add_argument("--work", type=Path, default=None, help="work folder (--run)")
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--check", action="store_true", help="exit 1 if a criterion fails")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="acc points allowed in bfloat16 and reference-vs-reference (default 1.0)",
    )
    args = parser.parse_args(argv)
    if args.run:
        if args.model is None or args.work is None:
            parser.error("--run needs --model and --work")
        if args.ref_dir or args.medboard_dir or args.ref_dir_b:
            parser.error("--run writes its own outputs: no --ref-dir/--medboard-dir/--ref-dir-b")
        args.dtype = args.dtype or "float32"
    elif args.ref_dir is None or (args.medboard_dir is None) == (args.ref_dir_b is None):
        parser.error("give --run, or --ref-dir with exactly one of --medboard-dir, --ref-dir-b")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    if args.run:
        ref_dir, mb_dir = run_both(args, tasks or list(DEFAULT_TASKS))
        a, b = load_reference(ref_dir), load_medboard(mb_dir)
    else:
        a = load_reference(args.ref_dir)
        b = load_reference(args.ref_dir_b) if args.ref_dir_b else load_medboard(args.medboard_dir)
    dtype = args.dtype or b.dtype or a.dtype
    if not args.ref_dir_b and a.dtype and b.dtype and a.dtype != b.dtype:
        print(f"warning: dtypes differ: lm-eval {a.dtype}, medboard {b.dtype}", file=sys.stderr)
    report = compare_runs(
        a, b, criteria_for(dtype, args.ref_dir_b is not None), args.tolerance, tasks
    )
    print(render_report(report))
    if args.report is not None:
        write_json(args.report, report.to_json())
        print(f"report: {args.report}", file=sys.stderr)
    return 1 if args.check and report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
