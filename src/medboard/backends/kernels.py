"""How bfloat16 matrix products run: natively, or as float32 products of bfloat16 values.

A bfloat16 GEMM multiplies bfloat16 inputs, accumulates in float32 and rounds the result to
bfloat16. A float32 GEMM on the same (exactly representable) values, rounded the same way, gives
the same numbers up to summation order, the same freedom a change of batch shape already takes.
CPUs without AMX run native bfloat16 GEMMs slower than float32 ones (measured here: 57 against
92 GFLOP/s per core), so there medboard keeps the model in bfloat16 and computes its linear
layers in float32.
"""

import types
from functools import cache
from pathlib import Path
from typing import Any, Literal

from medboard.errors import ModelError

MatmulMode = Literal["native", "float32"]
MATMUL_CHOICES = ("auto", "native", "float32")


@cache
def cpu_has_amx() -> bool:
    """Whether the CPU has AMX bfloat16 tiles (Linux; elsewhere assume it has)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    for line in text.splitlines():
        if line.startswith("flags"):
            return "amx_bf16" in line.split()
    return True


def matmul_mode(dtype: str, device: str, requested: str = "auto") -> MatmulMode | None:
    """The bf16 matmul path for a run: None when the dtype is not bfloat16."""
    if requested not in MATMUL_CHOICES:
        raise ModelError(
            f"unknown bf16 matmul mode '{requested}' (choose from {', '.join(MATMUL_CHOICES)})"
        )
    if dtype != "bfloat16":
        return None
    if requested != "auto":
        return requested  # type: ignore[return-value]
    if device.startswith("cuda") or cpu_has_amx():
        return "native"
    return "float32"


def use_float32_matmul(model: Any) -> int:
    """Compute every bfloat16 nn.Linear of `model` in float32; returns how many were changed.

    Projections that read the same input (query, key and value; gate and up) share one
    conversion of it to float32.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    last: list[Any] = [None, None]  # the last bfloat16 input and its float32 copy

    def as_float(x: Any) -> Any:
        if last[0] is not x:
            last[0], last[1] = x, x.float()
        return last[1]

    changed = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear) or module.weight.dtype != torch.bfloat16:
            continue

        def forward(self: Any, x: Any) -> Any:
            # The float32 weight is made per call, not kept: keeping float32 copies would
            # double the model's memory, and one conversion per forward pass costs about one
            # operation per weight against two per weight for every token of the batch.
            bias = None if self.bias is None else self.bias.float()
            return F.linear(as_float(x), self.weight.float(), bias).to(x.dtype)

        module.forward = types.MethodType(forward, module)
        changed += 1
    return changed
