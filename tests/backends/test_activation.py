from pathlib import Path

import pytest

from medboard.backends import ChoiceRequest, GenerateRequest
from medboard.backends.activation import (
    GELU_TANH,
    NATIVE_ACTIVATION,
    SILU,
    FusedActivation,
    _fused,
    _operator,
    activation_mode,
    computes_same,
    gated_mlps,
    kind_of,
)
from medboard.backends.kernels import INDUCTOR_OPTIONS, cpu_flags
from medboard.errors import ModelError
from tests.conftest import build_tiny_llama, score_with_kernel

torch = pytest.importorskip("torch")
F = torch.nn.functional
avx512_only = pytest.mark.skipif(
    "avx512_bf16" not in (cpu_flags() or ()), reason="the kernel needs AVX-512 BF16"
)
TORCH_ACT = {
    SILU: lambda g, u: F.silu(g) * u,
    GELU_TANH: lambda g, u: F.gelu(g, approximate="tanh") * u,
}


def _inputs(n: int, scale: float, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    gate = (torch.randn(n, generator=g) * scale).bfloat16()
    up = torch.randn(n, generator=g).bfloat16()
    return gate, up


@avx512_only
@pytest.mark.parametrize("kind", [SILU, GELU_TANH])
@pytest.mark.parametrize(("n", "scale"), [(3 * 4096 + 7, 3.0), (1000, 40.0), (5, 1.0)])
def test_kernel_gives_the_compiled_layers_numbers(kind: int, n: int, scale: float) -> None:
    """Bit for bit what torch.compile's kernel gives (one rounding), also at huge arguments
    (infinite exponentials) and lengths that are not a multiple of the vector width."""
    gate, up = _inputs(n, scale, seed=n)
    gate[:4] = torch.tensor([0.0, -200.0, 200.0, -0.0])
    compiled = torch.compile(TORCH_ACT[kind], dynamic=True, options=INDUCTOR_OPTIONS)
    with torch.inference_mode():
        expected = compiled(gate, up)
        mine = _operator()(gate, up, kind)
        exact = TORCH_ACT[kind](gate.double(), up.double())
    assert mine.dtype == torch.bfloat16 and mine.shape == gate.shape
    assert torch.equal(mine, expected)
    # and within bfloat16 rounding of the exact value (the tanh form loses digits near 0)
    assert torch.allclose(mine.double(), exact, rtol=2**-8, atol=1e-3)


@avx512_only
def test_kernel_reads_views_and_refuses_mismatched_inputs() -> None:
    gate, up = _inputs(64 * 6, 2.0, seed=1)
    gate2, up2 = gate.view(6, 64).t(), up.view(6, 64).t()  # not contiguous
    with torch.inference_mode():
        mine = _operator()(gate2, up2, SILU)
        assert torch.equal(mine, (F.silu(gate2.float()) * up2.float()).bfloat16())
        with pytest.raises(ValueError, match="two bfloat16 tensors of one shape"):
            _operator()(gate, up[:-1], SILU)
        with pytest.raises(ValueError, match="two bfloat16 tensors of one shape"):
            _operator()(gate.float(), up.float(), SILU)


def test_activation_mode_choices() -> None:
    assert activation_mode("float32", "cpu") is None
    assert activation_mode("bfloat16", "cuda:0") is None
    assert activation_mode("bfloat16", "cpu", "torch") is None
    with pytest.raises(ModelError, match="unknown activation 'fast'"):
        activation_mode("bfloat16", "cpu", "fast")
    with pytest.raises(ModelError, match="needs --dtype bfloat16"):
        activation_mode("float32", "cpu", "native")
    if "avx512_bf16" in (cpu_flags() or ()):
        assert activation_mode("bfloat16", "cpu") == NATIVE_ACTIVATION


def test_kinds_of_activation_modules() -> None:
    from transformers.activations import ACT2FN

    assert kind_of(ACT2FN["silu"]) == SILU
    assert kind_of(torch.nn.SiLU()) == SILU
    assert kind_of(ACT2FN["gelu_pytorch_tanh"]) == GELU_TANH
    assert kind_of(torch.nn.GELU(approximate="tanh")) == GELU_TANH
    assert kind_of(torch.nn.GELU()) is None  # the exact GELU: not this kernel's
    assert kind_of(torch.nn.ReLU()) is None
    assert kind_of(None) is None


class _Gated(torch.nn.Module):
    def __init__(self, act: torch.nn.Module, bias: float = 0.0) -> None:
        super().__init__()
        self.gate_proj = torch.nn.Linear(16, 32, bias=False)
        self.up_proj = torch.nn.Linear(16, 32, bias=False)
        self.down_proj = torch.nn.Linear(32, 16, bias=False)
        self.act_fn = act
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x) + self.bias)


@avx512_only
def test_only_mlps_the_kernel_computes_are_replaced() -> None:
    model = torch.nn.ModuleList(
        [_Gated(torch.nn.SiLU()), _Gated(torch.nn.ReLU()), _Gated(torch.nn.SiLU(), bias=1.0)]
    ).bfloat16()
    assert [kind for _, kind in gated_mlps(model)] == [SILU, SILU]  # ReLU: unknown kind
    assert computes_same(model[0], _fused(SILU, model[0].forward))
    assert not computes_same(model[2], _fused(SILU, model[2].forward))
    fused = FusedActivation(model)
    # the MLP that adds a bias computes something else: it keeps its own forward
    assert [module for module, _ in fused.forwards] == [model[0]]
    x = torch.randn(3, 16).bfloat16()
    with torch.inference_mode():
        before = model[0](x)
        with fused, torch.profiler.profile() as profile:
            inside = model[0](x)
        after = model[0](x)
        with fused:  # other input than bfloat16: the module's own forward
            assert torch.equal(model[0].float()(x.float()), model[0](x.float()))
    assert any("gated_act" in e.name for e in profile.events())
    assert torch.equal(before, after) and "forward" not in vars(model[0])
    assert torch.allclose(inside.float(), before.float(), rtol=0.02, atol=0.02)


@pytest.fixture(scope="module", params=["silu", "gelu_pytorch_tanh"])
def tiny_gated_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    return build_tiny_llama(folder, hidden=64, act=request.param)


@avx512_only
@pytest.mark.parametrize("compile_mode", ["on", "off"])
def test_scoring_with_the_kernel_matches_torch(
    tiny_gated_model: Path, medboard_home: Path, compile_mode: str
) -> None:
    requests = [
        ChoiceRequest("Question: Which nerve innervates the diaphragm?\nAnswer:", (" A", " B")),
        ChoiceRequest("Question: Where is the liver?\nAnswer:", (" right upper", " left")),
    ]
    mine, plain, got, expected, events = score_with_kernel(
        tiny_gated_model, "activation", "native", requests, dtype="bfloat16",
        compile_mode=compile_mode,
    )  # fmt: skip
    assert mine.identity()["activation"] == NATIVE_ACTIVATION
    assert plain.identity()["activation"] is None
    assert any("gated_act" in name for name in events)  # no silent fallback
    for e, g in zip(expected, got, strict=True):
        if compile_mode == "on":  # the compiled kernel's arithmetic, bit for bit
            assert g.logprobs == e.logprobs
        else:  # eager rounds act(gate) before the product; the kernel does not
            assert g.logprobs == pytest.approx(e.logprobs, rel=0.02, abs=0.05)
    prompt = GenerateRequest("Question: Where is the liver?\nAnswer:", max_new_tokens=4)
    assert mine.generate([prompt]) == plain.generate([prompt])  # generation keeps torch's
