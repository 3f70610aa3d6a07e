"""Command lines for the two tools, shared by bench/parity.py and bench/speed.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def offline_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, **extra}


def reference_configs(out: Path, tasks: Sequence[str], benchmarks: Path | None) -> str:
    """Write the lm-eval task configs for `tasks`; returns the folder for --include_path."""
    command = [sys.executable, str(BENCH / "lmeval_tasks.py"), "--out", str(out)]
    command += ["--tasks", ",".join(tasks)]
    if benchmarks is not None:
        command += ["--benchmarks", str(benchmarks)]
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    # its messages (a missing data file, an unknown task) go to the terminal as they are
    done = subprocess.run(command, env=offline_env(), stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"writing the reference's task configs failed (exit {done.returncode})")
    return done.stdout.strip().splitlines()[-1]


def reference_command(
    model: Path,
    dtype: str,
    tasks: Sequence[str],
    include_path: str,
    batch_size: str,
    output: Path,
    device: str = "cpu",
    limit: int | None = None,
    shots: int = 0,
) -> list[str]:
    """lm_eval on the hf backend with --log_samples, on the ref_<task> configs."""
    command = [sys.executable, "-m", "lm_eval", "--model", "hf"]
    command += ["--model_args", f"pretrained={model},dtype={dtype}"]
    command += ["--tasks", ",".join(f"ref_{t}" for t in tasks), "--include_path", include_path]
    command += ["--batch_size", str(batch_size), "--device", device]
    command += ["--log_samples", "--output_path", str(output)]
    if shots:
        command += ["--num_fewshot", str(shots)]
    if limit is not None:
        command += ["--limit", str(limit)]
    return command


def medboard_command(
    model: Path,
    dtype: str,
    tasks: Sequence[str],
    output: Path,
    device: str = "cpu",
    limit: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    command = [sys.executable, "-c", "from medboard.cli import main; main()", "eval"]
    command += ["--model", str(model), "--tasks", ",".join(tasks), "--dtype", dtype]
    command += ["--device", device, "--output", str(output), *extra]
    if limit is not None:
        command += ["--limit", str(limit)]
    return command


@dataclass(frozen=True)
class Timed:
    wall_seconds: float
    peak_rss_bytes: int


def run_logged(command: list[str], log: Path, env: dict[str, str]) -> Timed:
    """Run to completion with output in `log`; wall time and the process tree's peak RSS."""
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
        raise SystemExit(f"command failed ({process.returncode}), see {log}:\n" + "\n".join(tail))
    return Timed(wall, usage.ru_maxrss * 1024)  # Linux reports kilobytes


def write_json(path: Path, data: Any) -> None:
    """A report as indented JSON, its folder made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
