from pathlib import Path

import pytest

from medboard.backends import ChoiceRequest, GenerateRequest, activation
from medboard.backends.activation import (
    FUSED_MLP,
    GELU_TANH,
    NATIVE_ACTIVATION,
    SILU,
    FusedActivation,
    _fused,
    _mlp_operator,
    _operator,
    activation_mode,
    computes_same,
    fused_usable,
    gated_mlps,
    kind_of,
    pack,
)
from medboard.backends.kernels import INDUCTOR_OPTIONS
from medboard.backends.probe import cpu_flags
from medboard.errors import ModelError
from tests.conftest import build_tiny_llama, made_up_clock, score_with_kernel

torch = pytest.importorskip("torch")
F = torch.nn.functional
avx512_only = pytest.mark.skipif(
    "avx512_bf16" not in (cpu_flags() or ()), reason="the kernel needs AVX-512 BF16"
)
amx_only = pytest.mark.skipif(not fused_usable(), reason="the fused kernel runs on AMX tiles")
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


def test_activation_mode_choices(medboard_home: Path) -> None:
    assert activation_mode("float32", "cpu") is None
    assert activation_mode("bfloat16", "cuda:0") is None
    assert activation_mode("bfloat16", "cpu", "torch") is None
    with pytest.raises(ModelError, match="unknown activation 'fast'"):
        activation_mode("bfloat16", "cpu", "fast")
    with pytest.raises(ModelError, match="needs --dtype bfloat16"):
        activation_mode("float32", "cpu", "native")
    if "avx512_bf16" in (cpu_flags() or ()):
        fused = FUSED_MLP if fused_usable() else NATIVE_ACTIVATION
        assert activation_mode("bfloat16", "cpu", "native") == fused
        assert activation_mode("bfloat16", "cpu", "native", True, "float32") == fused
        # auto leaves compiled layers with float32 products to torch (their arithmetic differs)
        assert activation_mode("bfloat16", "cpu", "auto", True, "float32") is None


def _clock(monkeypatch: pytest.MonkeyPatch, winners: set[str]) -> list[list[str]]:
    """A machine on which the `winners` are the fast candidates."""
    names = ("native", "torch", "fused", "products")
    return made_up_clock(monkeypatch, {n: 1.0 if n in winners else 2.0 for n in names})


