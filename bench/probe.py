"""What medboard's `auto` settings choose on this machine, with the timings behind each choice.

    python bench/probe.py [--emulate] [--out probe.json]

Times every probe's candidates afresh (medboard.backends.probe: nothing is read from or kept in
a verdicts file) and prints, per probe, each candidate's best time and the one `auto` takes.

With --emulate, the bfloat16 product probe runs again in child processes with torch's kernels
capped to smaller instruction sets (oneDNN's ONEDNN_MAX_CPU_ISA, ATen's ATEN_CPU_CAPABILITY):
AVX-512 with BF16 but no AMX (an AMD EPYC Zen 4/5, an Intel CPU without AMX), AVX-512 without
BF16, AVX2 only. So a machine with AMX also shows what the probe picks on those kinds. The caps
steer torch only: medboard's own kernels follow the CPU's flags; on the first kind the AVX-512
attention kernel (the one `auto` takes without AMX tiles) is timed again against torch's SDPA
with oneDNN so capped, which is what that probe compares on such a CPU.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Each emulated kind: oneDNN's cap and ATen's (torch's own vectorized code).
EMULATED = {
    "avx512-bf16-no-amx": {
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16",
        "ATEN_CPU_CAPABILITY": "avx512",
    },
    "avx512-no-bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512"},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def probes(only_matmul: bool, avx512_attention: bool = False) -> dict[str, Any]:
    """Each probe's candidates, timed now: {probe: {"seconds": {...}, "choice": name}}."""
    from medboard.backends import activation, attention, kernels
    from medboard.backends.probe import cpu_flags, cpu_has_amx, fastest_of, timings

    candidates = {"bf16-matmul": kernels._matmul_candidates}
    if avx512_attention:
        candidates["avx512-attention"] = lambda: attention._candidates("avx512")
    if not only_matmul:
        if "avx512_bf16" in (cpu_flags() or ()):
            candidates["gated-activation (eager layers)"] = lambda: (
                activation._activation_candidates(False)
            )
            candidates["gated-activation (compiled layers)"] = lambda: (
                activation._activation_candidates(True)
            )
            candidates["avx512-attention"] = lambda: attention._candidates("avx512")
        if cpu_has_amx():
            candidates["amx-attention"] = attention._candidates
            candidates["fused-mlp"] = activation._mlp_candidates
    report = {}
    for name, make in candidates.items():
        seconds = timings(make())
        report[name] = {"seconds": seconds, "choice": fastest_of(seconds)}
    return report


def render(title: str, report: dict[str, Any]) -> str:
    lines = [title]
    for name, found in report.items():
        times = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in found["seconds"].items())
        lines.append(f"  {name}: {times} -> {found['choice']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emulate", action="store_true", help="also on capped instruction sets")
    parser.add_argument("--out", type=Path, help="write the report as JSON")
    parser.add_argument("--only-matmul", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--avx512-attention", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    from medboard.backends.probe import cpu_flags, machine

    here = machine()
    report: dict[str, Any] = {
        "cpu": here["cpu"],
        "isa_flags": [f for f in ISA_FLAGS if f in (cpu_flags() or ())],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steering": {k: v for k, v in here["steering"].items() if v},
        "probes": probes(args.only_matmul, args.avx512_attention),
    }
    if args.json:  # a child of --emulate
        print(json.dumps(report))
        return 0
    title = f"{report['cpu']} ({' '.join(report['isa_flags'])}), {report['threads']} threads"
    print(render(title, report["probes"]), flush=True)
    if args.emulate:
        report["emulated"] = {}
        for kind, caps in EMULATED.items():
            extra = ["--avx512-attention"] if kind == "avx512-bf16-no-amx" else []
            child = subprocess.run(
                [sys.executable, __file__, "--only-matmul", "--json", *extra],
                env={**os.environ, **caps},
                capture_output=True,
                text=True,
                check=True,
            )
            found = json.loads(child.stdout.strip().splitlines()[-1])
            report["emulated"][kind] = {"caps": caps, "probes": found["probes"]}
            caps_text = " ".join(f"{k}={v}" for k, v in caps.items())
            print(render(f"emulated {kind} ({caps_text})", found["probes"]), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
