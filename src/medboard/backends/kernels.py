"""How bfloat16 matrix products run: natively, or as float32 products of bfloat16 values.

A bfloat16 GEMM multiplies bfloat16 inputs, accumulates in float32 and rounds the result to
bfloat16. A float32 GEMM on the same (exactly representable) values, rounded the same way, gives
the same numbers up to summation order, the same freedom a change of batch shape already takes.
Some CPUs run native bfloat16 GEMMs slower than float32 ones (an AVX2 EPYC: 57 against 92
GFLOP/s per core), most run them faster (AVX-512 BF16, AMX): `auto` takes whichever this
machine measurably runs faster (probe.fastest), keeping the model in bfloat16 either way.
"""

import os
import platform
import shutil
import sys
import types
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

from medboard.backends.probe import fastest
from medboard.backends.verdicts import remembered
from medboard.errors import ModelError

MatmulMode = Literal["native", "float32"]
MATMUL_CHOICES = ("auto", "native", "float32")


# The probe's product: a batch of tokens through a projection of a small model's size.
PROBE_SHAPE = (2048, 1024, 2048)  # tokens, inputs, outputs


def _matmul_candidates() -> dict[str, Callable[[], object]]:
    """The two ways of a bfloat16 product, as a model's linear layers run them."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    tokens, inputs, outputs = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((tokens, inputs), generator=generator).bfloat16()
    weight = torch.randn((outputs, inputs), generator=generator).bfloat16()
    return {
        "native": lambda: F.linear(x, weight),
        "float32": lambda: F.linear(x.float(), weight.float()).to(torch.bfloat16),
    }


def matmul_mode(dtype: str, device: str, requested: str = "auto") -> MatmulMode | None:
    """The bf16 matmul path for a run: None when the dtype is not bfloat16. `auto`: native on
    GPUs; on the CPU the faster of the two on this machine (timed once, then remembered)."""
    if requested not in MATMUL_CHOICES:
        raise ModelError(
            f"unknown bf16 matmul mode '{requested}' (choose from {', '.join(MATMUL_CHOICES)})"
        )
    if dtype != "bfloat16":
        return None
    if requested != "auto":
        return requested  # type: ignore[return-value]
    if device != "cpu":
        return "native"
    return fastest("bf16-matmul", _matmul_candidates)  # type: ignore[return-value]


def use_float32_matmul(model: Any) -> int:
    """Compute every bfloat16 nn.Linear of `model` in float32; returns how many were changed.

    Projections that read the same input (query, key and value; gate and up) share one
    conversion of it to float32 (in eager mode; in compiled layers the compiler has it).
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
            # Compiled, the shared conversion is left to the compiler: a tensor kept between
            # calls would be guarded on and recompile the layer at every batch shape.
            xf = x.float() if torch.compiler.is_compiling() else as_float(x)
            return F.linear(xf, self.weight.float(), bias).to(x.dtype)

        module.forward = types.MethodType(forward, module)
        changed += 1
    return changed


# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


@cache
def _glibc() -> Any:
    """The C library when it is glibc (it has mallopt and malloc_trim), else None."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only)
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


@cache
def keep_freed_memory() -> bool:
    """Have glibc serve tensor-sized allocations from its heap and keep what is freed.

    By default glibc gives allocations above a (moving) threshold their own mmap and returns
    them on free, so every activation of a forward pass faults in fresh zeroed pages. Measured
    on SmolLM2-135M, 4,096 tokens per batch on 2 cores: 0.93 -> 1.26 TFLOP/s compiled. The cost
    is that the process keeps its peak heap until it exits or calls release_freed_memory().
    Returns whether it applied.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    )


