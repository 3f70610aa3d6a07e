"""The Flower ServerApp of the federated track.

It checks the run config and the training data, asks every site for its id (a query message,
no arrays), builds the initial LoRA adapter from the seed, and runs the strategy (FedAvg, FedProx
or FedAdam) wrapped in the communication counter for `num-server-rounds` rounds. Everything it
learns goes to `out-dir`:

- `run.json`: status (`running`, `finished`, `failed`), the reason of a failure in one line, the
  run config and its static section (with its hash), the base model and its revision, the
  losses per round, the wall time;
- `comm_report.json`: bytes per round, phase and direction, and the total;
- `adapter/`: the aggregated adapter (PEFT, safetensors) with `medboard_fl.json`.
"""

import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from medboard.errors import MedboardError
from medboard.federated.client_app import lora_settings
from medboard.federated.comm import REPORT_FILE, CommReport, make_comm_strategy
from medboard.federated.config import FlConfig, static_hash, static_of
from medboard.federated.data import check_dataset
from medboard.federated.integrity import HASHES_KEY, run_hashes
from medboard.federated.lora import (
    build_model,
    export_adapter,
    from_arrays,
    resolve_base_model,
    to_arrays,
)
from medboard.paths import atomic_write_text

RUN_FILE = "run.json"
ADAPTER_DIR = "adapter"
SITE_WAIT_SECONDS = 600.0

app = ServerApp()


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _log(message: str, error: bool = False) -> None:
    from logging import ERROR, INFO

    from flwr.common.logger import log

    log(ERROR if error else INFO, message)


def make_strategy(cfg: FlConfig) -> Any:
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx

    common: dict[str, Any] = {
        "fraction_train": cfg.fraction_train,
        "fraction_evaluate": cfg.fraction_evaluate,
        "min_train_nodes": 1,
        "min_evaluate_nodes": 1 if cfg.fraction_evaluate > 0 else 0,
        "min_available_nodes": cfg.static.num_clients,
    }
    if cfg.strategy == "fedprox":
        return FedProx(**common, proximal_mu=cfg.proximal_mu)
    if cfg.strategy == "fedadam":
        return FedAdam(**common, eta=cfg.server_learning_rate, tau=cfg.server_tau)
    return FedAvg(**common)


def discover_sites(grid: Grid, expected: int, timeout: float = SITE_WAIT_SECONDS) -> dict[int, int]:
    """node id -> site id of every connected site, once `expected` sites are connected."""
    deadline = time.time() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < expected:
        if time.time() > deadline:
            raise MedboardError(
                f"only {len(nodes)} of the {expected} sites of the static section connected "
                f"within {timeout:.0f} s"
            )
        time.sleep(1.0)
    if len(nodes) != expected:
        raise MedboardError(
            f"the federation has {len(nodes)} sites, the static section requires {expected} "
            "(static.num-clients)"
        )
    messages = [
        Message(
            content=RecordDict({"config": ConfigRecord({})}),
            message_type=MessageType.QUERY,
            dst_node_id=node,
        )
        for node in nodes
    ]
    sites: dict[int, int] = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            raise MedboardError(f"site {reply.metadata.src_node_id} failed: {reply.error.reason}")
        sites[reply.metadata.src_node_id] = int(reply.content["site"]["site-id"])
    return sites


def _history(result: Any) -> list[dict[str, Any]]:
    rounds: dict[int, dict[str, Any]] = {}
    for number, metrics in result.train_metrics_clientapp.items():
        rounds.setdefault(int(number), {"round": int(number)}).update(dict(metrics))
    for number, metrics in result.evaluate_metrics_clientapp.items():
        rounds.setdefault(int(number), {"round": int(number)}).update(dict(metrics))
    return [rounds[n] for n in sorted(rounds)]


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_server(grid: Grid, run_config: dict[str, Any]) -> dict[str, Any]:
    """The whole server side of one run; returns what it wrote to run.json."""
    started = time.time()
    out = Path(str(run_config.get("out-dir", "fl-out"))).expanduser()
    static = static_of(run_config)
    state: dict[str, Any] = {
        "schema_version": 1,
        "status": "running",
        "reason": "",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "run_config": dict(run_config),
        "static": static,
        "static_hash": static_hash(static),
    }
    write_json(out / RUN_FILE, state)
    try:
        cfg = FlConfig.from_run_config(run_config)
        seed_everything(cfg.seed)
        data_file = check_dataset(cfg.static.dataset, cfg.data_path, cfg.static.dataset_sha256)
        state["data_file"] = str(data_file) if data_file else None
        base = resolve_base_model(cfg.model)
        state["base_model"] = asdict(base)
        lora = lora_settings(cfg)
        # A fresh model (not the process cache): the initial adapter depends on the seed only.
        from medboard.federated import lora as lora_module

        lora_module._MODELS.pop((base.directory, lora), None)
        model, _ = build_model(base.directory, lora, cfg.seed)
        initial = to_arrays(lora_module.adapter_state(model))
        sites = discover_sites(grid, cfg.static.num_clients)
        state["sites"] = {str(node): site for node, site in sorted(sites.items())}
        report = CommReport(budget_bytes=cfg.static.budget_bytes, path=out / REPORT_FILE)
        report.write()
        strategy = make_comm_strategy(make_strategy(cfg), report, sites, seed=cfg.seed)
        result = strategy.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=cfg.num_rounds,
            train_config=ConfigRecord({"seed": cfg.seed}),
            evaluate_config=ConfigRecord({"seed": cfg.seed}),
        )
        report.status = "finished"
        report.write()
        state["rounds"] = _history(result)
        totals = report.as_dict()["total"]
        state["comm"] = totals
        info = {
            "rounds": cfg.num_rounds,
            "strategy": cfg.strategy,
            "static_hash": state["static_hash"],
            "comm_bytes": totals["bytes"],
        }
        adapter = export_adapter(base, lora, from_arrays(result.arrays), out / ADAPTER_DIR, info)
        state["adapter"] = str(adapter)
        state[HASHES_KEY] = run_hashes(out / REPORT_FILE, adapter)  # fl submit's tamper check
        state["status"] = "finished"
    except MedboardError as exc:
        state["status"], state["reason"] = "failed", str(exc)
        _log(f"medboard: run stopped: {exc}", error=True)
    finally:
        state["wall_seconds"] = round(time.time() - started, 2)
        state["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(out / RUN_FILE, state)
    return state


@app.main()
def main(grid: Grid, context: Context) -> None:
    state = run_server(grid, dict(context.run_config))
    if state["status"] != "finished":
        raise SystemExit(f"medboard: {state['reason']}")
