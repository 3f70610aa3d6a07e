"""Gated MLP activations in one pass for bfloat16 scoring on the CPU (gated_act.c).

A Llama- or Gemma-style MLP computes down(act(gate(x)) * up(x)). Compiled, act(gate) * up is one
elementwise kernel, and on SmolLM2-135M it was the most expensive one by far (23 of 41 seconds
of elementwise work in the 9-task suite): it spends twice the time its memory traffic needs, on
SLEEF's exponential and the division. gated_act.c computes the same operations in the same
order with a cheaper exponential: identical bfloat16 results to the compiled kernel's on
millions of random values, in 55-65% of its time.

On a CPU with AMX, gated_mlp_amx.c goes further: both products and the activation in one
kernel (the activation mostly hidden behind the next block's products, gate and up never
written to memory): on SmolLM2's MLP at 4,096 tokens 7.2 against 7.9 ms for torch's two
products and gated_act.c with the weights coming from memory, as in a forward pass (5.3-5.8
against 6.7-7.7 ms with them in cache).

It replaces the forward of each MLP whose activation it knows (SiLU, GELU with the tanh
approximation), after checking on a small input that the replacement computes what the module
does; any other MLP keeps its own forward.
"""

import ctypes
import sys
import types
from collections.abc import Callable
from functools import cache
from typing import Any

from medboard.backends.native import AVX512, build, build_amx, kernel_mode
from medboard.backends.probe import cpu_has_amx, cpu_has_avx512_bf16, fastest
from medboard.errors import ModelError

ACTIVATION_CHOICES = ("auto", "torch", "native")
# Recorded in run keys (like attention.AMX_ATTENTION): bump with a change to the arithmetic.
NATIVE_ACTIVATION = "avx512-1"  # gated_act.c between torch's products
FUSED_MLP = "amx-mlp-1"  # gated_mlp_amx.c: products and activation in one kernel
SILU, GELU_TANH = 0, 1  # gated_act.c's kinds
KINDS = {
    "SiLU": SILU,
    "SiLUActivation": SILU,
    "GELUTanh": GELU_TANH,
    "PytorchGELUTanh": GELU_TANH,
    "NewGELUActivation": GELU_TANH,
}


def activation_mode(
    dtype: str,
    device: str,
    requested: str = "auto",
    compiled: bool = False,
    matmul: str | None = None,
) -> str | None:
    """What scoring passes run between a gated MLP's projections: FUSED_MLP (the AMX kernel,
    products included) or NATIVE_ACTIVATION (gated_act.c) for `native`, and for `auto` where
    they can and are faster on this machine than what they replace (probe.fastest), else None
    (torch's activation, `compiled` or eager).

    `auto` leaves compiled layers with float32 products (`matmul`) to torch: the compiler fuses
    the rounding of the products to bfloat16 away and feeds the activation their float32 values,
    while the kernel takes them rounded (as it does everywhere else, where the compiled layers
    round them too), so its numbers would differ from the layers' (by 0.07 in a log-likelihood
    of -32.6 on a tiny random model, on every instruction set)."""
    usable = (
        dtype == "bfloat16"
        and device == "cpu"
        and sys.platform == "linux"
        and cpu_has_avx512_bf16()
        and not (requested == "auto" and compiled and matmul == "float32")
    )
    requirement = "--dtype bfloat16 on a Linux CPU with AVX-512 BF16"
    mode = kernel_mode(
        "activation", requested, ACTIVATION_CHOICES, usable, requirement, library,
        NATIVE_ACTIVATION,
        faster=lambda: fastest(
            "gated-activation", lambda: _activation_candidates(compiled), {"compiled": compiled}
        ) == "native",
    )  # fmt: skip
    if mode is None or not fused_usable():
        return mode
    try:
        mlp_library()
    except ModelError as exc:
        print(f"medboard: gated_act.c instead of the fused MLP kernel: {exc}", file=sys.stderr)
        return mode
    if requested == "auto" and fastest("fused-mlp", _mlp_candidates) != "fused":
        return mode
    return FUSED_MLP


def fused_usable() -> bool:
    """Whether the CPU runs gated_mlp_amx.c (AMX bfloat16 tiles, which Linux grants)."""
    return sys.platform == "linux" and cpu_has_amx()


# The probes' MLP: a batch of tokens through a gated MLP of a small model's size.
PROBE_SHAPE = (2048, 1024, 2048)  # tokens, inputs, hidden units


