"""What this machine is, and what it computes fastest, measured once.

The automatic settings that depend on the CPU are not told by one CPU flag. bfloat16 products
run natively 4.5x faster than as float32 products of bfloat16 values on an AMD EPYC with
AVX-512 BF16 and no AMX (0.985 against 0.219 TFLOP/s), several times faster with AMX, and 1.6x
slower on an EPYC with AVX2 only (57 against 92 GFLOP/s per core); whether one of medboard's
kernels beats torch's code is a measurement too. So an `auto` setting times its candidates on a
small workload of a model's shape the first time it is asked (well under a second), and the
answer is kept in the verdicts file (verdicts.remembered_choice) under a digest of what decides
it: the CPU (model name and flags), the threads torch may use, torch's version, the variables
that steer torch's kernels, and medboard's backend code. Reading a kept answer imports nothing.
"""

import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from medboard.backends.verdicts import backend_code, remembered_choice

Candidates = Mapping[str, Callable[[], object]]
REPEATS = 5
# Variables that change which kernels torch runs: oneDNN's and ATen's instruction-set caps (a
# way to run this machine as a smaller one), and the thread count.
STEERING = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")


@cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (Linux), {} where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where it cannot be read."""
    flags = _cpuinfo().get("flags")
    return None if flags is None else frozenset(flags.split())


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX bfloat16 tiles (Linux; elsewhere assume it has)."""
    flags = cpu_flags()
    return flags is None or "amx_bf16" in flags


AVX512_BF16_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512_bf16"})


def cpu_has_avx512_bf16() -> bool:
    """Whether the CPU has what medboard's AVX-512 kernels use (VDPBF16PS and the AVX-512
    foundation, byte-word and vector-length sets; Linux: False where cpuinfo cannot be read)."""
    return (cpu_flags() or frozenset()) >= AVX512_BF16_FLAGS


def machine() -> dict[str, Any]:
    """What a timing on this machine depends on, read without importing torch."""
    try:
        torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpuinfo().get("model name", platform.processor()),
        "flags": sorted(cpu_flags() or ()),
        "machine": platform.machine(),
        "cpus": cpus,
        "torch": torch,
        "steering": {name: os.environ.get(name) for name in STEERING},
        "medboard_backends": backend_code(),
    }


def timings(candidates: Candidates, repeats: int = REPEATS) -> dict[str, float]:
    """The best of `repeats` timed calls of each candidate, in seconds, after one untimed call
    each (it may compile or allocate). The calls alternate between the candidates, so that a
    busy moment of the machine falls on all of them."""
    best = {name: float("inf") for name in candidates}
    for call in candidates.values():
        call()
    for _ in range(repeats):
        for name, call in candidates.items():
            started = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def fastest_of(seconds: Mapping[str, float]) -> str:
    """The candidate with the least time; on a tie, the first one listed."""
    return min(seconds, key=lambda name: seconds[name])


def fastest(
    question: str, candidates: Callable[[], Candidates], depends: Mapping[str, Any] | None = None
) -> str:
    """The name of the fastest of `candidates()` (built only when they are timed) on this
    machine: the kept answer, or timed now and kept."""
    keys = {**machine(), **(depends or {})}
    return remembered_choice(question, keys, lambda: fastest_of(timings(candidates())))