@avx512_only
@pytest.mark.parametrize("compiled", [True, False])
def test_auto_takes_the_kernels_where_this_machine_runs_them_faster(
    compiled: bool, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed = _clock(monkeypatch, {"native", "fused"})
    fused = FUSED_MLP if fused_usable() else NATIVE_ACTIVATION
    assert activation_mode("bfloat16", "cpu", "auto", compiled, "native") == fused
    assert timed[0] == ["native", "torch"]
    assert timed[1:] == ([["fused", "products"]] if fused_usable() else [])
    assert activation_mode("bfloat16", "cpu", "auto", compiled, "native") == fused  # kept
    assert len(timed) == (2 if fused_usable() else 1)


@avx512_only
def test_auto_keeps_torchs_activation_where_it_is_faster(
    medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clock(monkeypatch, {"torch"})
    assert activation_mode("bfloat16", "cpu", "auto", True, "native") is None
    assert activation_mode("bfloat16", "cpu", "native", True, "native") is not None  # asked


@amx_only
def test_auto_takes_gated_act_where_the_fused_kernel_is_slower(
    medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clock(monkeypatch, {"native", "products"})
    assert activation_mode("bfloat16", "cpu", "auto", True, "native") == NATIVE_ACTIVATION
    assert activation_mode("bfloat16", "cpu", "native", True, "native") == FUSED_MLP


@avx512_only
def test_activation_mode_without_amx(medboard_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(monkeypatch, {"native"})
    monkeypatch.setattr(activation, "fused_usable", lambda: False)
    assert activation_mode("bfloat16", "cpu") == NATIVE_ACTIVATION


@amx_only
def test_activation_mode_when_the_fused_kernel_does_not_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def broken() -> None:
        raise ModelError("building gated_mlp_amx.c failed: no AMX in this compiler")

    monkeypatch.setattr(activation, "mlp_library", broken)
    assert activation_mode("bfloat16", "cpu", "native") == NATIVE_ACTIVATION
    assert "gated_act.c instead of the fused MLP kernel" in capsys.readouterr().err


def _mlp_inputs(rows: int, k: int, n: int, seed: int) -> tuple:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, k, generator=g).bfloat16()
    gate = (torch.randn(n, k, generator=g) * k**-0.5 * 2).bfloat16()
    up = (torch.randn(n, k, generator=g) * k**-0.5).bfloat16()
    return x, gate, up


@amx_only
@pytest.mark.parametrize("kind", [SILU, GELU_TANH])
@pytest.mark.parametrize(
    ("rows", "k", "n"),
    [
        (1100, 576, 1536),  # SmolLM2's MLP: several chunks, a short last block
        (64, 640, 2048),  # Gemma-3's
        (1, 64, 128),
        (45, 96, 48),  # an odd number of 16-column groups: one without a pair
        (33, 32, 16),
    ],
)
def test_fused_kernel_gives_torchs_products_and_activation(
    kind: int, rows: int, k: int, n: int
) -> None:
    """act(x gate^T) * (x up^T) as torch's bfloat16 products and gated_act.c give it: the same
    float32 accumulation (in another order only where oneDNN splits the sum), so all but a few
    values at bfloat16 rounding boundaries are identical."""
    x, gate, up = _mlp_inputs(rows, k, n, seed=rows + n)
    with torch.inference_mode():
        mine = _mlp_operator()(x, pack(gate, up), kind)
        theirs = _operator()(F.linear(x, gate), F.linear(x, up), kind)
        exact = TORCH_ACT[kind](x.double() @ gate.double().t(), x.double() @ up.double().t())
    assert mine.shape == (rows, n) and mine.dtype == torch.bfloat16
    assert (mine == theirs).double().mean() > 0.99
    assert torch.allclose(mine.double(), theirs.double(), rtol=2**-6, atol=2**-6)
    # within the bfloat16 roundings of gate, up and the result of the exact value
    assert torch.allclose(mine.double(), exact, rtol=2**-5, atol=2**-5)


@amx_only
def test_fused_kernel_takes_batches_and_refuses_what_it_cannot_pack() -> None:
    x, gate, up = _mlp_inputs(2 * 7, 64, 128, seed=3)
    packed = pack(gate, up)
    assert packed.shape == (8, 2, 2, 16, 32)
    with torch.inference_mode():
        batched = _mlp_operator()(x.view(2, 7, 64), packed, SILU)
        flat = _mlp_operator()(x, packed, SILU)
        assert batched.shape == (2, 7, 128) and torch.equal(batched.view(14, 128), flat)
        with pytest.raises(ValueError, match="bfloat16 inputs of 64 features"):
            _mlp_operator()(x[:, :32], packed, SILU)
        with pytest.raises(ValueError, match="bfloat16 inputs of 64 features"):
            _mlp_operator()(x.float(), packed, SILU)
    with pytest.raises(ValueError, match="cannot pack"):
        pack(gate[:, :48], up[:, :48])  # 48 inputs: not a multiple of 32
    with pytest.raises(ValueError, match="cannot pack"):
        pack(gate[:120], up[:120])  # 120 outputs: not a multiple of 16
    with pytest.raises(ValueError, match="cannot pack"):
        pack(gate, up[:64])


@amx_only
def test_fused_kernel_leaves_onednn_tile_state_alone() -> None:
    """oneDNN's bfloat16 products on the same threads still compute the same after it."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(256, 512, generator=g).to(torch.bfloat16)
    b = torch.randn(512, 384, generator=g).to(torch.bfloat16)
    x, gate, up = _mlp_inputs(100, 64, 96, seed=4)
    with torch.inference_mode():
        before = a @ b
        _mlp_operator()(x, pack(gate, up), SILU)
        after = a @ b
    assert torch.equal(before, after)


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
    def __init__(self, act: torch.nn.Module, bias: float = 0.0, k: int = 16) -> None:
        super().__init__()
        self.gate_proj = torch.nn.Linear(k, 32, bias=False)
        self.up_proj = torch.nn.Linear(k, 32, bias=False)
        self.down_proj = torch.nn.Linear(32, k, bias=False)
        self.act_fn = act
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x) + self.bias)


@amx_only
def test_fused_kernel_only_for_mlps_whose_products_it_takes() -> None:
    model = torch.nn.ModuleList([_Gated(torch.nn.SiLU(), k=64), _Gated(torch.nn.SiLU())])
    model[1].gate_proj.bias = torch.nn.Parameter(torch.zeros(32))  # a bias: elementwise only
    model = model.bfloat16()
    fused = FusedActivation(model, products=True)
    assert len(fused.forwards) == 2
    assert "medboard_gate_up" in dict(model[0].named_buffers())
    assert "medboard_gate_up" not in model[0].state_dict()  # not saved with the model
    assert not hasattr(model[1], "medboard_gate_up")
    _check_inside(fused, model[0], torch.randn(3, 64).bfloat16(), "gated_mlp")


def _check_inside(
    fused: FusedActivation, module: torch.nn.Module, x: torch.Tensor, kernel: str
) -> None:
    """The module's forward runs `kernel` inside `fused` only, and gives about its own output."""
    with torch.inference_mode():
        before = module(x)
        with fused, torch.profiler.profile() as profile:
            inside = module(x)
        after = module(x)
    assert any(kernel in e.name for e in profile.events())
    assert torch.equal(before, after) and "forward" not in vars(module)
    assert torch.allclose(inside.float(), before.float(), rtol=0.02, atol=0.02)


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
    _check_inside(fused, model[0], x, "gated_act")
    with torch.inference_mode(), fused:  # other input than bfloat16: the module's own forward
        assert torch.equal(model[0].float()(x.float()), model[0](x.float()))


@pytest.fixture(scope="module", params=["silu", "gelu_pytorch_tanh"])
def tiny_gated_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    return build_tiny_llama(folder, hidden=64, act=request.param)


@avx512_only
@pytest.mark.parametrize(
    ("compile_mode", "fused", "matmul"),
    [
        ("on", False, "native"),
        ("on", False, "float32"),
        ("on", True, "native"),
        ("off", False, "native"),
        ("off", False, "float32"),
        ("off", True, "native"),
    ],
)
def test_scoring_with_the_kernel_matches_torch(
    tiny_gated_model: Path,
    medboard_home: Path,
    compile_mode: str,
    fused: bool,
    matmul: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel in a model's layers, against torch's activation, on every instruction set
    with AVX-512 BF16: bit for bit where the compiled layers round the products to bfloat16
    before the activation as the kernel does (native products); with float32 products the
    compiler feeds the activation their float32 values instead (seen first on an EPYC without
    AMX, whose products were float32 by default then), so the numbers are close, not equal, and
    the run keys keep the two apart."""
    if fused and not fused_usable():
        pytest.skip("the fused kernel runs on AMX tiles")
    monkeypatch.setattr(activation, "fused_usable", lambda: fused)
    requests = [
        ChoiceRequest("Question: Which nerve innervates the diaphragm?\nAnswer:", (" A", " B")),
        ChoiceRequest("Question: Where is the liver?\nAnswer:", (" right upper", " left")),
    ]
    mine, plain, got, expected, events = score_with_kernel(
        tiny_gated_model, "activation", "native", requests, dtype="bfloat16",
        compile_mode=compile_mode, matmul=matmul,
    )  # fmt: skip
    assert mine.identity()["activation"] == (FUSED_MLP if fused else NATIVE_ACTIVATION)
    assert plain.identity()["activation"] is None
    assert mine.identity()["matmul"] == plain.identity()["matmul"] == matmul
    kernel = "gated_mlp" if fused else "gated_act"
    assert any(kernel in name for name in events)  # no silent fallback
    for e, g in zip(expected, got, strict=True):
        if compile_mode == "on" and not fused and matmul == "native":
            assert g.logprobs == e.logprobs  # the compiled kernel's arithmetic, bit for bit
        else:  # eager rounds act(gate) before the product, the kernels do not; the fused
            # kernel sums the products in oneDNN's order for large inputs only; compiled
            # float32 products reach the activation unrounded (see above)
            assert g.logprobs == pytest.approx(e.logprobs, rel=0.02, abs=0.1)
    prompt = GenerateRequest("Question: Where is the liver?\nAnswer:", max_new_tokens=4)
    assert mine.generate([prompt]) == plain.generate([prompt])  # generation keeps torch's
