"""The least time an exact zero-shot evaluation of a suite can take on this machine.

Any evaluation that reads every prompt token (both tools must, to give the model's numbers)
runs at least each decoder layer's matrix products over those tokens, the attention over them,
and the output projection at the answer positions. This script times exactly that, on the
batches medboard's engine plans for the suite (the same rows and padded widths, or the same
packed rows): for each batch, the first decoder layer's own linear layers on its tokens, the
attention eval runs (medboard's AMX or AVX-512 kernel, or torch's) for the layer's head shapes
(causal, grouped key/value heads, each packed question attending to itself), both times the
number of layers, and the output projection on the batch's answer positions. No norms, activations,
rotary embeddings, tokenization, loading or Python: a floor, not an estimate.

    MEDBOARD_HOME=~/.cache/medboard python bench/floor.py \\
        --model ~/.cache/medical-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --speed-report /tmp/speed-smol.json --out /tmp/floor-smol.json

With a bench/speed.py report of the same model (or --reference-seconds), it prints the largest
speedup over the reference that these kernels allow (reference wall / floor), the largest any
kernel allows (the same products at the machine's measured matmul peak), how close medboard's
measured wall time is to the floor, and the fraction of the measured matmul peak each reaches
(the layers' products over the padded tokens / wall time / peak).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from runners import write_json  # noqa: E402
from speed import OPEN_MEDICAL, matmul_peak, model_directory  # noqa: E402

from medboard.backends.attention import ATTENTION_CHOICES  # noqa: E402


@dataclass(frozen=True)
class Batch:
    rows: int
    width: int  # padded tokens per row
    reads: int  # answer positions read from the batch
    # a packed batch (one row): each question's tokens, one after another
    lengths: tuple[int, ...] = ()


@dataclass(frozen=True)
class LayerShape:
    """What one decoder layer multiplies: its linear weights and its attention heads."""

    weights: tuple[Any, ...]  # the layer's nn.Linear weights (out x in)
    query_heads: int
    kv_heads: int
    head_dim: int
    layers: int
    dtype: Any  # the model's, that attention runs in


def suite_batches(backend: Any, tasks: Sequence[str], limit: int | None) -> list[Batch]:
    """The batches medboard's engine runs for the tasks, zero-shot, task after task."""
    from medboard.backends.packing import packed_length
    from medboard.data.store import DataStore
    from medboard.runner import choice_requests
    from medboard.tasks import REGISTRY

    data = DataStore()
    batches = []
    for name in tasks:
        task = REGISTRY.task(name)
        records = data.task_data(task, allow_mismatch=True).records  # timing only
        samples = [task.to_sample(r) for r in (records[:limit] if limit else records)]
        requests = choice_requests(task, samples, [])
        for plan in backend.plan(requests):
            rows = [row for i in plan for row in backend.rows(requests[i])]
            reads = sum(len(pos) for r in rows for _, pos, _ in r.reads)
            if backend.scoring_pass(rows)[0]:  # packed: one row, padded as eval pads it
                lengths = tuple(len(r.tokens) for r in rows)
                width = packed_length(sum(lengths))
                batches.append(Batch(rows=1, width=width, reads=reads, lengths=lengths))
            else:
                width = max(len(r.tokens) for r in rows)
                batches.append(Batch(rows=len(rows), width=width, reads=reads))
    return batches


def layer_shape(model: Any, float32_products: bool = False) -> LayerShape:
    """The first decoder layer's shapes; with `float32_products` its weights as float32, the
    products medboard runs for bfloat16 models on CPUs without AMX (--bf16-matmul float32)."""
    import torch

    from medboard.backends.kernels import decoder_layers

    layers = decoder_layers(model)
    if not layers:
        raise SystemExit("floor: the model has no repeated decoder layers")
    config = getattr(model.config, "text_config", None) or model.config
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    weights = tuple(m.weight for m in layers[0].modules() if isinstance(m, torch.nn.Linear))
    if float32_products:
        weights = tuple(w.float() for w in weights)
    return LayerShape(
        weights=weights,
        query_heads=heads,
        kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=int(head_dim),
        layers=len(layers),
        dtype=model.dtype,
    )


