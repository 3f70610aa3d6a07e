"""The transformers backend's check of a submission, on real model files."""

import shutil
from pathlib import Path

import pytest

from medboard.backends.hf_validate import model_card_license, validate_model


def test_validate_a_local_model(tiny_model: Path, medboard_home: Path) -> None:
    info = validate_model(str(tiny_model))
    assert info.kind == "dir"
    assert info.revision.startswith("sha256:")
    assert info.architecture == "LlamaForCausalLM"
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    assert info.parameters == sum(p.numel() for p in model.parameters())


def test_validate_refuses_pickle_weights(tiny_model: Path, tmp_path: Path, medboard_home) -> None:
    copy = tmp_path / "pickled"
    shutil.copytree(tiny_model, copy)
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(Exception, match="no safetensors weights \\(found pytorch_model.bin\\)"):
        validate_model(str(copy))


def test_validate_refuses_a_broken_tokenizer(tiny_model: Path, tmp_path: Path, medboard_home):
    copy = tmp_path / "broken"
    shutil.copytree(tiny_model, copy)
    (copy / "tokenizer.json").write_text("{not json")
    with pytest.raises(Exception, match="tokenizer of .* does not load"):
        validate_model(str(copy))


def test_model_card_license(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# Model\n")
    assert model_card_license(tmp_path) == "apache-2.0"
    (tmp_path / "README.md").write_text("# no front matter\nlicense: mit\n")
    assert model_card_license(tmp_path) is None