def _probe_tensors(*shapes: tuple[int, ...]) -> list[Any]:
    import torch

    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator).bfloat16() for shape in shapes]


def _activation_candidates(compiled: bool) -> dict[str, Callable[[], object]]:
    """gated_act.c and torch's SiLU-times-up (compiled, as the compiled layers run it, or
    eager) on the same inputs."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    tokens, _, hidden = PROBE_SHAPE
    gate, up = _probe_tensors((tokens, hidden), (tokens, hidden))
    kernel = _operator()

    def theirs(g: Any, u: Any) -> Any:
        return F.silu(g) * u

    if compiled:
        from medboard.backends.kernels import INDUCTOR_OPTIONS

        theirs = torch.compile(theirs, dynamic=True, options=INDUCTOR_OPTIONS)
    return {"native": lambda: kernel(gate, up, SILU), "torch": lambda: theirs(gate, up)}


def _mlp_candidates() -> dict[str, Callable[[], object]]:
    """gated_mlp_amx.c against torch's two products and gated_act.c, on the same MLP."""
    import torch.nn.functional as F  # noqa: N812

    tokens, inputs, hidden = PROBE_SHAPE
    x, gate, up = _probe_tensors((tokens, inputs), (hidden, inputs), (hidden, inputs))
    packed, fused, kernel = pack(gate, up), _mlp_operator(), _operator()
    return {
        "fused": lambda: fused(x, packed, SILU),
        "products": lambda: kernel(F.linear(x, gate), F.linear(x, up), SILU),
    }


@cache
def library() -> ctypes.CDLL:
    """gated_act.c, built once on this machine and loaded (native.build)."""
    lib = build("gated_act.c", AVX512)
    pointer = ctypes.c_void_p
    lib.mb_gated_act_bf16.argtypes = [pointer] * 3 + [ctypes.c_int64, ctypes.c_int]
    lib.mb_gated_act_bf16.restype = None
    return lib


@cache
def _operator() -> Any:
    """The kernel as torch.ops.medboard.gated_act (registered on first use)."""
    import torch

    @torch.library.custom_op("medboard::gated_act", mutates_args=())
    def gated_act(gate: torch.Tensor, up: torch.Tensor, kind: int) -> torch.Tensor:
        if gate.shape != up.shape or gate.dtype != up.dtype or gate.dtype != torch.bfloat16:
            raise ValueError(f"gated_act takes two bfloat16 tensors of one shape, not {gate.shape}")
        gate, up = gate.contiguous(), up.contiguous()
        out = torch.empty_like(gate)
        pointers = (t.data_ptr() for t in (gate, up, out))
        library().mb_gated_act_bf16(*pointers, out.numel(), kind)
        return out

    @gated_act.register_fake
    def _(gate: torch.Tensor, up: torch.Tensor, kind: int) -> Any:
        return torch.empty_like(gate)

    return gated_act


@cache
def mlp_library() -> ctypes.CDLL:
    """gated_mlp_amx.c, built once on this machine and loaded (native.build)."""
    lib = build_amx("gated_mlp_amx.c")
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    lib.mb_pack_gated_bf16.argtypes = [pointer] * 3 + [size] * 2
    lib.mb_pack_gated_bf16.restype = None
    lib.mb_gated_mlp_bf16.argtypes = [pointer] * 3 + [size] * 4 + [ctypes.c_int]
    lib.mb_gated_mlp_bf16.restype = ctypes.c_int
    return lib


