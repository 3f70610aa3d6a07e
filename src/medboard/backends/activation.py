"""Gated MLP activations in one pass for bfloat16 scoring on the CPU (gated_act.c).

A Llama- or Gemma-style MLP computes down(act(gate(x)) * up(x)). Compiled, act(gate) * up is one
elementwise kernel, and on SmolLM2-135M it was the most expensive one by far (23 of 41 seconds
of elementwise work in the 9-task suite): it spends twice the time its memory traffic needs, on
SLEEF's exponential and the division. gated_act.c computes the same operations in the same
order with a cheaper exponential: identical bfloat16 results to the compiled kernel's on
millions of random values, in 55-65% of its time.

It replaces the forward of each MLP whose activation it knows (SiLU, GELU with the tanh
approximation), after checking on a small input that the replacement computes what the module
does; any other MLP keeps its own forward.
"""

import ctypes
import sys
import types
from functools import cache
from typing import Any

from medboard.backends.kernels import cpu_flags
from medboard.backends.native import AVX512, build, kernel_mode

ACTIVATION_CHOICES = ("auto", "torch", "native")
# Recorded in run keys (like attention.AMX_ATTENTION): bump with a change to the arithmetic.
NATIVE_ACTIVATION = "avx512-1"
SILU, GELU_TANH = 0, 1  # gated_act.c's kinds
KINDS = {
    "SiLU": SILU,
    "SiLUActivation": SILU,
    "GELUTanh": GELU_TANH,
    "PytorchGELUTanh": GELU_TANH,
    "NewGELUActivation": GELU_TANH,
}


def activation_mode(dtype: str, device: str, requested: str = "auto") -> str | None:
    """NATIVE_ACTIVATION when scoring passes use gated_act.c, else None (torch's activation)."""
    flags = cpu_flags() or frozenset()
    usable = (
        dtype == "bfloat16"
        and device == "cpu"
        and sys.platform == "linux"
        and {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"} <= flags
    )
    requirement = "--dtype bfloat16 on a Linux CPU with AVX-512 BF16"
    return kernel_mode(
        "activation", requested, ACTIVATION_CHOICES, usable, requirement, library, NATIVE_ACTIVATION
    )


@cache
def library() -> ctypes.CDLL:
    """gated_act.c, built once into medboard's home and loaded (native.build)."""
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


def kind_of(act_fn: Any) -> int | None:
    """gated_act.c's kind for an activation module, None if the kernel does not compute it."""
    name = type(act_fn).__name__
    if name == "GELU":  # torch.nn.GELU
        return GELU_TANH if getattr(act_fn, "approximate", None) == "tanh" else None
    return KINDS.get(name)


def _fused(kind: int, own: Any) -> Any:
    """A forward for a gated MLP: the kernel between its projections (its own for other input)."""

    def forward(self: Any, x: Any) -> Any:
        import torch

        if x.dtype != torch.bfloat16 or x.device.type != "cpu":
            return own(x)
        gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(torch.ops.medboard.gated_act(gate, up, kind))

    return forward


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
    """gated_act.c between the projections of every gated MLP it serves, while inside."""

    def __init__(self, model: Any) -> None:
        _operator()
        self.forwards: list[tuple[Any, Any]] = []
        for module, kind in gated_mlps(model):
            forward = _fused(kind, module.forward)
            if computes_same(module, forward):  # per module: a flag may set one apart
                self.forwards.append((module, types.MethodType(forward, module)))

    def __enter__(self) -> "FusedActivation":
        for module, forward in self.forwards:
            module.forward = forward
        return self

    def __exit__(self, *exc: object) -> None:
        for module, _ in self.forwards:
            del module.forward  # back to the class's forward
