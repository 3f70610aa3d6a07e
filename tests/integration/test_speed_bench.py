"""bench/speed.py end to end on a slice: both tools run, the report has every figure."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_parity_subset import REPO, reference_setup


@pytest.mark.slow
def test_speed_bench_reports_both_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    benchmarks, gguf, home = reference_setup(tmp_path, monkeypatch)
    from medboard.data.importer import import_path
    from medboard.data.store import DataStore

    import_path(benchmarks / "medqa", DataStore())
    out = tmp_path / "speed.json"
    env = {**os.environ, "MEDBOARD_HOME": str(home), "MEDBOARD_BENCHMARKS": str(benchmarks)}
    command = [sys.executable, str(REPO / "bench" / "speed.py"), "--model", str(gguf)]
    command += ["--tasks", "medqa_4options", "--limit", "3", "--dtype", "float32"]
    command += ["--repeats", "2", "--ref-batch", "16", "--work", str(tmp_path / "work")]
    command += ["--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["matmul_tflops"]["float32"] > 0
    (result,) = report["results"]
    assert result["questions"] == 3
    assert result["prompt_tokens"] > 100
    assert 100e6 < result["non_embedding_parameters"] < 120e6  # SmolLM2-135M: 106M
    assert set(result["reference_batch_selection"]) == {"16"}
    assert result["medboard"]["runs"] == result["reference"]["runs"] == 2
    assert result["speedup_questions_per_s"] > 0
    assert result["parity_failures"] == []  # float32: the same numbers
    assert "speedup (questions/s)" in done.stdout
