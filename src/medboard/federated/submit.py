"""From a finished federated run to entries on the federated leaderboard track.

`check_run` does every check that can refuse a run before anything is queued or written: the
run finished; its static section equals the track's reference; its report and adapter are the
ones the server wrote (the hashes run.json records: federated.integrity); its comm_report.json
is complete, agrees with run.json and stays within the reference budget; the adapter fits the
base model (same revision, every LoRA tensor the shape of the layer it adapts); the evaluation
data of the suite is in the store. Only then is the run queued (`queue_run`): one submission per
protocol (loglik, FlowerTune's faithful `flowertune`, the corrected `generative`), each naming
the base model with the adapter, the track's eval-limit, and the entry's team, comm. cost, code
link, date and federated figures, fixed now. A worker scores each (base model and adapter
merged, as `medboard eval --record` does) and records its entry: one per protocol, each ranked
among the entries of its protocol, the flowertune one next to the published table.
"""

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medboard.backends.spec import local_kind
from medboard.errors import SubmissionError
from medboard.federated import TRACK
from medboard.federated.comm import REPORT_FILE, gb
from medboard.federated.config import (
    StaticSection,
    app_run_config,
    check_static,
    static_of,
)
from medboard.federated.integrity import check_hashes
from medboard.federated.lora import BaseModel, check_adapter_fits, resolve_base_model
from medboard.federated.server_app import ADAPTER_DIR, RUN_FILE

if TYPE_CHECKING:
    from medboard.evaluation import Evaluated
    from medboard.results.db import Database, Submission

# The protocols a run is scored by: the Open Medical-LLM board's log-likelihood, FlowerTune's
# generative protocol as published (its label leak included: medboard.tasks.protocols) and the
# corrected one (queue.submissions.FEDERATED_PROTOCOLS).
PROTOCOLS = ("loglik", "flowertune", "generative")


