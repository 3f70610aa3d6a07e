"""A tiny Gemma-3 (sliding-window and full attention layers, logit soft-capping) through the
scoring paths that differ by architecture: compiled layers and the shared-prefix pass."""

from pathlib import Path

import pytest

from medboard.backends import ChoiceRequest, create_backend
from medboard.backends.attention import KERNELS
from medboard.backends.hf import HFBackend
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


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(
            name, id=name,
            marks=pytest.mark.skipif(not kernel.usable(), reason=f"needs {kernel.requirement}"),
        )
        for name, kernel in KERNELS.items()
    ],
)  # fmt: skip
def test_packed_rows_keep_the_sliding_window(
    tmp_path_factory: pytest.TempPathFactory, medboard_home: Path, variant: str
) -> None:
    """Gemma-3 with heads the kernel fits: rows within the window and rows longer than it are
    packed alike; they score as in padded batches (bit for bit within the window, where the
    kernel serves both; as torch's SDPA with the window's mask beyond it)."""
    import torch

    model = build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3-64"), head_dim=64)
    backend = HFBackend(str(model), dtype="bfloat16", attention=variant)
    short = [ChoiceRequest(f"Question: {q} bone?\nAnswer:", (" A", " B")) for q in "xyz"]
    long = [
        ChoiceRequest(PREFIX * 2 + f"Question: {q} {'bone ' * i}?\nAnswer:", (" A", " B"))
        for i, q in enumerate("xyz")
    ]
    rows = [[row for r in batch for row in backend.rows(r)] for batch in (short, long)]
    assert max(len(row.tokens) for row in rows[1]) > WINDOW
    backend.load()
    assert backend._packs
    assert backend._packable(rows[0]) and backend._packable(rows[1])
    results = {}
    for packing in (True, False):
        backend._packs = packing
        for name, batch in (("short", short), ("long", long)):
            with torch.profiler.profile() as profile:
                results[name, packing] = backend.loglikelihood(batch)
            ran = any(f"{variant}_packed_attention" in e.name for e in profile.events())
            assert ran == packing
    assert len(backend.plan(long)) == 1
    short_packed, short_padded = results["short", True], results["short", False]
    assert [r.logprobs for r in short_packed] == [r.logprobs for r in short_padded]
    for packed, padded in zip(results["long", True], results["long", False], strict=True):
        assert packed.logprobs == pytest.approx(padded.logprobs, rel=0.02, abs=0.05)
        assert packed.greedy == padded.greedy
    # without the window (every key seen) the long rows score otherwise: the window is kept
    for layer in backend._model.model.layers:
        layer.self_attn.sliding_window = None
    backend._packs = True
    unwindowed = backend.loglikelihood(long)
    assert [r.logprobs for r in unwindowed] != pytest.approx(
        [r.logprobs for r in results["long", True]], rel=0.02, abs=0.05
    )
