"""Fetching a Hub model, with huggingface_hub's real client against a local stand-in for the
Hub (tests/hub_server.py): only what loading reads is downloaded, and a model over a size cap is
refused from its safetensors headers before its weights are."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from medboard.backends import create_backend
from medboard.backends.base import ChoiceRequest
from medboard.backends.hf_hub import fetch, skipped
from medboard.backends.hf_validate import validate_model
from medboard.errors import HubUnavailableError, HubUnreachableError, ModelError, TransientError
from tests.hub_server import COMMIT, HubServer, hub_repo, online_hub

REPO = "medboard-test/tiny"


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    with online_hub(tmp_path, monkeypatch) as server:
        yield server


def test_only_what_loading_reads_is_downloaded(hub: HubServer, tiny_model: Path) -> None:
    hub_repo(hub.root, tiny_model, REPO)
    local, commit = fetch(REPO, None)
    assert commit == COMMIT and local.name == COMMIT
    assert sorted(p.name for p in local.iterdir()) == [
        "README.md", "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    for name in ("pytorch_model.bin", "model.onnx", "consolidated.00.pth"):
        assert hub.downloaded(name) == [], name
    assert hub.downloaded("model.safetensors") == [""]  # once, whole
    # and the model loads and scores from there, as a submission and as an evaluation
    info = validate_model(REPO)
    assert (info.kind, info.revision, info.license) == ("hub", COMMIT, "apache-2.0")
    backend = create_backend(REPO)
    request = ChoiceRequest(context="The answer is", continuations=(" A", " B"))
    assert len(backend.loglikelihood([request])[0].logprobs) == 2


def test_a_model_over_the_cap_is_refused_before_its_weights(
    hub: HubServer, tiny_model: Path
) -> None:
    hub_repo(hub.root, tiny_model, REPO)
    with pytest.raises(ModelError, match=rf"^{REPO} has 44.2K parameters, more than the 10K all"):
        validate_model(REPO, max_parameters=10_000)
    # the headers only: byte ranges of the weights, no whole file
    assert hub.downloaded("model.safetensors")
    assert all(r.startswith("bytes=0-") for r in hub.downloaded("model.safetensors"))
    assert not (hub.root.parent / "cache" / f"models--{REPO.replace('/', '--')}" / "blobs").exists()
    # at or under the cap: fetched as before
    assert validate_model(REPO, max_parameters=44_192).parameters == 44_192


def test_a_sharded_model_is_counted_over_its_shards(hub: HubServer, tiny_model: Path) -> None:
    repo = hub_repo(hub.root, tiny_model, REPO)
    tensors = load_file(repo / "model.safetensors")
    (repo / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}  # fmt: skip
    for file, part in shards.items():
        save_file({n: tensors[n] for n in part}, repo / file, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {n: f for f, part in shards.items() for n in part}}
    (repo / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="has 44.2K parameters, more than the 44.2K allowed"):
        fetch(REPO, None, max_parameters=44_191)
    local, _ = fetch(REPO, None, max_parameters=1e9)
    assert sorted(p.name for p in local.glob("*.safetensors")) == sorted(shards)


def test_weights_in_another_format_only_are_still_fetched(hub: HubServer, tiny_model: Path) -> None:
    """A repository without safetensors keeps its .bin (validation then says what is wrong);
    with a cap it is refused before anything, since only safetensors headers tell the size."""
    repo = hub_repo(hub.root, tiny_model, REPO)
    (repo / "model.safetensors").unlink()
    assert "*.bin" not in skipped(["config.json", "pytorch_model.bin"])
    assert "*.bin" in skipped(["config.json", "model.safetensors", "pytorch_model.bin"])
    with pytest.raises(ModelError, match="has no safetensors weights on the Hub"):
        fetch(REPO, None, max_parameters=1e9)
    assert hub.downloaded("pytorch_model.bin") == []
    with pytest.raises(ModelError, match=r"has no safetensors weights \(found pytorch_model"):
        validate_model(REPO)
    assert hub.downloaded("pytorch_model.bin") == [""]


def test_a_repository_the_hub_does_not_have_is_one_line(hub: HubServer) -> None:
    with pytest.raises(
        HubUnreachableError, match=r"cannot get model nobody/nothing from the Hub"
    ) as e:
        fetch("nobody/nothing", None, max_parameters=1e9)
    assert "no such model or revision, or it is private or gated" in str(e.value)
    assert not isinstance(e.value, TransientError)  # asking again will not help


def test_a_hub_that_is_down_is_an_error_that_may_pass(
    hub: HubServer, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub answering 503 or 429, or not answering at all: HubUnavailableError, a
    TransientError (a queued job waits and tries again); offline, a model not in the cache is
    not one."""
    import huggingface_hub.constants as constants

    hub_repo(hub.root, tiny_model, REPO)
    for status in (503, 429):
        hub.busy = status
        with pytest.raises(HubUnavailableError) as e:
            fetch(REPO, None, max_parameters=1e9)
        assert str(e.value) == (
            f"cannot get model {REPO} from the Hub now ({status}): the Hub or the network is "
            "down; try again later"
        )
        assert isinstance(e.value, TransientError)
    hub.busy = None
    local, _ = fetch(REPO, None)  # back up: fetched
    assert (local / "model.safetensors").exists()
    hub.stop()  # nothing listening
    with pytest.raises(HubUnavailableError, match=r"from the Hub now \(ConnectError\)"):
        fetch("medboard-test/other", None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError) as e:
        fetch("medboard-test/other", None)
    assert not isinstance(e.value, TransientError)