def pack(gate: Any, up: Any) -> Any:
    """Two bfloat16 linear weights [N, K] in gated_mlp_amx.c's tiles: [N/16, 2, K/32, 16, 32]."""
    import torch

    n, k = gate.shape
    if up.shape != gate.shape or n % 16 or k % 32 or gate.dtype != torch.bfloat16:
        raise ValueError(f"cannot pack {tuple(gate.shape)} weights into AMX tiles")
    packed = torch.empty((n // 16, 2, k // 32, 16, 32), dtype=torch.bfloat16)
    gate, up = gate.detach().contiguous(), up.detach().contiguous()
    mlp_library().mb_pack_gated_bf16(gate.data_ptr(), up.data_ptr(), packed.data_ptr(), n, k)
    return packed


@cache
def _mlp_operator() -> Any:
    """The fused kernel as torch.ops.medboard.gated_mlp (registered on first use)."""
    import torch

    @torch.library.custom_op("medboard::gated_mlp", mutates_args=())
    def gated_mlp(x: torch.Tensor, packed: torch.Tensor, kind: int) -> torch.Tensor:
        n, k = packed.shape[0] * 16, packed.shape[2] * 32
        if x.dtype != torch.bfloat16 or x.shape[-1] != k:
            raise ValueError(f"gated_mlp takes bfloat16 inputs of {k} features, not {x.shape}")
        rows = x.reshape(-1, k).contiguous()
        out = torch.empty((*x.shape[:-1], n), dtype=torch.bfloat16)
        status = mlp_library().mb_gated_mlp_bf16(
            rows.data_ptr(), packed.data_ptr(), out.data_ptr(), rows.shape[0], n, k, k, kind
        )
        if status != 0:
            raise MemoryError("the fused MLP kernel could not allocate its buffers")
        return out

    @gated_mlp.register_fake
    def _(x: torch.Tensor, packed: torch.Tensor, kind: int) -> Any:
        return x.new_empty((*x.shape[:-1], packed.shape[0] * 16))

    return gated_mlp


def kind_of(act_fn: Any) -> int | None:
    """gated_act.c's kind for an activation module, None if the kernel does not compute it."""
    name = type(act_fn).__name__
    if name == "GELU":  # torch.nn.GELU
        return GELU_TANH if getattr(act_fn, "approximate", None) == "tanh" else None
    return KINDS.get(name)


def _fused(kind: int, own: Any, products: bool = False) -> Any:
    """A forward for a gated MLP: the kernel between its projections, or with `products` the
    fused kernel for both products too (its own forward for other input)."""

    def forward(self: Any, x: Any) -> Any:
        import torch

        if x.dtype != torch.bfloat16 or x.device.type != "cpu":
            return own(x)
        if products:
            return self.down_proj(torch.ops.medboard.gated_mlp(x, self.medboard_gate_up, kind))
        gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(torch.ops.medboard.gated_act(gate, up, kind))

    return forward


def packable(module: Any) -> bool:
    """Whether the fused kernel takes the MLP's products: no biases, shapes fitting its tiles."""
    gate, up = module.gate_proj, module.up_proj
    return (
        gate.bias is None
        and up.bias is None
        and gate.weight.shape == up.weight.shape
        and gate.out_features % 16 == 0
        and gate.in_features % 32 == 0
    )


def gated_mlps(model: Any) -> list[tuple[Any, int]]:
    """The model's modules of the form down_proj(act_fn(gate_proj(x)) * up_proj(x)) whose act_fn
    the kernel computes, with its kind (by attributes; `FusedActivation` checks the numbers)."""
    import torch

    found = []
    for module in model.modules():
        projections = [getattr(module, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if not all(isinstance(p, torch.nn.Linear) for p in projections):
            continue
        kind = kind_of(getattr(module, "act_fn", None))
        if kind is not None:
            found.append((module, kind))
    return found


def computes_same(module: Any, forward: Any) -> bool:
    """Whether `forward` gives the module's own output on a small random bfloat16 input, up to
    bfloat16 rounding (the module rounds act(gate) before the product, the kernel does not)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 7, module.gate_proj.in_features), generator=generator).bfloat16()
    with torch.inference_mode():
        own, mine = module(x).float(), forward(module, x).float()
    return bool((own - mine).norm() <= 2e-2 * own.norm() + 1e-6)


class FusedActivation:
    """gated_act.c between the projections of every gated MLP it serves, while inside; with
    `products` (FUSED_MLP), gated_mlp_amx.c for the MLPs whose products fit its tiles."""

    def __init__(self, model: Any, products: bool = False) -> None:
        _operator()
        if products:
            _mlp_operator()
        self.forwards: list[tuple[Any, Any]] = []
        for module, kind in gated_mlps(model):
            fused = products and packable(module)
            if fused:  # the tiles live beside the weights (not saved with the model)
                packed = pack(module.gate_proj.weight, module.up_proj.weight)
                module.register_buffer("medboard_gate_up", packed, persistent=False)
            forward = _fused(kind, module.forward, fused)
            if computes_same(module, forward):  # per module: a flag may set one apart
                self.forwards.append((module, types.MethodType(forward, module)))
            elif fused:
                del module.medboard_gate_up

    def __enter__(self) -> "FusedActivation":
        for module, forward in self.forwards:
            module.forward = forward
        return self

    def __exit__(self, *exc: object) -> None:
        for module, _ in self.forwards:
            del module.forward  # back to the class's forward
