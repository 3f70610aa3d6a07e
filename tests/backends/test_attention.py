from pathlib import Path

import pytest

from medboard.backends import ChoiceRequest, GenerateRequest, attention, create_backend, probe
from medboard.backends.attention import (
    AMX_ATTENTION,
    AVX512_ATTENTION,
    KERNELS,
    applies,
    attention_mode,
    forwards,
    library,
    packs,
)
from medboard.backends.probe import cpu_has_amx
from medboard.errors import ModelError
from tests.conftest import build_tiny_llama, made_up_clock, score_with_kernel

torch = pytest.importorskip("torch")
F = torch.nn.functional
amx_only = pytest.mark.skipif(not cpu_has_amx(), reason="the kernel runs on AMX tiles")
# Each kernel, where this CPU runs it.
VARIANTS = [
    pytest.param(
        name, id=name,
        marks=pytest.mark.skipif(not kernel.usable(), reason=f"needs {kernel.requirement}"),
    )
    for name, kernel in KERNELS.items()
]  # fmt: skip


def _qkv(batch: int, length: int, heads: int, kv_heads: int, size: int, seed: int) -> tuple:
    """Queries, keys and values laid out as transformers passes them: [B, H, T, D] views."""
    g = torch.Generator().manual_seed(seed)

    def make(h: int) -> torch.Tensor:
        x = torch.randn(batch, length, h, size, generator=g) * 2
        return x.to(torch.bfloat16).transpose(1, 2)

    return make(heads), make(kv_heads), make(kv_heads)


def _kernel(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, variant: str = "amx"
) -> torch.Tensor:
    library(variant)
    from medboard.backends.attention import _operator

    return _operator(variant)(q, k, v, scale)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "shape",
    [
        (35, 117, 9, 3, 64),  # SmolLM2's heads, a typical MedQA batch
        (3, 1, 9, 3, 64),
        (2, 31, 4, 4, 64),
        (1, 600, 9, 3, 64),  # longer than torch's 512-key blocks
        (4, 70, 4, 1, 256),  # Gemma-3's heads
        (2, 45, 8, 2, 128),
    ],
)
def test_kernel_is_as_exact_as_torch_flash_attention(shape: tuple, variant: str) -> None:
    q, k, v = _qkv(*shape, seed=sum(shape))
    scale = shape[-1] ** -0.5
    with torch.inference_mode():
        exact = F.scaled_dot_product_attention(
            q.double(), k.double(), v.double(), is_causal=True, enable_gqa=True, scale=scale
        ).transpose(1, 2)
        torch_out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=True, scale=scale
        ).transpose(1, 2)
        mine = _kernel(q, k, v, scale, variant)
    assert mine.shape == torch_out.shape and mine.dtype == torch.bfloat16
    assert mine.is_contiguous()
    mine_err = (mine.double() - exact).abs()
    torch_err = (torch_out.double() - exact).abs()
    # the same float32 arithmetic rounded to bfloat16 at the same places: as far from the truth
    # at worst and on average as torch, and never more than a few bfloat16 steps from torch's
    assert mine_err.max() <= torch_err.max() * 1.25
    assert (mine.double() - torch_out.double()).abs().max() <= exact.abs().max() * 2**-5
    assert mine_err.mean() <= torch_err.mean() * 1.02
    assert (mine == torch_out).double().mean() > 0.75


