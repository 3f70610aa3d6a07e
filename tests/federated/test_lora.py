import json
from pathlib import Path

import pytest

from medboard.errors import ModelError
from medboard.federated.data import INSTRUCTIONS_FILE
from medboard.federated.lora import (
    LoraSettings,
    TrainSettings,
    adapter_state,
    build_model,
    check_adapter_fits,
    encode,
    evaluate_loss,
    export_adapter,
    load_adapter_state,
    lora_bytes,
    resolve_base_model,
    tensor_shapes,
)
from tests.conftest import build_tiny_llama

LORA = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))


def _rows(fl_setup) -> list[dict[str, str]]:
    lines = (fl_setup.data / INSTRUCTIONS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines][:32]


def test_lora_tensors_have_the_analytic_size(fl_setup) -> None:
    model, _ = build_model(str(fl_setup.model), LORA, seed=0)
    state = adapter_state(model)
    # hidden 32, 4 heads of 8, 2 kv heads: q_proj 32->32, v_proj 32->16; 2 layers; r = 4.
    per_layer = 4 * (32 + 32) + 4 * (32 + 16)
    assert sum(t.numel() for t in state.values()) == 2 * per_layer
    assert lora_bytes({k: tuple(v.shape) for k, v in state.items()}) == 2 * per_layer * 4
    assert all(".lora_A." in k or ".lora_B." in k for k in state)


def test_local_training_lowers_the_loss_and_is_reproducible(fl_setup) -> None:
    from medboard.federated.lora import train_local

    model, tokenizer = build_model(str(fl_setup.model), LORA, seed=0)
    start = {k: v.clone() for k, v in adapter_state(model).items()}
    rows = _rows(fl_setup)
    settings = TrainSettings(steps=8, batch_size=4, learning_rate=0.01, max_seq_length=64)
    before = evaluate_loss(model, tokenizer, rows, 64, 8)
    train_local(model, tokenizer, rows, settings, seed=7)
    after = evaluate_loss(model, tokenizer, rows, 64, 8)
    assert after < before
    first = adapter_state(model)
    load_adapter_state(model, start)
    train_local(model, tokenizer, rows, settings, seed=7)
    second = adapter_state(model)
    assert all((first[k] == second[k]).all() for k in first)
    # FedProx's proximal term pulls the adapter back toward the global one.
    load_adapter_state(model, start)
    prox = TrainSettings(8, 4, 0.01, 64, proximal_mu=1000.0)
    train_local(model, tokenizer, rows, prox, seed=7)
    drift = sum(float((adapter_state(model)[k] - start[k]).norm()) for k in start)
    free = sum(float((first[k] - start[k]).norm()) for k in start)
    assert drift < free


def test_long_prompts_are_cut_from_the_left(fl_setup) -> None:
    _, tokenizer = build_model(str(fl_setup.model), LORA, seed=0)
    row = {"instruction": "Question: " + "abc " * 200 + "\nAnswer:", "response": " A. Phrenic"}
    ids, labels = encode(tokenizer, row, 32)
    assert len(ids) == 32 and len(labels) == 32
    answer = [t for t in labels if t != -100]
    assert ids[-len(answer) :] == answer and answer[-1] == tokenizer.eos_token_id


def test_exported_adapter_fits_its_base_and_not_another(fl_setup, tmp_path: Path) -> None:
    base = resolve_base_model(str(fl_setup.model))
    model, _ = build_model(base.directory, LORA, seed=0)
    adapter = export_adapter(base, LORA, adapter_state(model), tmp_path / "adapter", {"rounds": 0})
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(fl_setup.model)
    assert set(tensor_shapes(adapter)) and (adapter / "medboard_fl.json").is_file()
    check_adapter_fits(adapter, base)

    other = resolve_base_model(str(build_tiny_llama(tmp_path / "wide", hidden=48)))
    with pytest.raises(ModelError) as info:
        check_adapter_fits(adapter, other)
    message = str(info.value)
    assert "does not match base model" in message and "\n" not in message
    assert "trained on revision" in message
    (adapter / "medboard_fl.json").unlink()  # without the manifest: the shapes still tell
    with pytest.raises(
        ModelError, match=r"q_proj. is 48x48 in the base model, the adapter.s lora_A is 4x32"
    ):
        check_adapter_fits(adapter, other)