def _timed(fn: Any, repeats: int) -> float:
    """The fastest of `repeats` calls, in seconds (the first call warms up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def batch_floor(
    batch: Batch, shape: LayerShape, head: Any, repeats: int, kernel: str | None = None
) -> dict[str, float]:
    """Seconds of matrix products, attention and output projection for one batch; with a
    `kernel` (amx, avx512) attention is medboard's kernel wherever eval would run it, else
    torch's."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from medboard.backends.attention import _operator, _packed_operator, applies
    from medboard.backends.packing import pack

    dtype = shape.weights[0].dtype  # the products: the model's, or float32 (see layer_shape)
    tokens = batch.rows * batch.width
    x = {
        w.shape[1]: torch.randn(tokens, w.shape[1], dtype=dtype) for w in shape.weights
    }  # one input per input width (hidden size, MLP width)
    q = torch.randn(batch.rows, shape.query_heads, batch.width, shape.head_dim, dtype=shape.dtype)
    k = torch.randn(batch.rows, shape.kv_heads, batch.width, shape.head_dim, dtype=shape.dtype)
    v = torch.randn_like(k)
    hidden = torch.randn(batch.reads, head.shape[1], dtype=head.dtype)
    gqa = shape.query_heads != shape.kv_heads
    if kernel and applies(None, q, k, v, None, 0.0):  # the engine's own test of a call
        causal, packed = _operator(kernel), _packed_operator(kernel)
    else:
        kernel = None

    def products() -> None:
        for w in shape.weights:
            F.linear(x[w.shape[1]], w)

    if batch.lengths:  # where each packed question starts, and the row's padding
        starts = pack([[0] * n for n in batch.lengths])[2]

    def attention() -> None:
        if kernel and batch.lengths:
            packed(q, k, v, starts, shape.head_dim**-0.5)
        elif kernel:
            causal(q, k, v, shape.head_dim**-0.5)
        else:
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)

    with torch.inference_mode():
        return {
            "matrix_products": shape.layers * _timed(products, repeats),
            "attention": shape.layers * _timed(attention, repeats),
            "output_projection": _timed(lambda: F.linear(hidden, head), repeats),
        }


def floor(
    model: str,
    dtype: str,
    tasks: Sequence[str],
    limit: int | None,
    repeats: int,
    batch_tokens: int | None,
    matmul: str = "auto",
    attention: str = "auto",
) -> dict[str, Any]:
    from medboard.backends.attention import VARIANT_OF_TAG
    from medboard.backends.hf import HFBackend

    backend = HFBackend(
        model, dtype=dtype, batch_tokens=batch_tokens, matmul=matmul, attention=attention
    )
    batches = suite_batches(backend, tasks, limit)
    shape = layer_shape(backend.model, float32_products=backend.matmul == "float32")
    head = backend.model.get_output_embeddings().weight
    head = head.to(shape.weights[0].dtype)  # float32 too when the products are
    kernel = VARIANT_OF_TAG.get(backend.attention or "")
    totals = {"matrix_products": 0.0, "attention": 0.0, "output_projection": 0.0}
    started = time.perf_counter()
    for number, batch in enumerate(batches, 1):
        for part, seconds in batch_floor(batch, shape, head, repeats, kernel).items():
            totals[part] += seconds
        if number % 20 == 0 or number == len(batches):
            print(
                f"  {number}/{len(batches)} batches timed ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return {
        "model": model,
        "dtype": dtype,
        "bf16_matmul": backend.matmul,
        "attention": kernel or "torch",
        "tasks": list(tasks),
        "batches": len(batches),
        "padded_tokens": sum(b.rows * b.width for b in batches),
        # the decoder layers' products over every padded token (what the floor multiplies)
        "product_flops": 2
        * shape.layers
        * sum(w.numel() for w in shape.weights)
        * sum(b.rows * b.width for b in batches),
        "layers": shape.layers,
        "seconds": {k: round(v, 2) for k, v in totals.items()},
        "floor_seconds": round(sum(totals.values()), 2),
    }


