"""bench/floor.py: the batches it times are the engine's, its shapes the model's, its sums right."""

import json
from pathlib import Path

import pytest

from tests.bench_scripts import load_bench as load
from tests.conftest import import_fixture_tasks


def test_batches_and_shapes_are_the_engines(tiny_model: Path, medboard_home: Path) -> None:
    from medboard.backends.hf import HFBackend

    floor = load("floor")
    import_fixture_tasks(medboard_home)
    backend = HFBackend(str(tiny_model), batch_tokens=64)
    backend.load()
    batches = floor.suite_batches(backend, ["medqa_4options", "pubmedqa"], limit=3)
    # the engine's own plan and rows for the same questions
    from medboard.data.store import DataStore
    from medboard.runner import choice_requests
    from medboard.tasks import REGISTRY

    planned, rows = 0, []
    for name in ("medqa_4options", "pubmedqa"):
        task = REGISTRY.task(name)
        records = DataStore().task_data(task, allow_mismatch=True).records[:3]
        samples = [task.to_sample(r) for r in records]
        requests = choice_requests(task, samples, [])
        planned += len(backend.plan(requests))
        rows += [row for r in requests for row in backend.rows(r)]
    assert len(batches) == planned >= 2  # 64 padded tokens cannot hold 3 questions
    assert sum(b.rows for b in batches) == len(rows)
    assert sum(b.reads for b in batches) == sum(len(p) for r in rows for _, p, _ in r.reads)
    assert max(b.width for b in batches) == max(len(r.tokens) for r in rows)
    shape = floor.layer_shape(backend.model)
    assert (shape.query_heads, shape.kv_heads, shape.head_dim, shape.layers) == (4, 2, 8, 2)
    assert len(shape.weights) == 7  # q, k, v, o, gate, up, down
    import torch

    assert shape.dtype == torch.float32 and shape.weights[0].dtype == torch.float32
    # bfloat16 on a CPU without AMX: medboard multiplies in float32, and so does the floor
    bf16 = HFBackend(str(tiny_model), dtype="bfloat16", matmul="float32").model
    widened = floor.layer_shape(bf16, float32_products=True)
    assert widened.dtype == torch.bfloat16 and widened.weights[0].dtype == torch.float32
    assert floor.layer_shape(bf16).weights[0].dtype == torch.bfloat16


def test_batch_floor_counts_every_layer(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    floor = load("floor")
    monkeypatch.setattr(floor, "_timed", lambda fn, repeats: (fn(), 1.0)[1])
    shape = floor.LayerShape(
        weights=(torch.zeros(16, 32), torch.zeros(32, 16)),
        query_heads=4,
        kv_heads=2,
        head_dim=8,
        layers=3,
        dtype=torch.float32,
    )
    seconds = floor.batch_floor(floor.Batch(2, 5, 3), shape, torch.zeros(50, 32), 1)
    assert seconds == {"matrix_products": 3.0, "attention": 3.0, "output_projection": 1.0}


def test_comparison_with_measured_walls(tmp_path: Path) -> None:
    floor = load("floor")
    result = {
        "floor_seconds": 120.0,
        "batches": 10,
        "padded_tokens": 1000,
        "layers": 30,
        "seconds": {"matrix_products": 80.0, "attention": 40.0},
    }
    text = "\n".join(floor.compared(result, reference=300.0, medboard=180.0))
    assert "**2.50x**" in text and "3x needs 100.0 s" in text
    assert "1.50x the floor (60.0 s above it)" in text
    # the fraction of the machine's matmul peak each wall time reaches on the same products
    result |= {"product_flops": 6e13, "matmul_peak_tflops": 1.0, "dtype": "bfloat16"}
    result["pct_peak"] = floor.peak_fractions(result, 300.0, None)
    assert result["pct_peak"] == {"matrix products": 75.0, "floor": 50.0, "reference": 20.0}
    text = "\n".join(floor.compared(result, reference=300.0, medboard=None))
    assert "bfloat16 matmul peak (1.0 TFLOP/s" in text and "reference 20.0%" in text
    # 6e13 flops at 1 TFLOP/s: 60 s whatever the kernels, 5x the reference's 300 s at most
    assert "products alone at the measured peak: 60.0 s" in text and "**5.00x**" in text
    assert "3x needs the whole run at 60% of the peak" in text
    report = tmp_path / "speed.json"
    report.write_text(
        json.dumps(
            {
                "results": [
                    {
                        "model_dir": "/m/dir",
                        "reference": {"wall_seconds": 300.0},
                        "medboard": {"wall_seconds": 180.0},
                    }
                ]
            }
        )
    )
    assert floor.measured_walls(report, "/m/dir") == (300.0, 180.0)
    with pytest.raises(SystemExit, match="no result for /other"):
        floor.measured_walls(report, "/other")
    with pytest.raises(SystemExit):
        floor.parse_args(["--model", "m", "--speed-report", str(tmp_path / "missing.json")])


def test_floor_times_the_attention_medboard_runs(
    tmp_path: Path, medboard_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the AMX kernel in use (bfloat16, heads of 64), the floor times it, not torch's."""
    import torch

    from medboard.backends.hf import HFBackend
    from medboard.backends.probe import cpu_has_amx
    from tests.conftest import build_tiny_llama

    if not cpu_has_amx():
        pytest.skip("the kernel runs on AMX tiles")
    floor = load("floor")
    import_fixture_tasks(medboard_home)
    model = str(build_tiny_llama(tmp_path / "wide", hidden=256))
    kernels = []
    real = floor.batch_floor
    monkeypatch.setattr(floor, "batch_floor", lambda *a: kernels.append(a[-1]) or real(*a))
    amx = floor.floor(model, "bfloat16", ["medqa_4options"], 2, 1, None, attention="amx")
    assert amx["attention"] == "amx" and kernels and all(kernels)
    kernels.clear()
    plain = floor.floor(model, "bfloat16", ["medqa_4options"], 2, 1, None, attention="torch")
    assert plain["attention"] == "torch" and kernels and not any(kernels)
    shape = floor.layer_shape(HFBackend(model, dtype="bfloat16").model)
    head = torch.zeros(50, 256, dtype=torch.bfloat16)
    with torch.profiler.profile() as profile:
        real(floor.Batch(2, 40, 2), shape, head, 1, "amx")
    assert any("amx_causal_attention" in e.name for e in profile.events())
    # eval packs these questions (one row, padded to a multiple of 256), and so does the floor
    from medboard.backends.packing import PACK_MULTIPLE

    assert amx["padded_tokens"] % PACK_MULTIPLE == 0
    with torch.profiler.profile() as profile:
        real(floor.Batch(1, PACK_MULTIPLE, 2, lengths=(30, 50)), shape, head, 1, "amx")
    assert any("amx_packed_attention" in e.name for e in profile.events())