@amx_only
def test_kernel_leaves_onednn_tile_state_alone() -> None:
    """oneDNN's bfloat16 products on the same threads still compute the same after it."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(256, 512, generator=g).to(torch.bfloat16)
    b = torch.randn(512, 384, generator=g).to(torch.bfloat16)
    with torch.inference_mode():
        before = a @ b
        linear = F.linear(a, b.t().contiguous())  # another path (equal to a @ b on 2 threads
        # here, not on 1: each is compared with itself)
        _kernel(*_qkv(4, 50, 9, 3, 64, seed=2), 0.125)
        after = a @ b
        _kernel(*_qkv(2, 20, 4, 1, 256, seed=3), 0.0625)
        again = F.linear(a, b.t().contiguous())
    assert torch.equal(before, after)
    assert torch.equal(linear, again)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "lengths, heads, kv_heads, size",
    [
        ([117, 1, 31, 600, 64], 9, 3, 64),  # SmolLM2's heads; one longer than 512
        ([70, 0, 5, 16], 4, 1, 256),  # Gemma-3's heads, an empty sequence
        ([45], 8, 2, 128),
    ],
)
def test_packed_kernel_is_the_kernel_on_each_sequence(
    lengths: list[int], heads: int, kv_heads: int, size: int, variant: str
) -> None:
    """Sequences packed into one row: each attends to itself alone, with the same arithmetic
    (bit for bit) as the kernel on that sequence by itself."""
    from medboard.backends.attention import _packed_operator

    q, k, v = _qkv(1, sum(lengths), heads, kv_heads, size, seed=sum(lengths))
    starts = [0]
    for n in lengths:
        starts.append(starts[-1] + n)
    scale = size**-0.5
    with torch.inference_mode():
        packed = _packed_operator(variant)(q, k, v, torch.tensor(starts), scale)
        alone = [
            _kernel(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], scale, variant)
            for a, b in zip(starts, starts[1:], strict=False)
            if b > a
        ]
    assert packed.shape == (1, sum(lengths), heads, size) and packed.is_contiguous()
    assert torch.equal(packed, torch.cat(alone, dim=1))


def _windowed_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                   window: int) -> torch.Tensor:  # fmt: skip
    """torch's SDPA on one sequence [1, H, T, D] under a sliding window, as transformers' mask
    for Gemma-3 has it (key j seen from query i where i - window < j <= i): [1, T, H, D]."""
    mask = attention.window_mask(q.shape[2], window)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True, scale=scale
    ).transpose(1, 2)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "lengths, heads, kv_heads, size, window",
    [
        ([117, 1, 600, 64, 65, 5], 9, 3, 64, 64),  # SmolLM2's heads, window 64
        ([70, 0, 5, 16, 33, 600], 4, 1, 256, 16),  # Gemma-3's heads, a short window
        ([530, 511, 512, 513, 1100], 4, 1, 256, 512),  # Gemma-3-270M's window
    ],
)
def test_packed_kernel_keeps_a_sliding_window_as_exactly_as_torch(
    lengths: list[int], heads: int, kv_heads: int, size: int, window: int, variant: str
) -> None:
    """Each query sees the last `window` positions of its own sequence: as near the truth as
    torch's SDPA with Gemma-3's window mask; where no sequence is longer than the window, bit
    for bit the kernel without one."""
    from medboard.backends.attention import _packed_operator

    q, k, v = _qkv(1, sum(lengths), heads, kv_heads, size, seed=sum(lengths) + window)
    starts = torch.tensor([0, *lengths]).cumsum(0)
    scale = size**-0.5
    kernel = _packed_operator(variant)
    with torch.inference_mode():
        mine = kernel(q, k, v, starts, scale, window)
        bounds = starts.tolist()
        pieces = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
        exact = torch.cat([
            _windowed_sdpa(q[:, :, a:b].double(), k[:, :, a:b].double(), v[:, :, a:b].double(),
                           scale, window)
            for a, b in pieces
        ], dim=1)  # fmt: skip
        theirs = torch.cat(
            [_windowed_sdpa(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], scale, window)
             for a, b in pieces], dim=1,
        )  # fmt: skip
        unwindowed = kernel(q, k, v, starts, scale, 0)
        short = [(a, b) for a, b in pieces if b - a <= window]
        wide = kernel(q, k, v, starts, scale, max(lengths))
    mine_err = (mine.double() - exact).abs()
    torch_err = (theirs.double() - exact).abs()
    assert mine_err.max() <= torch_err.max() * 1.25
    assert mine_err.mean() <= torch_err.mean() * 1.02
    assert (mine == theirs).double().mean() > 0.75
    for a, b in short:  # a sequence within the window: the window changes nothing
        assert torch.equal(mine[:, a:b], unwindowed[:, a:b])
    assert torch.equal(wide, unwindowed)
    cut = [(a, b) for a, b in pieces if b - a > window]
    assert cut and all(not torch.equal(mine[:, a:b], unwindowed[:, a:b]) for a, b in cut)


def test_packed_attention_without_the_kernel_is_sdpa_per_sequence() -> None:
    """Where the kernel does not apply (float32 here) packed rows take SDPA one sequence at a
    time, and a call without its segments is refused."""

    class Module:
        is_causal = True
        training = False
        num_key_value_groups = 2

    q, k, v = (t.float() for t in _qkv(1, 30, 4, 2, 8, seed=5))
    starts = torch.tensor([0, 12, 13, 30])
    packed_attention_forward = forwards("amx")[1]
    with torch.inference_mode():
        out, _ = packed_attention_forward(Module(), q, k, v, None, medboard_segments=starts)
        for a, b in [(0, 12), (12, 13), (13, 30)]:
            alone = F.scaled_dot_product_attention(
                q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, enable_gqa=True
            ).transpose(1, 2)
            assert torch.allclose(out[:, a:b], alone, atol=1e-6)
        # a sliding window, counted from each sequence's start
        out, _ = packed_attention_forward(
            Module(), q, k, v, None, medboard_segments=starts, sliding_window=5
        )
        for a, b in [(0, 12), (12, 13), (13, 30)]:
            alone = _windowed_sdpa(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], 8**-0.5, 5)
            assert torch.allclose(out[:, a:b], alone, atol=1e-6)
        assert not torch.allclose(out[:, 13:30], F.scaled_dot_product_attention(
            q[:, :, 13:30], k[:, :, 13:30], v[:, :, 13:30], is_causal=True, enable_gqa=True
        ).transpose(1, 2), atol=1e-3)  # fmt: skip
    with pytest.raises(ModelError, match="medboard_segments"):
        packed_attention_forward(Module(), q, k, v, None)


def test_packs_only_models_whose_heads_the_kernel_fits() -> None:
    from transformers import Gemma3TextConfig, LlamaConfig

    class Model:
        def __init__(self, config: object) -> None:
            self.config = config

    llama = LlamaConfig(hidden_size=256, num_attention_heads=4, num_key_value_heads=2)
    assert packs(Model(llama))
    assert not packs(Model(LlamaConfig(hidden_size=32, num_attention_heads=4)))  # heads of 8
    gemma = Gemma3TextConfig(head_dim=64, num_attention_heads=4, num_key_value_heads=1)
    assert packs(Model(gemma))
    gemma.attn_logit_softcapping = 50.0
    assert not packs(Model(gemma))


def test_kernel_only_where_it_computes_what_sdpa_would() -> None:
    class Module:
        is_causal = True
        training = False

    q, k, v = _qkv(2, 40, 4, 2, 64, seed=0)
    assert applies(Module(), q, k, v, None, 0.0)
    assert not applies(Module(), q, k, v, torch.zeros(2, 1, 40, 40), 0.0)  # a mask
    assert not applies(Module(), q, k, v, None, 0.0, sliding_window=16)  # window < prompt
    assert applies(Module(), q, k, v, None, 0.0, sliding_window=512)
    assert not applies(Module(), q, k, v, None, 0.0, softcap=50.0)
    assert not applies(Module(), q[:, :, -1:], k, v, None, 0.0)  # one step against a KV cache
    assert not applies(Module(), q.float(), k.float(), v.float(), None, 0.0)
    assert not applies(Module(), *_qkv(2, 40, 4, 2, 8, seed=0), None, 0.0)  # head size 8
    assert not applies(Module(), q, k, v[..., :32], None, 0.0)  # values of another size
    assert not applies(Module(), q, k, v, None, 0.0, is_causal=False)


def test_attention_mode_choices() -> None:
    assert attention_mode("float32", "cpu") is None
    assert attention_mode("bfloat16", "cuda:0") is None
    assert attention_mode("bfloat16", "cpu", "torch") is None
    with pytest.raises(ModelError, match="unknown attention 'flash'"):
        attention_mode("bfloat16", "cpu", "flash")
    with pytest.raises(ModelError, match="needs --dtype bfloat16 on a CPU with AMX"):
        attention_mode("float32", "cpu", "amx")
    with pytest.raises(ModelError, match="needs --dtype bfloat16 on a CPU with AVX-512 BF16"):
        attention_mode("float32", "cpu", "avx512")


@pytest.mark.skipif(not KERNELS["avx512"].usable(), reason="the kernel needs avx512_bf16")
@pytest.mark.parametrize(("winner", "expected"), [("avx512", AVX512_ATTENTION), ("torch", None)])
def test_auto_takes_the_avx512_kernel_where_there_are_no_tiles(
    winner: str, expected: str | None, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU with AVX-512 BF16 and no AMX (AMD Zen 4, here with the tiles hidden) `auto`
    times the AVX-512 kernel against torch's SDPA and takes the faster."""
    monkeypatch.setattr(attention, "cpu_has_amx", lambda: False)
    timed = made_up_clock(monkeypatch, {"avx512": 1.0, "torch": 1.0, winner: 0.5})
    assert attention_mode("bfloat16", "cpu") == expected
    assert attention_mode("bfloat16", "cpu") == expected  # kept
    assert timed == [["avx512", "torch"]]
    assert attention_mode("bfloat16", "cpu", "avx512") == AVX512_ATTENTION  # asked for, it runs
    monkeypatch.setattr(probe, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert attention_mode("bfloat16", "cpu") is None  # neither kernel: torch's SDPA
    with pytest.raises(ModelError, match="--attention avx512 needs"):
        attention_mode("bfloat16", "cpu", "avx512")


@amx_only
@pytest.mark.parametrize(("winner", "expected"), [("amx", AMX_ATTENTION), ("torch", None)])
def test_auto_takes_the_kernel_where_this_machine_runs_it_faster(
    winner: str, expected: str | None, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed = made_up_clock(monkeypatch, {"amx": 1.0, "torch": 1.0, winner: 0.5})
    assert attention_mode("bfloat16", "cpu") == expected
    assert attention_mode("bfloat16", "cpu") == expected  # kept
    assert timed == [["amx", "torch"]]
    assert attention_mode("bfloat16", "cpu", "amx") == AMX_ATTENTION  # asked for, it runs


@pytest.fixture(scope="module")
def tiny_wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with heads of 64 (4 query, 2 key/value heads), which the kernel serves."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-wide"), hidden=256)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("compile_mode", ["off", "on"])
def test_scoring_with_the_kernel_matches_torch_attention(
    tiny_wide_model: Path, medboard_home: Path, compile_mode: str, variant: str
) -> None:
    requests = [
        ChoiceRequest("Question: Which nerve innervates the diaphragm?\nAnswer:", (" A", " B")),
        ChoiceRequest("Question: Where is the liver?\nAnswer:", (" right upper", " left")),
        ChoiceRequest("Abstract: " + "the liver is large. " * 30 + "\nAnswer:", (" yes", " no")),
    ]
    amx, plain, got, expected, events = score_with_kernel(
        tiny_wide_model, "attention", variant, requests, dtype="bfloat16",
        compile_mode=compile_mode,
    )  # fmt: skip
    assert amx.identity()["attention"] == KERNELS[variant].tag
    assert plain.identity()["attention"] is None
    ran = [name for name in events if f"{variant}_packed_attention" in name]
    assert ran  # the kernel served the (packed) scoring passes, not a silent fallback
    for e, g in zip(expected, got, strict=True):
        assert g.logprobs == pytest.approx(e.logprobs, rel=0.02, abs=0.05)
        assert g.greedy == e.greedy
    config = amx.model.config
    assert config._attn_implementation == "sdpa"  # torch's again outside scoring passes
    prompt = GenerateRequest("Question: Where is the liver?\nAnswer:", max_new_tokens=4)
    assert amx.generate([prompt]) == plain.generate([prompt])


