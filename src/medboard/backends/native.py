"""medboard's C kernels (attention_amx.c, attention_avx512.c, gated_act.c, gated_mlp_amx.c):
built with the system's C compiler on first use into the machine cache (paths.machine_cache,
shared by every medboard home on the machine), once per source, flags and compiler, then loaded
with ctypes."""

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from medboard.errors import ModelError
from medboard.paths import machine_cache

HERE = Path(__file__).parent
# Headers the kernels include: part of every kernel's build identity.
HEADERS = ("vecmath.h", "amx.h", "attention_core.h")
AVX512 = ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16")
AMX = (*AVX512, "-mamx-tile", "-mamx-bf16", "-mprfchw")


def compiler() -> str:
    """The C compiler: $CC, else cc or gcc on the PATH."""
    named = os.environ.get("CC")
    found = shutil.which(named) if named else shutil.which("cc") or shutil.which("gcc")
    if not found:
        wanted = f"CC={named}" if named else "a C compiler (cc or gcc)"
        raise ModelError(f"no {wanted} to build medboard's kernels")
    return found


def build(source: str, flags: tuple[str, ...]) -> ctypes.CDLL:
    """HERE/source compiled with `flags` (plus -O3 -shared -fPIC -fopenmp) and loaded."""
    cc = compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    path = HERE / source
    flags = ("-O3", "-shared", "-fPIC", "-fopenmp", *flags)
    digest = hashlib.sha256(path.read_bytes())
    for header in HEADERS:
        digest.update((HERE / header).read_bytes())
    digest.update(" ".join(flags).encode() + version.encode())
    target = machine_cache() / "kernels" / f"{path.stem}-{digest.hexdigest()[:16]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        built = subprocess.run(
            [cc, *flags, f"-I{HERE}", "-o", str(partial), str(path)],
            capture_output=True,
            text=True,
        )
        if built.returncode != 0:
            partial.unlink(missing_ok=True)
            raise ModelError(f"building {source} failed: {built.stderr.strip()[-500:]}")
        os.replace(partial, target)  # whole or absent, also with two processes building
    return ctypes.CDLL(str(target))


def build_amx(source: str) -> ctypes.CDLL:
    """An AMX kernel (amx.h) built and loaded, with this process granted the tile state."""
    lib = build(source, AMX)
    if lib.mb_amx_init() != 0:
        raise ModelError("the kernel refused AMX tiles to this process (arch_prctl)")
    return lib


def kernel_mode(
    option: str,
    requested: str,
    choices: tuple[str, str, str],
    usable: bool,
    requirement: str,
    load: Callable[[], object],
    tag: str,
    faster: Callable[[], bool] = lambda: True,
) -> str | None:
    """What a kernel's option (choices: auto, torch's, medboard's) resolves to: `tag` when the
    kernel runs, None when torch's code does. `auto` takes the kernel wherever it is `usable`,
    builds, and is `faster` than torch's code on this machine (probe.fastest), and says on
    stderr when the build fails; asking for it where it cannot run or build is an error."""
    if requested not in choices:
        raise ModelError(f"unknown {option} '{requested}' (choose from {', '.join(choices)})")
    auto, theirs, mine = choices
    if requested == theirs:
        return None
    if requested == mine and not usable:
        raise ModelError(f"--{option} {mine} needs {requirement}")
    if not usable:
        return None
    try:
        load()
    except ModelError as exc:
        if requested == mine:
            raise
        print(f"medboard: torch's {option} instead of medboard's kernel: {exc}", file=sys.stderr)
        return None
    return tag if requested == mine or faster() else None
