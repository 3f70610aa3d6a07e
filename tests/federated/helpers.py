"""Small fixtures for the federated tests: benchmark-shaped training files and a Flower app."""

import json
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REFERENCE_APP = REPO / "flower"

ORGANS = ["heart", "lung", "liver", "kidney", "brain", "skin", "bone", "eye"]
NERVES = ["Phrenic", "Vagus", "Radial", "Ulnar"]


def _mc(source: str, i: int, **extra: Any) -> dict[str, Any]:
    organ = ORGANS[i % len(ORGANS)]
    answer = "ABCD"[i % 4]
    options = {k: f"{NERVES[j]} {organ}" for j, k in enumerate("ABCD")}
    return {
        "id": f"{source}-{i:03d}",
        "question": f"Which nerve supplies the {organ} ({source} case {i})?",
        "options": options,
        "answer": answer,
        **extra,
    }


def write_benchmarks(folder: Path, per_file: int = 24) -> Path:
    """The training splits medboard fl prepare-data reads, with a few synthetic records each."""
    files: dict[str, list[dict[str, Any]]] = {
        "medmcqa/train.jsonl": [_mc("medmcqa", i) for i in range(per_file)],
        "medqa/validation.jsonl": [_mc("medqa", i) for i in range(per_file)],
        "mmlu_medical/dev.jsonl": [_mc("mmlu", i, subject="anatomy") for i in range(5)],
        "mmlu_medical/validation.jsonl": [
            _mc("mmluval", i, subject="college_medicine") for i in range(8)
        ],
        "headqa/validation.jsonl": [_mc("headqa", i) for i in range(per_file)],
        "pubmedqa/train.jsonl": [
            {
                "id": f"pmid{i}",
                "question": f"Does treatment {i} help the {ORGANS[i % 8]}?",
                "context": f"Patients were randomized. The {ORGANS[i % 8]} improved.",
                "options": {"yes": "yes", "no": "no", "maybe": "maybe"},
                "answer": ["yes", "no", "maybe"][i % 3],
            }
            for i in range(per_file)
        ],
    }
    for name, rows in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _dump(table: dict[str, Any], prefix: str = "") -> str:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    text = ""
    if prefix and scalars:
        text += f"[{prefix}]\n"
    for key, value in scalars.items():
        text += f"{key} = {_toml_value(value)}\n"
    if scalars:
        text += "\n"
    for key, value in tables.items():
        text += _dump(value, f"{prefix}.{key}" if prefix else key)
    return text


def write_app(folder: Path, config: dict[str, Any], static: dict[str, Any]) -> Path:
    """A copy of the reference app's pyproject.toml with `config` keys (dotted) and `static` set."""
    document = tomllib.loads((REFERENCE_APP / "pyproject.toml").read_text(encoding="utf-8"))
    table = document["tool"]["flwr"]["app"]["config"]
    for dotted, value in config.items():
        node = table
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        if last not in node:
            raise KeyError(dotted)
        node[last] = value
    for key, value in static.items():
        if key not in table["static"]:
            raise KeyError(key)
        table["static"][key] = value
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(_dump(document), encoding="utf-8")
    return folder


class FakeGrid:
    """An in-process grid: each node runs the ClientApp's functions directly (no Ray)."""

    def __init__(self, run_config: dict[str, Any], num_nodes: int) -> None:
        from flwr.app import Context, RecordDict
        from flwr.supercore.task_identity import TaskIdentity

        # Outside Flower's runtime a process has no task identity; messages need one.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        # Node ids are not site ids, as in Flower: sites are found by the query message.
        self.contexts = {
            1000 + 7 * i: Context(
                run_id=1,
                node_id=1000 + 7 * i,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config=run_config,
            )
            for i in reversed(range(num_nodes))
        }
        self.sent: list[Any] = []

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Any, timeout: float | None = None) -> list[Any]:
        from medboard.federated import client_app

        handlers = {
            "train": client_app.train,
            "evaluate": client_app.evaluate,
            "query": client_app.query,
        }
        replies = []
        for message in messages:
            self.sent.append(message)
            context = self.contexts[message.metadata.dst_node_id]
            reply = handlers[message.metadata.message_type](message, context)
            replies.append(reply)
        return list(reversed(replies))  # arrival order is not send order


@dataclass(frozen=True)
class FlSetup:
    root: Path
    model: Path
    benchmarks: Path
    data: Path
    sha256: str

    def config(self, out: Path, **changes: Any) -> dict[str, Any]:
        """The run config of the CI run (4 sites, 3 rounds, LoRA, FedAvg), with changes."""
        config: dict[str, Any] = {
            "num-server-rounds": 3,
            "data-path": str(self.data),
            "out-dir": str(out),
            "strategy.fraction-train": 1.0,
            "strategy.fraction-evaluate": 1.0,
            "model.name": str(self.model),
            "train.local-steps": 5,
            "train.batch-size": 4,
            "train.learning-rate": 0.01,
            "train.max-seq-length": 64,
            "train.eval-examples": 4,
        }
        config.update(changes)
        return config

    def static(self, **changes: Any) -> dict[str, Any]:
        static: dict[str, Any] = {
            "dataset-sha256": self.sha256,
            "num-clients": 4,
            "partitioner": "iid",
            "eval-limit": 5,
            "comm-budget-gb": 1.0,
        }
        static.update(changes)
        return static

    def app(self, folder: Path, out: Path, static: dict | None = None, **changes: Any) -> Path:
        return write_app(folder, self.config(out, **changes), static or self.static())


def make_fl_setup(root: Path) -> FlSetup:
    """A tiny Llama, small training files and their instruction file, under `root`."""
    from medboard.federated.data import prepare_instructions
    from tests.conftest import build_tiny_llama

    model = build_tiny_llama(root / "tiny-llama")
    benchmarks = write_benchmarks(root / "benchmarks")
    manifest = prepare_instructions(benchmarks, root / "fl-data")
    return FlSetup(root, model, benchmarks, root / "fl-data", manifest["sha256"])


def finished_run(setup: FlSetup, root: Path) -> tuple[Path, Path]:
    """A finished run of the CI config, made in-process (the ServerApp with the ClientApp behind
    a FakeGrid, about a second): (the app, which is also the submission's reference; the run
    folder)."""
    from medboard.federated.config import app_run_config
    from medboard.federated.server_app import run_server

    app = setup.app(root / "app", root / "run")
    config = app_run_config(app)
    state = run_server(FakeGrid(config, setup.static()["num-clients"]), config)
    assert state["status"] == "finished", state["reason"]
    return app, root / "run"


@contextmanager
def command_env(root: Path, **more: str) -> Iterator[Path]:
    """The environment of a test module's commands (yields `root`): a medboard home and a
    datasets cache of its own under `root`, offline, and any `more` variables."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBOARD_HOME", str(root / "home"))
        patch.setenv("HF_DATASETS_CACHE", str(root / "hf-cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        for name, value in more.items():
            patch.setenv(name, value)
        yield root


def error_line(result: Any) -> str:
    """The one line a command that failed (exit code 1) wrote to stderr."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]