def compared(result: dict[str, Any], reference: float | None, medboard: float | None) -> list[str]:
    """Lines that put the floor next to measured wall times."""
    lines = [
        f"floor: {result['floor_seconds']:.1f} s over {result['batches']} batches, "
        f"{result['padded_tokens']:,} padded tokens, {result['layers']} layers: "
        + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in result["seconds"].items())
    ]
    if reference:
        lines.append(
            f"reference {reference:.1f} s: the largest speedup these kernels allow is "
            f"**{reference / result['floor_seconds']:.2f}x** (3x needs {reference / 3:.1f} s)"
        )
    if medboard:
        lines.append(
            f"medboard {medboard:.1f} s: {medboard / result['floor_seconds']:.2f}x the floor "
            f"({medboard - result['floor_seconds']:.1f} s above it)"
        )
    if reference and result.get("product_flops") and result.get("matmul_peak_tflops"):
        # the same products at the machine's measured peak: no kernel of any tool goes below
        at_peak = result["product_flops"] / (result["matmul_peak_tflops"] * 1e12)
        lines.append(
            f"the layers' products alone at the measured peak: {at_peak:.1f} s, so no exact "
            f"evaluation here is more than **{reference / at_peak:.2f}x** the reference "
            f"(3x needs the whole run at {100 * at_peak / (reference / 3):.0f}% of the peak)"
        )
    if result.get("pct_peak"):
        lines.append(
            f"fraction of the measured {result['dtype']} matmul peak "
            f"({result['matmul_peak_tflops']} TFLOP/s; the layers' products over the padded "
            "tokens / wall time / peak): "
            + ", ".join(f"{k} {v:.1f}%" for k, v in result["pct_peak"].items())
        )
    return lines


def peak_fractions(
    result: dict[str, Any], reference: float | None, medboard: float | None
) -> dict[str, float]:
    """Percent of the matmul peak each wall time reaches on the floor's products."""
    peak = result["matmul_peak_tflops"] * 1e12
    walls = {
        "matrix products": result["seconds"]["matrix_products"],
        "floor": result["floor_seconds"],
        "reference": reference,
        "medboard": medboard,
    }
    return {k: round(100 * result["product_flops"] / s / peak, 1) for k, s in walls.items() if s}


def measured_walls(report: Path, model_dir: str) -> tuple[float | None, float | None]:
    """The reference's and medboard's median wall times for the model in a speed.py report."""
    data = json.loads(report.read_text())
    for result in data.get("results", []):
        if result.get("model_dir") == model_dir or result.get("model") == model_dir:
            return result["reference"]["wall_seconds"], result["medboard"]["wall_seconds"]
    raise SystemExit(f"floor: {report} has no result for {model_dir}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="GGUF file or HF dir")
    parser.add_argument("--tasks", default=",".join(OPEN_MEDICAL), help="medboard task names")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--limit", type=int, default=None, help="first N questions per task")
    parser.add_argument("--batch-tokens", type=int, default=None, help="as medboard eval's")
    parser.add_argument(
        "--bf16-matmul",
        default="auto",
        choices=("auto", "native", "float32"),
        help="as medboard eval's",
    )
    parser.add_argument(
        "--attention", default="auto", choices=ATTENTION_CHOICES, help="as medboard eval's"
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per kernel (min)")
    parser.add_argument("--speed-report", type=Path, default=None, help="bench/speed.py JSON")
    parser.add_argument("--reference-seconds", type=float, default=None)
    parser.add_argument("--medboard-seconds", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.speed_report is not None and not args.speed_report.is_file():
        parser.error(f"--speed-report: no such file {args.speed_report}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = floor(
        args.model,
        args.dtype,
        args.tasks,
        args.limit,
        args.repeats,
        args.batch_tokens,
        args.bf16_matmul,
        args.attention,
    )
    result["matmul_peak_tflops"] = round(matmul_peak(args.dtype) / 1e12, 3)
    reference, medboard = args.reference_seconds, args.medboard_seconds
    if args.speed_report is not None:
        ref_wall, mb_wall = measured_walls(args.speed_report, str(model_directory(args.model)))
        reference, medboard = reference or ref_wall, medboard or mb_wall
    result["reference_seconds"], result["medboard_seconds"] = reference, medboard
    result["pct_peak"] = peak_fractions(result, reference, medboard)
    print("\n".join(compared(result, reference, medboard)))
    if args.out is not None:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