def release_freed_memory() -> bool:
    """Return the heap's free memory to the system (glibc's malloc_trim), e.g. between the jobs
    of a long-lived worker, which would otherwise keep its largest job's peak for good.
    Returns whether memory was released."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


COMPILE_CHOICES = ("auto", "on", "off")


def compile_wanted(dtype: str, device: str, requested: str = "auto") -> bool:
    """Whether scoring runs the decoder layers through torch.compile.

    auto: for bfloat16 and float16 on the CPU, where eager elementwise work (norms, rotary
    embeddings, activations) took more time than the matrix products (measured on SmolLM2-135M:
    1.3 s of elementwise against 1.0 s of GEMMs for 8,192 tokens), when there is a C++ compiler
    to build the kernels with (without one: eager layers). float32 stays eager, the path the
    parity check compares with the reference. on: compiled, or an error naming what is missing.
    """
    if requested not in COMPILE_CHOICES:
        raise ModelError(
            f"unknown compile mode '{requested}' (choose from {', '.join(COMPILE_CHOICES)})"
        )
    wanted = requested == "on" if requested != "auto" else (device == "cpu" and dtype != "float32")
    if not wanted or device != "cpu" or cpp_compiler() is not None:
        return wanted
    if requested == "on":
        raise ModelError(
            "--compile on needs a C++ compiler for the kernels torch.compile writes for the CPU "
            "($CXX, else g++), and none works here: install g++ or pass --compile off"
        )
    return False


def cpp_compiler() -> str | None:
    """The C++ compiler torch.compile builds CPU kernels with ($CXX, else g++), or None when
    there is none.

    Once inductor is imported, its own search (its `cpp.cxx` setting, each candidate run with
    --version). Before, the default that search will start from, found on the PATH: importing
    inductor takes 2-3 s, which a process that decides not to compile, or finds its runs
    finished, should not spend. (TORCH_INDUCTOR_INSTALL_GXX, which lets inductor install g++
    itself, is left to inductor's search.)
    """
    if "torch._inductor.config" not in sys.modules and not os.environ.get(
        "TORCH_INDUCTOR_INSTALL_GXX"
    ):
        return shutil.which(os.environ.get("CXX", "g++"))
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        return get_cpp_compiler()
    except InvalidCxxCompiler:
        return None


def decoder_layers(model: Any) -> list[Any]:
    """The repeated blocks of a causal LM (the longest ModuleList), or [] if none is found."""
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


# tanh as 2 / (1 + exp(-2x)) - 1 in the C++ the compiler writes for the CPU, instead of the
# vectorized library tanh: Gemma's GELU (tanh approximation) x up kernel 164 -> 88 ms per
# 4,096-token forward pass. The same function to float32 rounding (the compiled layers'
# outputs stay as close to a float32 model as without it: 2.85% against 2.86% relative).
# cpp_wrapper: the code that calls a compiled layer's kernels in C++ instead of Python, the same
# kernels (bit-identical outputs) with less per-call overhead: 3-5% off a SmolLM2 forward pass.
# Compiling a new graph takes longer (22.6 against 8.8 s for SmolLM2's layer), once per machine
# with torch's compile cache.
INDUCTOR_OPTIONS = {"cpp.use_decompose_tanh": True, "cpp_wrapper": True}

# Which compiled arithmetic a run used, recorded in its run key (None: eager layers). Compiled
# kernels round bfloat16 differently from eager ones, so a change to what the compiler is asked
# for (INDUCTOR_OPTIONS, what CompiledLayers compiles) can move answers at near-ties: bump this
# tag with such a change, so that stored runs are not taken for runs of the new arithmetic.
# 4: Python floats compiled in as constants in Llama-style layers (CompiledLayers; SmolLM2-135M:
# the same log-likelihoods bit for bit)
# 3: the last layer past its attention only at the read positions (last_layer.py: a product
# over fewer rows can round differently; 1 of 860 questions moved, by 0.06, no answer changed)
# 2: decomposed tanh (1: library tanh, no tag in keys)
COMPILED_ARITHMETIC = "inductor-4"
# Every model's decoder layers share transformers' layer-call code, and dynamo keeps at most
# `recompile_limit` graphs per code (8 by default) before it runs the rest eager, silently and
# with eager rounding: a worker that scores several models, each with packed and padded
# batches, needs more.
RECOMPILE_LIMIT = 64
ISA_VERDICTS = "medboard-verdicts.json"  # in inductor's cache folder: see trust_checked_vec_isa


def trust_checked_vec_isa() -> bool:
    """Spare inductor its per-process check of the CPU's vector instruction sets once every one of
    them has passed it on this machine, with this torch and this C++ compiler; returns whether it
    is spared.

    Before it writes C++ for the CPU, inductor checks each set the CPU reports (AVX2, AVX-512,
    AMX tiles) by compiling a test program and loading it in a child Python, in every process:
    0.9-1.0 s of each `medboard eval` on the AVX2 EPYC. When all passed, inductor's
    `cpp.vec_isa_ok` tells later processes they pass; inductor then picks the same set, and
    writes the same code. When one failed, inductor goes on checking. The setting is part of
    inductor's cache keys, so it is set in the first process too, once its check has passed.
    The answer is kept beside inductor's cache (TORCHINDUCTOR_CACHE_DIR, by default
    /tmp/torchinductor_<user>), in ISA_VERDICTS: it is about inductor on this machine, so every
    medboard home shares it as they share the compiled code, and clearing that cache asks again.
    """
    import torch
    from torch._inductor import config

    if config.cpp.vec_isa_ok is not None or platform.machine() not in ("x86_64", "AMD64"):
        return False  # the user decided (TORCHINDUCTOR_VEC_ISA_OK), or not a CPU known here
    from torch._inductor import cpu_vec_isa
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    reported = set(cpu_vec_isa.x86_isa_checker())
    wanted = [
        isa
        for isa in cpu_vec_isa.supported_vec_isa_list
        if all(flag in reported for flag in str(isa).split())
    ]
    compiler = shutil.which(cpp_compiler() or "")
    if not wanted or compiler is None:
        return False
    binary = Path(compiler).resolve()
    stat = binary.stat()
    depends = {
        "torch": torch.__version__,
        "sets": [str(isa) for isa in wanted],
        "compiler": f"{binary}:{stat.st_size}:{stat.st_mtime_ns}",
    }
    store = Path(cache_dir()) / ISA_VERDICTS
    if not remembered("vec-isa", depends, lambda: all(bool(isa) for isa in wanted), store):
        return False
    config.cpp.vec_isa_ok = True
    return True


QUERY_KEY_NORMS = ("q_norm", "k_norm")  # Gemma-3, Qwen3
# The norms around the feed-forward block: Gemma 2 and 3 (last_layer splits layers by them too).
FEED_FORWARD_NORMS = ("pre_feedforward_layernorm", "post_feedforward_layernorm")


def _has_any(model: Any, names: tuple[str, ...]) -> bool:
    return any(hasattr(m, name) for m in model.modules() for name in names)


def normalizes_queries_or_keys(model: Any) -> bool:
    """Whether `model`'s attention normalizes queries or keys (q_norm, k_norm: Gemma-3, Qwen3)."""
    return _has_any(model, QUERY_KEY_NORMS)


