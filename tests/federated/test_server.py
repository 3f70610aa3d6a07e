"""The ServerApp and the communication counter, with the ClientApp run in-process (no Ray)."""

import json
from pathlib import Path

from medboard.federated.comm import REPORT_FILE
from medboard.federated.config import BYTES_PER_GB, app_run_config
from medboard.federated.integrity import run_hashes
from medboard.federated.server_app import ADAPTER_DIR, run_server
from tests.federated.helpers import FakeGrid

# The tiny Llama with LoRA r=8 on q_proj (32->32) and v_proj (32->16), 2 layers:
# 2 * (8*(32+32) + 8*(32+16)) = 1792 float32 values per adapter.
TENSOR_BYTES = 1792 * 4
KEY = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
NPY_HEADER = 128  # numpy .npy v1 header of each serialized array
WIRE_BYTES = TENSOR_BYTES + 8 * (NPY_HEADER + len(KEY))  # 8 tensors, 8 keys of equal length


def _run(fl_setup, tmp_path: Path, static: dict | None = None, **changes) -> tuple[dict, FakeGrid]:
    app = fl_setup.app(tmp_path / "app", tmp_path / "out", static, **changes)
    config = app_run_config(app)
    grid = FakeGrid(config, fl_setup.static()["num-clients"])
    return run_server(grid, config), grid


def test_bytes_are_the_lora_tensors_times_the_messages(fl_setup, tmp_path: Path) -> None:
    state, grid = _run(fl_setup, tmp_path)
    assert state["status"] == "finished", state["reason"]
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert report["status"] == "finished" and len(report["rounds"]) == 3
    for item in report["rounds"]:
        for phase, ups in (("train", 4), ("evaluate", 0)):
            assert item[phase]["down"] == {
                "messages": 4,
                "bytes": 4 * WIRE_BYTES,
                "tensor_bytes": 4 * TENSOR_BYTES,
            }
            assert item[phase]["up"]["bytes"] == ups * WIRE_BYTES
            assert item[phase]["up"]["tensor_bytes"] == ups * TENSOR_BYTES
    array_messages = 3 * (4 + 4 + 4)  # train down, train up, evaluate down
    sent = [m for m in grid.sent if m.metadata.message_type in ("train", "evaluate")]
    assert len(sent) == 24
    total = report["total"]
    assert total["tensor_bytes"] == array_messages * TENSOR_BYTES
    assert total["bytes"] == array_messages * WIRE_BYTES == state["comm"]["bytes"]
    assert total["gb"] == total["bytes"] / BYTES_PER_GB
    losses = [r["eval_loss"] for r in state["rounds"]]
    assert losses[0] > losses[1] > losses[2]
    assert (tmp_path / "out" / ADAPTER_DIR / "adapter_model.safetensors").is_file()
    # what fl submit's tamper check compares with (federated.integrity)
    assert state["hashes"] == run_hashes(tmp_path / "out" / REPORT_FILE, Path(state["adapter"]))


def test_budget_stops_the_run_before_sending(fl_setup, tmp_path: Path) -> None:
    round_one = 3 * 4 * WIRE_BYTES
    budget_gb = (round_one + WIRE_BYTES) / BYTES_PER_GB  # round 2's training does not fit
    state, grid = _run(fl_setup, tmp_path, fl_setup.static(**{"comm-budget-gb": budget_gb}))
    assert state["status"] == "failed"
    reason = state["reason"]
    assert reason.startswith("communication budget exceeded: round 2 train would send")
    assert "stopped before sending" in reason and "\n" not in reason
    trains = [m for m in grid.sent if m.metadata.message_type == "train"]
    assert len(trains) == 4  # round 1 only: round 2's messages were never sent
    report = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert report["status"] == "stopped" and report["reason"] == reason
    assert report["total"]["bytes"] == round_one <= report["budget_bytes"]
    assert not (tmp_path / "out" / ADAPTER_DIR).exists()


def test_same_config_same_adapter_and_same_sites(fl_setup, tmp_path: Path) -> None:
    changes = {"strategy.fraction-train": 0.5, "strategy.fraction-evaluate": 0.0}
    first, grid_a = _run(fl_setup, tmp_path / "a", **changes)
    second, grid_b = _run(fl_setup, tmp_path / "b", **changes)
    assert first["status"] == second["status"] == "finished"

    def sites(grid: FakeGrid) -> list[int]:
        trains = [m for m in grid.sent if m.metadata.message_type == "train"]
        return [grid.contexts[m.metadata.dst_node_id].node_config["partition-id"] for m in trains]

    assert len(sites(grid_a)) == 3 * 2 and sites(grid_a) == sites(grid_b)
    adapter = "adapter/adapter_model.safetensors"
    assert (tmp_path / "a/out" / adapter).read_bytes() == (
        tmp_path / "b/out" / adapter
    ).read_bytes()
    assert first["comm"]["bytes"] == 3 * 2 * 2 * WIRE_BYTES  # 2 sites, down and up, no evaluation


def test_fedprox_and_fedadam_run_and_differ(fl_setup, tmp_path: Path) -> None:
    adapters = {}
    for name in ("fedavg", "fedprox", "fedadam"):
        state, _ = _run(
            fl_setup,
            tmp_path / name,
            **{"strategy.name": name, "num-server-rounds": 2, "strategy.fraction-evaluate": 0.0},
        )
        assert state["status"] == "finished", state["reason"]
        path = tmp_path / name / "out" / ADAPTER_DIR / "adapter_model.safetensors"
        adapters[name] = path.read_bytes()
    assert len(set(adapters.values())) == 3


def test_missing_training_data_fails_in_one_line(fl_setup, tmp_path: Path) -> None:
    state, grid = _run(fl_setup, tmp_path, **{"data-path": str(tmp_path / "gone")})
    assert state["status"] == "failed" and not grid.sent
    assert state["reason"].startswith("missing dataset: training data")
