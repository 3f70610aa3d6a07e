"""Fixtures of the federated tests: a tiny Llama, small training files, a test Flower app."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import build_tiny_llama
from tests.federated.helpers import write_app, write_benchmarks

pytest.importorskip("flwr")
pytest.importorskip("flwr_datasets")
pytest.importorskip("peft")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """One torch thread while a federated test runs, and the thread count as it was after it:
    kept at one, it changed how later tests' products sum (oneDNN splits them by threads)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cache = tmp_path_factory.getbasetemp() / "hf-datasets-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class FlSetup:
    root: Path
    model: Path
    benchmarks: Path
    data: Path
    sha256: str

    def config(self, out: Path, **changes: Any) -> dict[str, Any]:
        """The run config of the CI run (4 sites, 3 rounds, LoRA, FedAvg), with changes."""
        config: dict[str, Any] = {
            "num-server-rounds": 3,
            "data-path": str(self.data),
            "out-dir": str(out),
            "strategy.fraction-train": 1.0,
            "strategy.fraction-evaluate": 1.0,
            "model.name": str(self.model),
            "train.local-steps": 5,
            "train.batch-size": 4,
            "train.learning-rate": 0.01,
            "train.max-seq-length": 64,
            "train.eval-examples": 4,
        }
        config.update(changes)
        return config

    def static(self, **changes: Any) -> dict[str, Any]:
        static: dict[str, Any] = {
            "dataset-sha256": self.sha256,
            "num-clients": 4,
            "partitioner": "iid",
            "eval-limit": 5,
            "comm-budget-gb": 1.0,
        }
        static.update(changes)
        return static

    def app(self, folder: Path, out: Path, static: dict | None = None, **changes: Any) -> Path:
        return write_app(folder, self.config(out, **changes), static or self.static())


@pytest.fixture(scope="session")
def fl_setup(tmp_path_factory: pytest.TempPathFactory) -> FlSetup:
    from medboard.federated.data import prepare_instructions

    root = tmp_path_factory.mktemp("fl")
    model = build_tiny_llama(root / "tiny-llama")
    benchmarks = write_benchmarks(root / "benchmarks")
    manifest = prepare_instructions(benchmarks, root / "fl-data")
    return FlSetup(root, model, benchmarks, root / "fl-data", manifest["sha256"])
