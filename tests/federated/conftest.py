"""Fixtures of the federated tests: a tiny Llama, small training files, a test Flower app."""

import pytest

from tests.federated.helpers import FlSetup, make_fl_setup

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


@pytest.fixture(scope="session")
def fl_setup(tmp_path_factory: pytest.TempPathFactory) -> FlSetup:
    return make_fl_setup(tmp_path_factory.mktemp("fl"))