def has_extra_norms(model: Any) -> bool:
    """Whether `model`'s decoder layers have more norms than Llama's two: query/key norms, or
    norms around the feed-forward block (Gemma 2 and 3)."""
    return _has_any(model, QUERY_KEY_NORMS + FEED_FORWARD_NORMS)


def rotate_half(x: Any) -> Any:
    """transformers' rotate_half, cat((-x2, x1), -1) of the two halves x1, x2 of the last
    dimension, written as one indexing expression (a flip of the halves, times -1 and 1).

    The same values (a sign change is exact), but the compiler fuses it into the rotary
    embedding's multiply-add, where the concatenation made it write both halves to a buffer
    first: SmolLM2-135M scores 4.8% faster, with bit-identical log-likelihoods (see
    rotary_modules for where fusing would change the rounding).
    """
    import torch

    half = x.shape[-1] // 2
    sign = torch.tensor([-1.0, 1.0], dtype=x.dtype, device=x.device).view(2, 1)
    return (x.unflatten(-1, (2, half)).flip(-2) * sign).flatten(-2)


def rotary_modules(model: Any) -> list[types.ModuleType]:
    """The modeling modules of `model` whose rotate_half computes what `rotate_half` does
    (checked on a small input), whose global the compiled layers may read instead.

    None for a model that normalizes queries or keys before the rotary embedding (q_norm,
    k_norm: Gemma-3, Qwen3): fused, the norm's output is no longer rounded to bfloat16 before
    the rotation, which moved 22 of 272 professional-medicine answers on Gemma-3-270M (+2.6
    points against the reference, past the 1-point band).
    """
    import torch

    if normalizes_queries_or_keys(model):
        return []
    x = torch.randn((1, 2, 3, 8), generator=torch.Generator().manual_seed(0))
    found = {}
    for module in model.modules():
        source = sys.modules.get(type(module).__module__)
        own = getattr(source, "rotate_half", None)
        if source is None or not isinstance(own, types.FunctionType) or own is rotate_half:
            continue
        try:
            same = torch.equal(own(x), rotate_half(x))
        except Exception:  # noqa: BLE001 (some other function of that name)
            same = False
        if same:
            found[source.__name__] = source
    return list(found.values())


class CompiledLayers:
    """torch.compile of each decoder layer's forward, switched on only while scoring.

    One compiled graph with dynamic shapes serves every layer of the same kind and every batch
    shape. Generation keeps the eager layers: its KV cache would make the compiler specialise
    on every layer's cache state. While scoring, the modeling modules' rotate_half is the one
    above (the compiler fuses it; same values).

    Also while scoring, for Llama-style layers, dynamo compiles a layer's Python floats (norm
    epsilons, attention scaling: constants of the model) in as constants. By default it traces
    them as inputs, finds it cannot make some of them tensors, and traces the whole layer again:
    on SmolLM2-135M (AVX2 EPYC, torch's compile cache warm) 13.0 -> 6.0 s of compiling per run,
    the same log-likelihoods bit for bit. Layers with more norms (has_extra_norms) keep the
    default: on Gemma-3-270M, with its epsilons as constants the compiler's kernels for the norms
    and residual adds around the feed-forward block pass other intermediates between them, and
    8 of 144 answers moved.
    """

    def __init__(self, model: Any) -> None:
        import torch

        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
        trust_checked_vec_isa()
        self.specialize_float = not has_extra_norms(model)
        self._config: Any = None
        self.layers = decoder_layers(model)
        self.compiled = [
            torch.compile(layer.forward, dynamic=True, options=INDUCTOR_OPTIONS)
            for layer in self.layers
        ]
        self.rotary = [(m, m.rotate_half) for m in rotary_modules(model)]

    def __enter__(self) -> "CompiledLayers":
        import torch

        self._config = torch._dynamo.config.patch(specialize_float=self.specialize_float)
        self._config.__enter__()
        for layer, compiled in zip(self.layers, self.compiled, strict=True):
            layer.forward = compiled
        for module, _ in self.rotary:
            module.rotate_half = rotate_half  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        for layer in self.layers:
            del layer.forward  # back to the class's forward
        for module, own in self.rotary:
            module.rotate_half = own  # type: ignore[attr-defined]
        self._config.__exit__(*exc)
