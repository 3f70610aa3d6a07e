"""A tiny Gemma-3 (sliding-window and full attention layers, logit soft-capping) through the
scoring paths that differ by architecture: compiled layers and the shared-prefix pass."""

from pathlib import Path

import pytest

from medboard.backends import ChoiceRequest, create_backend
from medboard.backends.hf import HFBackend
from medboard.backends.probe import cpu_has_amx
from tests.conftest import build_tiny_model

WINDOW = 64

PREFIX = "".join(f"Question: bone {i}?\nAnswer: {'AB'[i % 2]}\n\n" for i in range(4))


def build_tiny_gemma3(folder: Path, head_dim: int = 8) -> Path:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    def make(vocab: int) -> Gemma3ForCausalLM:
        config = Gemma3TextConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=head_dim,
            sliding_window=WINDOW,
            layer_types=["sliding_attention", "full_attention"],
            max_position_embeddings=512,
            final_logit_softcapping=30.0,
        )
        return Gemma3ForCausalLM(config)

    return build_tiny_model(folder, make, scale=4.0)


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


def test_compiled_layers_match_eager(tiny_gemma: Path, medboard_home: Path) -> None:
    requests = [
        ChoiceRequest(PREFIX + "Question: Which nerve?\nAnswer:", (" A", " B")),
        ChoiceRequest("Question: Where is the liver?\nAnswer:", (" right", " left")),
    ]
    eager = create_backend(str(tiny_gemma), compile_mode="off").loglikelihood(requests)
    compiled = create_backend(str(tiny_gemma), compile_mode="on").loglikelihood(requests)
    for e, c in zip(eager, compiled, strict=True):
        assert c.logprobs == pytest.approx(e.logprobs, rel=1e-6, abs=1e-4)


def test_shared_prefix_is_not_reused_across_a_sliding_window(
    tiny_gemma: Path, medboard_home: Path
) -> None:
    backend = HFBackend(str(tiny_gemma))
    long = [ChoiceRequest(PREFIX + f"Question: {q}?\nAnswer:", (" A", " B")) for q in "xyz"]
    rows = [row for r in long for row in backend.rows(r)]
    assert max(len(row.tokens) for row in rows) > WINDOW
    assert backend._reusable_prefix(rows) == 0  # the cache would have to drop prefix tokens
    # within the window the prefix is reused, with the numbers of a full pass
    prefix = "The following are multiple choice questions (with answers) about anatomy. " * 2
    short = [ChoiceRequest(prefix + f"{q}?", (" A", " B")) for q in "xyz"]
    rows = [row for r in short for row in backend.rows(r)]
    assert max(len(row.tokens) for row in rows) <= WINDOW
    shared = backend._reusable_prefix(rows)
    assert shared > 0
    reused = backend.loglikelihood(short)
    full = [backend.loglikelihood([r])[0] for r in short]  # one row: no shared prefix
    for a, b in zip(reused, full, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, rel=1e-6, abs=1e-4)


@pytest.mark.skipif(not cpu_has_amx(), reason="packed batches need the AMX attention kernel")
def test_packed_rows_stay_within_the_sliding_window(
    tmp_path_factory: pytest.TempPathFactory, medboard_home: Path
) -> None:
    """Gemma-3 with heads the kernel fits: rows within the window are packed and score as in
    padded batches; a batch with a row longer than the window is not packed."""
    import torch

    model = build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3-64"), head_dim=64)
    backend = HFBackend(str(model), dtype="bfloat16", attention="amx")
    short = [ChoiceRequest(f"Question: {q} bone?\nAnswer:", (" A", " B")) for q in "xyz"]
    long = [ChoiceRequest(PREFIX + f"Question: {q}?\nAnswer:", (" A", " B")) for q in "xyz"]
    rows = [[row for r in batch for row in backend.rows(r)] for batch in (short, long)]
    backend.load()
    assert backend._packs
    assert backend._packable(rows[0]) and not backend._packable(rows[1])
    with torch.profiler.profile() as profile:
        packed = backend.loglikelihood(short)
    assert any("amx_packed_attention" in e.name for e in profile.events())
    assert len(backend.plan(short)) == 1
    backend._packs = False
    padded = backend.loglikelihood(short)
    assert [r.logprobs for r in packed] == [r.logprobs for r in padded]
