"""Where `medboard eval` spends its time: one run under cProfile, grouped into what matters.

    MEDBOARD_HOME=~/.cache/medboard python bench/profile_eval.py -- \\
        --model ~/.cache/medical-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --dtype bfloat16 --suite open_medical

Everything after `--` is passed to `medboard eval` (an empty run store is used, so nothing is
read from a cache). The groups are the profile's own time (tottime) of: matrix products (torch.mm
and linear), the fused elementwise kernels
torch.compile generates (norms, rotary embeddings, SiLU x up, residual adds), tokenization,
log-softmax and argmax at the answer positions; compilation, and the operators a compiled
graph calls (in a compiled SmolLM2 or Gemma layer: attention, torch's
scaled_dot_product_attention or medboard's AMX kernel, and medboard's gated MLP kernel, with
the gate and up products on AMX, the activation alone otherwise), are reported as cumulative
time, since cProfile sees no callee inside them.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from speed import fresh_medboard_home  # noqa: E402

Key = tuple[str, int, str]
ATTENTION = (
    "operators compiled layers call (attention: SDPA or the AMX kernel; the gated MLP kernel, "
    "with the gate and up products on AMX; cumulative)"
)


def group_of(key: Key) -> str | None:
    """The group a profiled function's own time belongs to (None: the rest)."""
    filename, _, name = key
    if name in ("<built-in method torch.mm>", "<built-in method torch._C._nn.linear>"):
        return "matrix products (torch.mm, linear)"
    if "kernel.kernel" in name:
        return "fused elementwise kernels (torch.compile)"
    if "encode_batch" in name or "'encode' of 'tokenizers" in name:
        return "tokenization"
    if "log_softmax" in name or "'argmax'" in name:
        return "log-softmax and argmax at answer positions"
    return None


def breakdown(stats: pstats.Stats, wall: float) -> list[tuple[str, float]]:
    groups: dict[str, float] = {}
    compile_seconds = 0.0
    for key, (_, _, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        group = group_of(key)
        if group is not None:
            groups[group] = groups.get(group, 0.0) + own
        if key[0].endswith("torch/_dynamo/convert_frame.py") and key[2] == "_compile":
            compile_seconds = max(compile_seconds, cumulative)
        if key[0].endswith("torch/_ops.py") and key[2] == "__call__":
            # cProfile sees no callee inside an operator overload: its kernel time is only in
            # the cumulative time of this wrapper (compiled layers: scaled_dot_product_attention)
            groups[ATTENTION] = groups.get(ATTENTION, 0.0) + cumulative
    rows = sorted(groups.items(), key=lambda item: -item[1])
    rows.append(("torch.compile (cumulative)", compile_seconds))
    rows.append(("everything else", wall - sum(groups.values()) - compile_seconds))
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        own, eval_args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    else:
        own, eval_args = [], argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=15, help="also list the top N functions")
    parser.add_argument("--save", type=Path, default=None, help="write the raw profile here")
    args = parser.parse_args(own)
    work = Path(tempfile.mkdtemp(prefix="medboard-profile-"))
    os.environ["MEDBOARD_HOME"] = str(fresh_medboard_home(work, "home"))
    from medboard.cli import main as medboard_main

    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    try:
        sys.argv = ["medboard", "eval", *eval_args]
        medboard_main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        profile.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profile)
    if args.save:
        stats.dump_stats(str(args.save))
    print("\n| where | seconds | share |\n|---|---|---|")
    for name, seconds in breakdown(stats, wall):
        print(f"| {name} | {seconds:.1f} | {100 * seconds / wall:.0f}% |")
    print(f"| **wall (under the profiler)** | {wall:.1f} | |")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
