"""The last decoder layer computed past its attention only at the positions scoring reads."""

from pathlib import Path

import pytest
import torch

from medboard.backends import ChoiceRequest, create_backend
from medboard.backends.hf import HFBackend
from medboard.backends.last_layer import LastLayerRows, splits
from tests.backends.test_hf_gemma import build_tiny_gemma3
from tests.conftest import build_tiny_llama

REQUESTS = [
    ChoiceRequest("Question: Which nerve innervates the diaphragm?\nAnswer:", (" A", " B", " C")),
    ChoiceRequest("Question: Where is the liver?\nAnswer:", (" right upper", " left")),
    ChoiceRequest("Question: What does insulin lower?\nAnswer:", (" glucose", " urea level")),
]


def _model(path: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.mark.parametrize("builder", [build_tiny_llama, build_tiny_gemma3])
def test_rows_are_the_full_pass_at_those_positions(builder: object, tmp_path: Path) -> None:
    model = _model(builder(tmp_path))  # type: ignore[operator]
    last = LastLayerRows(model, compiled=False)
    assert last.matches(model.base_model, "cpu", 1e-5)
    ids = torch.randint(0, 40, (3, 9), generator=torch.Generator().manual_seed(1))
    rows = torch.tensor([26, 0, 8, 13, 13])  # any order, repeats allowed
    with torch.inference_mode():
        full = model.base_model(input_ids=ids).last_hidden_state.flatten(0, 1)
        with last:
            last.rows = rows
            part = model.base_model(input_ids=ids).last_hidden_state
            last.rows = None  # inside, but without rows: the whole layer
            whole = model.base_model(input_ids=ids).last_hidden_state.flatten(0, 1)
    assert part.shape == (1, 5, model.config.hidden_size)
    torch.testing.assert_close(part[0], full[rows], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(whole, full, rtol=0, atol=0)
    assert "forward" not in vars(last.layer)  # the class's forward again


def test_a_layer_that_adds_its_own_arithmetic_is_refused() -> None:
    """Granite scales each residual branch: the same parts, another forward."""
    from transformers import GraniteConfig, GraniteForCausalLM

    config = GraniteConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, residual_multiplier=0.5,
    )  # fmt: skip
    model = GraniteForCausalLM(config).eval()
    last = LastLayerRows(model, compiled=False)
    assert splits(last.layer)
    assert not last.matches(model.base_model, "cpu", 1e-3)


def test_backend_scores_the_same_with_and_without_it(tiny_model: Path, medboard_home: Path) -> None:
    backend = create_backend(str(tiny_model))
    assert isinstance(backend, HFBackend)
    trimmed = backend.loglikelihood(REQUESTS)  # padded rows (float32: no packing)
    assert backend._last_rows is not None
    backend._last_rows = None
    full = backend.loglikelihood(REQUESTS)
    for t, f in zip(trimmed, full, strict=True):
        assert t.logprobs == pytest.approx(f.logprobs, rel=1e-6, abs=1e-5)
        assert t.greedy == f.greedy


def test_compiled_and_gemma_scoring_keep_their_numbers(tmp_path: Path, medboard_home: Path) -> None:
    path = build_tiny_gemma3(tmp_path)
    eager = create_backend(str(path), compile_mode="off")
    compiled = create_backend(str(path), compile_mode="on")
    expected = eager.loglikelihood(REQUESTS)
    got = compiled.loglikelihood(REQUESTS)
    assert isinstance(compiled, HFBackend) and compiled._last_rows is not None
    for e, g in zip(expected, got, strict=True):
        assert g.logprobs == pytest.approx(e.logprobs, rel=1e-6, abs=1e-4)
