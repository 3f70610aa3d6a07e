"""Causal attention kernels for bfloat16 scoring passes on the CPU (attention_core.h): on AMX
tiles (attention_amx.c) or with AVX-512 BF16 instructions where there are no tiles
(attention_avx512.c: AMD Zen 4 and 5, Intel with AVX512_BF16 before Sapphire Rapids).

torch's CPU flash-attention kernel splits a prompt into blocks of 32 queries and multiplies each
block separately; at the hundred-odd tokens of a medical question that fixed cost outweighs the
arithmetic (about 0.1 TFLOP/s, a quarter of SmolLM2's scoring time). The kernels do the same
arithmetic (float32 scores and softmax, bfloat16 probabilities times values accumulated in
float32) over whole key ranges. Each is compiled with the system's C compiler on first use into
the machine cache and called through a torch custom operator, so compiled layers keep it as one
opaque call.

They run where they compute exactly what torch would (no mask, causal, queries = keys, head size
a multiple of 64, no logit soft-capping, no dropout; a sliding window shorter than the prompt on
packed batches only, whose segments say where each prompt starts); every other call, generation
with a KV cache included, goes to torch's SDPA as before.
"""

import ctypes
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from medboard.backends.native import AVX512, build, build_amx, kernel_mode
from medboard.backends.probe import cpu_has_amx, cpu_has_avx512_bf16, fastest
from medboard.errors import ModelError

ATTENTION_CHOICES = ("auto", "torch", "amx", "avx512")
# Recorded in run keys (like kernels.COMPILED_ARITHMETIC): the kernels round bfloat16 at other
# places than torch's, so answers can move at near-ties. Bump with a change to the arithmetic.
AMX_ATTENTION = "amx-2"  # 2: sliding windows in packed batches
AVX512_ATTENTION = "avx512-attn-2"


@dataclass(frozen=True)
class Kernel:
    """One attention kernel: its source, run-key tag, the CPU it needs (in words, and the check
    of this CPU), how its source is built, and its probe's name."""

    source: str
    tag: str
    requirement: str
    usable: Callable[[], bool]
    build: Callable[[str], ctypes.CDLL]
    probe: str


KERNELS = {
    "amx": Kernel(
        "attention_amx.c", AMX_ATTENTION, "a CPU with AMX (amx_bf16)", cpu_has_amx, build_amx,
        "amx-attention",
    ),
    "avx512": Kernel(
        "attention_avx512.c", AVX512_ATTENTION, "a CPU with AVX-512 BF16 (avx512_bf16)",
        cpu_has_avx512_bf16, lambda source: build(source, AVX512), "avx512-attention",
    ),
}  # fmt: skip
VARIANT_OF_TAG = {k.tag: name for name, k in KERNELS.items()}


def names(variant: str) -> tuple[str, str]:
    """The kernel's names among transformers' attention implementations: for padded batches,
    and for packed ones (several sequences one after another in one row, each attending only to
    itself; `medboard_segments`, their start offsets and the end, as a model kwarg)."""
    return f"medboard_{variant}", f"medboard_{variant}_packed"


def attention_mode(dtype: str, device: str, requested: str = "auto") -> str | None:
    """The tag of the kernel scoring passes use (AMX_ATTENTION, AVX512_ATTENTION), or None for
    torch's attention. `auto` takes the AMX kernel where the CPU has tiles, else the AVX-512
    BF16 one, where it builds and is faster than torch's SDPA on this machine."""
    if requested not in ATTENTION_CHOICES:
        choices = ", ".join(ATTENTION_CHOICES)
        raise ModelError(f"unknown attention '{requested}' (choose from {choices})")
    if requested == "torch":
        return None
    variant = requested if requested != "auto" else "amx" if cpu_has_amx() else "avx512"
    kernel = KERNELS[variant]
    # Linux only (the kernels ask Linux for the tile state; cpu_flags reads cpuinfo).
    usable = dtype == "bfloat16" and device == "cpu" and sys.platform == "linux"
    return kernel_mode(
        "attention", requested, ("auto", "torch", variant), usable and kernel.usable(),
        f"--dtype bfloat16 on {kernel.requirement}", lambda: library(variant), kernel.tag,
        faster=lambda: fastest(kernel.probe, lambda: _candidates(variant)) == variant,
    )  # fmt: skip


