"""Finding and loading models: directories, GGUF files, Hub ids, adapters, and their errors."""

from pathlib import Path

import pytest

from medboard.backends import ChoiceRequest, create_backend
from medboard.backends.hf_loading import gguf_to_dir, resolve_source
from medboard.errors import HubUnreachableError, ModelError
from tests.conftest import build_tiny_llama

REQUEST = ChoiceRequest("Question: Which nerve?\nAnswer:", (" A", " B"))


def test_resolve_sources(tiny_model: Path, tmp_path: Path) -> None:
    assert resolve_source(str(tiny_model)).kind == "dir"
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    assert resolve_source(str(gguf)).kind == "gguf"
    assert resolve_source(str(tmp_path)).location == str(gguf.resolve())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/no/such/model", "model path /no/such/model does not exist"),
        ("/no/such/model.gguf", "model file /no/such/model.gguf does not exist"),
    ],
)
def test_missing_model(spec: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_source(spec)


def test_folder_without_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a model directory"):
        resolve_source(str(tmp_path))
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(ModelError, match="several GGUF files"):
        resolve_source(str(tmp_path))


def test_not_a_causal_lm(tmp_path: Path, medboard_home: Path) -> None:
    from transformers import BertConfig

    config = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    config.architectures = ["BertModel"]
    config.save_pretrained(tmp_path)
    backend = create_backend(str(tmp_path))
    with pytest.raises(ModelError, match="not a causal language model .*'bert'"):
        backend.loglikelihood([REQUEST])


def test_remote_code_config_is_refused(tmp_path: Path, medboard_home: Path) -> None:
    (tmp_path / "config.json").write_text(
        '{"model_type": "my_custom_arch", "auto_map": {"AutoConfig": "cfg.MyConfig"}}'
    )
    backend = create_backend(str(tmp_path))
    with pytest.raises(ModelError, match=r"needs remote code \(cfg.py named by auto_map"):
        backend.loglikelihood([REQUEST])


def test_hub_unreachable(medboard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError, match="cannot get model org/never-cached"):
        create_backend("org/never-cached")


def test_gguf_of_unsupported_architecture(tmp_path: Path, medboard_home: Path) -> None:
    import gguf

    path = tmp_path / "weird.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba_xyz")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError, match="architecture 'mamba_xyz', which transformers cannot"):
        gguf_to_dir(path, "sha256:" + "0" * 64)


def test_not_a_gguf_file(tmp_path: Path, medboard_home: Path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"this is not gguf")
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        gguf_to_dir(path, "sha256:" + "1" * 64)


def _lora(base: Path, folder: Path, target: list[str]) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(
        model, LoraConfig(r=2, target_modules=target, init_lora_weights=False)
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(folder)
    return folder


def test_adapter_changes_scores(tiny_model: Path, tmp_path: Path, medboard_home: Path) -> None:
    adapter = _lora(tiny_model, tmp_path / "adapter", ["q_proj", "v_proj"])
    base = create_backend(str(tiny_model))
    tuned = create_backend(str(tiny_model), adapter=str(adapter))
    assert tuned.identity()["adapter_hash"]
    assert base.loglikelihood([REQUEST])[0].logprobs != tuned.loglikelihood([REQUEST])[0].logprobs


def test_adapter_that_does_not_fit(tiny_model: Path, tmp_path: Path, medboard_home: Path) -> None:
    other = build_tiny_llama(tmp_path / "wider", hidden=48)
    adapter = _lora(other, tmp_path / "adapter", ["q_proj"])
    backend = create_backend(str(tiny_model), adapter=str(adapter))
    with pytest.raises(ModelError, match="does not fit base model"):
        backend.loglikelihood([REQUEST])


def test_adapter_folder_without_config(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a PEFT adapter directory"):
        create_backend(str(tiny_model), adapter=str(tmp_path))


def test_hub_id_resolves_through_the_hub_cache(
    tiny_model: Path, tmp_path: Path, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Hub code path (snapshot_download), served from a local Hub cache offline."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--medboard-test--tiny-llama"
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    backend = create_backend("medboard-test/tiny-llama")
    assert backend.identity()["revision"] == commit
    assert len(backend.loglikelihood([REQUEST])[0].logprobs) == 2


def test_models_loaded_at_once_in_threads_get_the_dtype_each_asked_for(tiny_model: Path) -> None:
    """transformers builds a model under a process-wide default dtype: two workers of one
    `medboard serve` loading at once built a bfloat16 model in float32 (and the fused MLP refused
    its weights) until loads took turns."""
    import threading

    import torch

    from medboard.backends.hf_loading import load_model

    asked = ["bfloat16", "float32"] * 4
    barrier = threading.Barrier(len(asked), timeout=60)
    got: list[object] = [None] * len(asked)

    def load(i: int) -> None:
        barrier.wait()
        try:
            model, _ = load_model(tiny_model, "tiny", asked[i], "cpu", None)
            got[i] = {p.dtype for p in model.parameters()}
        except Exception as exc:  # noqa: BLE001 - asserted on below
            got[i] = exc

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(asked))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert got == [{getattr(torch, dtype)} for dtype in asked]
    assert torch.get_default_dtype() == torch.float32