@pytest.mark.parametrize("variant", VARIANTS)
def test_packed_scoring_gives_the_numbers_of_padded_batches(
    tiny_wide_model: Path, medboard_home: Path, variant: str
) -> None:
    """Questions packed one after another into one row score exactly as in padded rows, the
    row padded to whole multiples of PACK_MULTIPLE; without packing the kernel still runs."""
    from medboard.backends.packing import PACK_MULTIPLE

    backend = create_backend(str(tiny_wide_model), dtype="bfloat16", attention=variant)
    requests = [
        ChoiceRequest(f"Question: {'why ' * n}is bone {n} hard?\nAnswer:", (" A", " B", " C"))
        for n in (1, 9, 3, 40, 2)
    ] + [ChoiceRequest("Question: Where is the liver?\nAnswer:", (" right upper", " left"))]
    backend.load()
    assert backend._packs
    with torch.profiler.profile() as profile:
        packed = backend.loglikelihood(requests)
    names = [e.name for e in profile.events()]
    assert any(f"{variant}_packed_attention" in n for n in names)
    backend._packs = False
    with torch.profiler.profile() as profile:
        padded = backend.loglikelihood(requests)
    names = [e.name for e in profile.events()]
    assert any(f"{variant}_causal_attention" in n for n in names)
    assert not any(f"{variant}_packed_attention" in n for n in names)
    assert [r.logprobs for r in packed] == [r.logprobs for r in padded]
    assert [r.greedy for r in packed] == [r.greedy for r in padded]
    with torch.inference_mode():
        hidden = backend._forward_packed([[5, 6, 7], [8, 9]])
        alone = backend._forward_packed([[8, 9]])
    assert hidden.shape[:2] == alone.shape[:2] == (1, PACK_MULTIPLE)
    assert torch.equal(hidden[0, 3:5], alone[0, :2])  # the second sequence sees only itself


@amx_only
def test_a_shared_prefix_is_computed_once_where_that_is_cheaper_than_packing(
    tiny_wide_model: Path, medboard_home: Path
) -> None:
    """A batch whose questions share a prefix takes the prefix pass when that computes fewer
    tokens than a packed row (few-shot examples before short questions), else it is packed
    (a batch planned as packed must not become a much wider padded one). The numbers of both
    passes are checked elsewhere (test_hf, the packed tests above)."""
    backend = create_backend(str(tiny_wide_model), dtype="bfloat16", attention="amx")
    prefix = "The following are multiple choice questions (with answers) about anatomy. " * 3
    few_shot = [ChoiceRequest(prefix + f"Question: {q}?\nAnswer:", (" A", " B")) for q in "xyz"]
    uneven = few_shot[:2] + [
        ChoiceRequest(prefix + "Question: " + "why " * 80 + "?\nAnswer:", (" A", " B"))
    ]
    for requests, packed in ((few_shot, False), (uneven, True)):
        rows = [row for r in requests for row in backend.rows(r)]
        assert backend._reusable_prefix(rows) > 0
        with torch.profiler.profile() as profile:
            backend.loglikelihood(requests)
        assert any("amx_packed_attention" in e.name for e in profile.events()) == packed