# The AMX probe's attention: a batch of questions of a typical length (the kernel also lets
# scoring pack them without padding, which this leaves out: the probe asks about the arithmetic
# alone; the AMX kernel wins there by 1.4 to 3x).
PROBE_SHAPE = (4, 8, 256, 64)  # questions, heads, tokens, head size
# The AVX-512 probe's: what the choice changes in scoring, on questions of the suite's lengths
# with a small model's heads (9 query, 3 key/value, 64 wide), two of each length: the kernel on
# them packed into one row, against torch's SDPA on a batch per length with the mask transformers
# builds for padded rows (batches of near-equal lengths: scoring sorts questions by length).
# Without tiles the two are close on the arithmetic alone (the kernel faster below about 128
# tokens, slower beyond, unmasked), so the probe times the whole difference.
PROBE_LENGTHS = (38, 52, 75, 117, 160, 230, 310, 420)
PROBE_HEADS = (9, 3, 64)


def _candidates(variant: str = "amx") -> dict[str, Callable[[], object]]:
    """The kernel and torch's SDPA on the same causal attention."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if variant != "amx":
        return _packed_candidates(variant)
    kernel = _operator(variant)
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(PROBE_SHAPE, generator=generator).bfloat16() for _ in range(3))
    scale = PROBE_SHAPE[-1] ** -0.5
    return {
        variant: lambda: kernel(query, key, value, scale),
        "torch": lambda: F.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scale
        ),
    }


def _packed_candidates(variant: str) -> dict[str, Callable[[], object]]:
    """The kernel on PROBE_LENGTHS (two of each) packed, torch's SDPA on them batched by length
    and masked."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    kernel = _packed_operator(variant)
    heads, kv_heads, size = PROBE_HEADS
    generator = torch.Generator().manual_seed(0)

    def random(*shape: int) -> Any:
        return torch.randn(shape, generator=generator).bfloat16()

    causal = [torch.ones(n, n).tril().bool() for n in PROBE_LENGTHS]
    batches = [
        ([random(2, h, n, size) for h in (heads, kv_heads, kv_heads)], mask)
        for n, mask in zip(PROBE_LENGTHS, causal, strict=True)
    ]
    packed = [torch.cat([t.transpose(0, 1).flatten(1, 2) for t in x], 1)[None] for x in zip(
        *(qkv for qkv, _ in batches), strict=True
    )]  # fmt: skip
    starts = torch.tensor([0, *[n for n in PROBE_LENGTHS for _ in range(2)]]).cumsum(0)
    scale = size**-0.5

    def padded() -> None:
        for (query, key, value), mask in batches:
            F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, scale=scale, enable_gqa=True
            )

    return {variant: lambda: kernel(*packed, starts, scale), "torch": padded}


@cache
def library(variant: str = "amx") -> ctypes.CDLL:
    """The kernel's source, built once on this machine and loaded (native.build)."""
    kernel = KERNELS[variant]
    lib = kernel.build(kernel.source)
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    lib.mb_attention_bf16.argtypes = [pointer] * 4 + [size] * 5 + [pointer] * 3 + [ctypes.c_float]
    lib.mb_attention_bf16.restype = ctypes.c_int
    packed = lib.mb_attention_packed_bf16
    packed.argtypes = [pointer] * 5 + [size] * 5 + [pointer] * 3 + [ctypes.c_float, size]
    packed.restype = ctypes.c_int
    return lib


