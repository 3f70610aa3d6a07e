"""Fixtures of the backends' tests against real models and servers: SmolLM2 as a transformers
folder, the shared benchmarks in a data store, a fresh home over it."""

import os
from pathlib import Path

import pytest

from medboard.paths import shared_benchmarks
from tests.integration.test_parity_subset import smollm2


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's GGUF dequantized into a transformers folder (what vLLM loads)."""
    from medboard.backends.hf import HFBackend

    home = tmp_path_factory.mktemp("served-home")
    before = os.environ.get("MEDBOARD_HOME")
    os.environ["MEDBOARD_HOME"] = str(home)
    try:
        return HFBackend(str(smollm2())).model_dir()
    finally:
        if before is None:
            del os.environ["MEDBOARD_HOME"]
        else:
            os.environ["MEDBOARD_HOME"] = before


@pytest.fixture(scope="session")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A medboard home holding the shared benchmarks (the real questions)."""
    from medboard.data.importer import import_path
    from medboard.data.store import DataStore

    benchmarks = shared_benchmarks()
    if benchmarks is None:
        pytest.skip("shared benchmarks not found (set MEDBOARD_BENCHMARKS)")
    home = tmp_path_factory.mktemp("served-data")
    import_path(benchmarks, DataStore(home / "data"))
    return home


@pytest.fixture()
def home(data_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh medboard home over the shared data store."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "data").symlink_to(data_home / "data")
    monkeypatch.setenv("MEDBOARD_HOME", str(home))
    return home