@dataclass(frozen=True)
class CheckedRun:
    folder: Path
    state: dict[str, Any]
    report: dict[str, Any]
    static: StaticSection
    base: BaseModel
    adapter: Path
    adapter_hash: str

    @property
    def comm_bytes(self) -> int:
        return int(self.report["total"]["bytes"])


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise SubmissionError(f"{path.parent} is not a finished federated run: no {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"{path} is not valid JSON: {exc}") from None


def check_run(
    folder: Path, reference: Path, base_model: str | None = None, allow_data_mismatch: bool = False
) -> CheckedRun:
    state = _read_json(folder / RUN_FILE, RUN_FILE)
    if state.get("status") != "finished":
        raise SubmissionError(
            f"run {folder} did not finish: {state.get('reason') or state.get('status')}"
        )
    reference_static = static_of(app_run_config(reference))
    check_static(state.get("static", {}), reference_static, str(reference))
    static = StaticSection.from_run_config({f"static.{k}": v for k, v in reference_static.items()})
    adapter = folder / ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise SubmissionError(f"run {folder} has no adapter ({adapter}/adapter_config.json)")
    if not (folder / REPORT_FILE).is_file():
        raise SubmissionError(f"{folder} is not a finished federated run: no {REPORT_FILE}")
    adapter_hash = check_hashes(folder, state, folder / REPORT_FILE, adapter)
    report = _read_json(folder / REPORT_FILE, REPORT_FILE)
    if report.get("status") != "finished":
        raise SubmissionError(f"{folder / REPORT_FILE} is incomplete: {report.get('reason')}")
    total = int(report["total"]["bytes"])
    if total != int(state.get("comm", {}).get("bytes", -1)):
        raise SubmissionError(f"{folder / REPORT_FILE} does not agree with {RUN_FILE}")
    counted = sum(int(r["bytes"]) for r in report["rounds"])
    if counted != total:
        raise SubmissionError(
            f"{folder / REPORT_FILE}: the rounds add up to {counted} B, not {total} B"
        )
    if total > static.budget_bytes:
        raise SubmissionError(
            f"communication budget exceeded: the run exchanged {total} B ({gb(total):.3f} GB), "
            f"the track allows {static.budget_bytes} B ({static.comm_budget_gb} GB)"
        )
    spec = base_model or state.get("base_model", {}).get("spec")
    if not spec:
        raise SubmissionError(f"{folder / RUN_FILE} names no base model: pass --base-model")
    base = resolve_base_model(spec)
    check_adapter_fits(adapter, base)
    check_eval_data(static, allow_data_mismatch)
    return CheckedRun(folder, state, report, static, base, adapter, adapter_hash)


def check_eval_data(static: StaticSection, allow_data_mismatch: bool) -> list[Any]:
    """The suite's tasks, each with its data present (one-line DataError otherwise)."""
    from medboard.data.store import DataStore
    from medboard.tasks import REGISTRY

    tasks = REGISTRY.resolve(static.eval_suite, None)
    store = DataStore()
    for task in tasks:
        store.task_data(task, allow_mismatch=allow_data_mismatch)
    return tasks


def evaluate_adapter(
    base: str,
    adapter: Path | None,
    static: StaticSection,
    limit: int | None,
    dtype: str = "float32",
    allow_data_mismatch: bool = False,
    reporter: Any = None,
    backend_args: Mapping[str, Any] | None = None,
) -> "Evaluated":
    """The base model's results, with the adapter merged when given (evaluation.evaluate_spec);
    `backend_args` as -M (device, kernels)."""
    from medboard.backends import registry
    from medboard.evaluation import evaluate_spec
    from medboard.runner import EvalOptions

    tasks = check_eval_data(static, allow_data_mismatch)
    given = {**(backend_args or {}), "dtype": dtype, "adapter": str(adapter) if adapter else None}
    spec = registry.resolve(base, given)
    options = EvalOptions(limit=limit or None, allow_data_mismatch=allow_data_mismatch)
    return evaluate_spec(spec, tasks, options, reporter)


def _training_file(config: dict[str, Any]) -> Path | None:
    """The run's local instruction file, if it trained on one that is still there."""
    from medboard.federated.data import resolve_data_file

    data_path = config.get("data-path")
    if not data_path:
        return None
    path = resolve_data_file(str(data_path))
    return path if path.is_file() else None


def _sampled_per_round(report: dict[str, Any]) -> int | None:
    """The sites a round trains on: the train messages sent in its rounds (the most of any)."""
    counts = [r.get("train", {}).get("down", {}).get("messages") for r in report["rounds"]]
    found = [int(c) for c in counts if c]
    return max(found) if found else None


def entry_of(
    run: CheckedRun,
    team: str,
    code_url: str = "",
    date: str | None = None,
    allow_data_mismatch: bool = False,
) -> dict[str, Any]:
    """What each of the run's entries carries besides its scores (queue SubmitRequest.entry):
    team, base model, comm. cost, code link, date, and in `extra.federated` the figures the model
    page shows (cost, budget, rounds, sites, static hash) with the rest of the run's record."""
    config = run.state.get("run_config", {})
    extra: dict[str, Any] = {
        "federated": {
            "comm_bytes": run.comm_bytes,
            "comm_gb": gb(run.comm_bytes),
            "budget_bytes": run.static.budget_bytes,
            "budget_gb": run.static.comm_budget_gb,
            "comm_tensor_bytes": run.report["total"]["tensor_bytes"],
            "messages": run.report["total"]["messages"],
            "rounds": config.get("num-server-rounds"),
            "sites": run.static.num_clients,
            "sampled_per_round": _sampled_per_round(run.report),
            "strategy": config.get("strategy.name"),
            "fraction_train": config.get("strategy.fraction-train"),
            "static": run.state.get("static"),
            "static_hash": run.state.get("static_hash"),
            "base_revision": run.base.revision,
            "adapter_hash": run.adapter_hash,
            "wall_seconds": run.state.get("wall_seconds"),
        }
    }
    corpus = _training_file(config)
    if corpus is not None:  # how much of the suite the sites trained on, for the model page
        from medboard.checks import contamination_summary

        extra["contamination"] = contamination_summary(
            corpus, TRACK, allow_mismatch=allow_data_mismatch
        )
    return {
        "team": team,
        "base_model": run.base.spec,
        "comm_cost_gb": gb(run.comm_bytes),
        "code_url": code_url or None,
        "date": date or time.strftime("%Y-%m-%d"),
        "extra": extra,
    }


def queue_run(
    database: "Database",
    folder: Path,
    team: str,
    reference: Path,
    code_url: str = "",
    base_model: str | None = None,
    name: str | None = None,
    date: str | None = None,
    dtype: str = "float32",
    protocols: Sequence[str] = PROTOCOLS,
    allow_data_mismatch: bool = False,
) -> tuple[list["Submission"], CheckedRun]:
    """Check the run and queue it once per protocol, all or none (queue.submit_all); returns
    the submissions and the checked run."""
    from medboard.queue.submissions import SubmitRequest, submit_all

    if not team.strip():
        raise SubmissionError("--team is required (the name shown on the leaderboard)")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise SubmissionError(
            f"unknown protocol '{(unknown or [''])[0]}' (choose from {', '.join(PROTOCOLS)})"
        )
    run = check_run(folder, reference, base_model, allow_data_mismatch)
    entry = entry_of(run, team, code_url, date, allow_data_mismatch)
    # as the published rows read: "team / base model", a local base model by its folder or file
    local = local_kind(run.base.spec) is not None
    base_name = Path(run.base.spec).name if local else run.base.spec
    requests = [
        SubmitRequest(
            model=run.base.spec,
            track=TRACK,
            dtype=dtype,
            adapter=str(run.adapter.resolve()),
            submitter=team,
            name=name or f"{team} / {base_name}",
            model_type="federated",
            weight_type="adapter",
            description=f"federated run in {folder.resolve().name}/",
            protocol=protocol,
            entry=entry,
            limit=run.static.eval_limit or None,
        )
        for protocol in dict.fromkeys(protocols)
    ]
    return submit_all(database, requests), run