@cache
def _operator(variant: str = "amx") -> Any:
    """The kernel as torch.ops.medboard.<variant>_causal_attention (registered on first use)."""
    import torch

    @torch.library.custom_op(f"medboard::{variant}_causal_attention", mutates_args=())
    def causal_attention(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
    ) -> torch.Tensor:
        batch, heads, length, size = query.shape
        query, key, value = (_rows_ready(t) for t in (query, key, value))
        out = torch.empty((batch, length, heads, size), dtype=query.dtype)
        strides = [(ctypes.c_int64 * 3)(*t.stride()[:3]) for t in (query, key, value)]
        status = library(variant).mb_attention_bf16(
            query.data_ptr(), key.data_ptr(), value.data_ptr(), out.data_ptr(),
            batch, length, heads, key.shape[1], size,
            *strides, scale,
        )  # fmt: skip
        if status != 0:
            raise MemoryError("the attention kernel could not allocate its buffers")
        return out

    @causal_attention.register_fake
    def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> Any:
        batch, heads, length, size = query.shape
        return query.new_empty((batch, length, heads, size))

    return causal_attention


@cache
def _packed_operator(variant: str = "amx") -> Any:
    """The kernel on packed sequences, torch.ops.medboard.<variant>_packed_attention: query, key
    and value [1, heads, positions, size], `starts` the sequences' first positions and the end,
    each query seeing the last `window` positions of its sequence up to itself (0: all)."""
    import torch

    @torch.library.custom_op(f"medboard::{variant}_packed_attention", mutates_args=())
    def packed_attention(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, starts: torch.Tensor,
        scale: float, window: int = 0,
    ) -> torch.Tensor:  # fmt: skip
        _, heads, length, size = query.shape
        query, key, value = (_rows_ready(t) for t in (query, key, value))
        starts = starts.to(torch.int64).contiguous()
        longest = int((starts[1:] - starts[:-1]).max()) if len(starts) > 1 else 0
        out = torch.empty((1, length, heads, size), dtype=query.dtype)
        strides = [(ctypes.c_int64 * 3)(*t.stride()[:3]) for t in (query, key, value)]
        status = library(variant).mb_attention_packed_bf16(
            query.data_ptr(), key.data_ptr(), value.data_ptr(), out.data_ptr(),
            starts.data_ptr(), len(starts) - 1, longest, heads, key.shape[1], size,
            *strides, scale, window,
        )  # fmt: skip
        if status != 0:
            raise MemoryError("the attention kernel could not allocate its buffers")
        return out

    @packed_attention.register_fake
    def _(
        query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, starts: torch.Tensor,
        scale: float, window: int = 0,
    ) -> Any:  # fmt: skip
        _, heads, length, size = query.shape
        return query.new_empty((1, length, heads, size))

    return packed_attention


def _rows_ready(t: Any) -> Any:
    """The kernel reads rows of two-value words: contiguous rows at even offsets."""
    if t.stride(-1) != 1 or any(s % 2 for s in t.stride()[:3]):
        return t.contiguous()
    return t


def applies(
    module: Any, query: Any, key: Any, value: Any, mask: Any, dropout: float, **kwargs: Any
) -> bool:
    """Whether the kernel computes what torch's SDPA would for this call."""
    import torch

    batch, heads, length, size = query.shape
    window = kwargs.get("sliding_window")
    return (
        mask is None
        and query.dtype == key.dtype == value.dtype == torch.bfloat16
        and query.device.type == "cpu"
        and key.shape == value.shape == (batch, key.shape[1], length, size)
        and size % 64 == 0
        and heads % key.shape[1] == 0
        and getattr(module, "is_causal", True)
        and kwargs.get("is_causal") is not False
        and not (dropout and module.training)
        and kwargs.get("softcap") is None
        and (not window or length <= window)
    )


def forwards(variant: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """transformers' attention interface for the kernel: on padded batches, and on packed ones."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kernel, packed_kernel = _operator(variant), _packed_operator(variant)

    def attention_forward(
        module: Any,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any,
        dropout: float = 0.0,
        scaling: float | None = None,
        **kwargs: Any,
    ) -> tuple[Any, None]:
        """The kernel where it applies, else torch's SDPA."""
        if applies(module, query, key, value, attention_mask, dropout, **kwargs):
            scale = scaling if scaling is not None else query.shape[-1] ** -0.5
            return kernel(query, key, value, float(scale)), None
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )

    def packed_forward(
        module: Any,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any,
        dropout: float = 0.0,
        scaling: float | None = None,
        **kwargs: Any,
    ) -> tuple[Any, None]:
        """Packed batches (kwarg `medboard_segments`): the kernel where it applies, else torch's
        SDPA one sequence at a time; with the layer's sliding window (kwarg `sliding_window`),
        counted from each sequence's start."""
        starts = kwargs.pop("medboard_segments", None)
        if starts is None or query.shape[0] != 1:
            raise ModelError("packed attention needs one row and its medboard_segments")
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        window = int(kwargs.pop("sliding_window", None) or 0)
        if applies(module, query, key, value, None, dropout, **kwargs):
            return packed_kernel(query, key, value, starts, float(scale), window), None
        bounds = starts.tolist()
        outs = [
            sdpa_attention_forward(
                module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b],
                window_mask(b - a, window, query.device), dropout=dropout, scaling=scaling,
                **kwargs,
            )[0]
            for a, b in zip(bounds, bounds[1:], strict=False)
        ]  # fmt: skip
        return torch.cat(outs, dim=1), None

    return attention_forward, packed_forward


def window_mask(length: int, window: int, device: Any = "cpu") -> Any:
    """SDPA's mask for one sequence of `length` under a sliding `window` (True: attended): None
    where the window does not cut it (causal attention is SDPA's own then)."""
    import torch

    if not window or length <= window:
        return None
    at = torch.arange(length, device=device)
    return ((at[None, :] <= at[:, None]) & (at[None, :] > at[:, None] - window))[None, None]


def _no_mask(*args: Any, **kwargs: Any) -> None:
    """The mask transformers builds for packed batches: none (the segments say it all)."""
    return None


def packs(model: Any) -> bool:
    """Whether the kernel takes every attention call of `model` on packed batches (shapes it
    fits, no logit soft-capping): where it would not, packing is not worth SDPA per sequence."""
    config = getattr(model.config, "text_config", None) or model.config
    heads = int(config.num_attention_heads)
    size = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    return (
        size % 64 == 0
        and heads % kv_heads == 0
        and not getattr(config, "attn_logit_softcapping", None)
    )


@cache
def register(variant: str = "amx") -> None:
    """torch.ops.medboard.<variant>_causal_attention and _packed_attention, and the kernel among
    transformers' attention implementations (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    name, packed_name = names(variant)
    forward, packed_forward = forwards(variant)  # the operators, before a compiled call
    AttentionInterface.register(name, forward)
    AttentionMaskInterface.register(name, sdpa_mask)  # the masks SDPA gets: none when causal
    AttentionInterface.register(packed_name, packed_forward)
    AttentionMaskInterface.register(packed_name, _no_mask)  # the segments say it all


def _configs(model: Any) -> list[Any]:
    """The model's config and its sub-configs that name an attention implementation."""
    found = {id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None}
    return [c for c in found.values() if getattr(c, "_attn_implementation", None) == "sdpa"]


class KernelAttention:
    """Attention through the kernel of run-key tag `tag` while inside, for a model that uses
    torch's SDPA; on packed batches while `packed` is set."""

    def __init__(self, model: Any, tag: str = AMX_ATTENTION) -> None:
        self.variant = VARIANT_OF_TAG[tag]
        register(self.variant)
        self.names = names(self.variant)
        self.configs = _configs(model)
        self.packed = False

    def __enter__(self) -> "KernelAttention":
        for config in self.configs:
            config._attn_implementation = self.names[1] if self.packed else self.names[0]
        return self

    def __exit__(self, *exc: object) -> None:
        for config in self.configs:
            config._attn_implementation = "sdpa"
