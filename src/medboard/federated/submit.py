"""From a finished federated run to an entry on the federated leaderboard track.

`check_run` does every check that can refuse a run before anything is evaluated or written:
the run finished; its static section equals the track's reference; its comm_report.json is
complete, agrees with run.json and stays within the reference budget; the adapter fits the base
model (same revision, every LoRA tensor the shape of the layer it adapts); the evaluation data
of the suite is in the store. Only then is the adapter evaluated (`medboard.evaluation`, the
path `medboard eval --record` and the workers take, with the base model and the adapter merged,
on the static suite and limit) and one entry recorded, with the team, base model, comm. cost,
code link and date.
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medboard.errors import SubmissionError
from medboard.federated import TRACK
from medboard.federated.comm import REPORT_FILE, gb
from medboard.federated.config import (
    StaticSection,
    app_run_config,
    check_static,
    static_of,
)
from medboard.federated.lora import BaseModel, check_adapter_fits, resolve_base_model
from medboard.federated.server_app import ADAPTER_DIR, RUN_FILE

if TYPE_CHECKING:
    from medboard.evaluation import Evaluated


@dataclass(frozen=True)
class CheckedRun:
    folder: Path
    state: dict[str, Any]
    report: dict[str, Any]
    static: StaticSection
    base: BaseModel
    adapter: Path

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
    adapter = folder / ADAPTER_DIR
    if not (adapter / "adapter_config.json").is_file():
        raise SubmissionError(f"run {folder} has no adapter ({adapter}/adapter_config.json)")
    spec = base_model or state.get("base_model", {}).get("spec")
    if not spec:
        raise SubmissionError(f"{folder / RUN_FILE} names no base model: pass --base-model")
    base = resolve_base_model(spec)
    check_adapter_fits(adapter, base)
    check_eval_data(static, allow_data_mismatch)
    return CheckedRun(folder, state, report, static, base, adapter)


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


def _existing_entry(database: Any, adapter_hash: str | None) -> int | None:
    from sqlalchemy import select

    from medboard.results.db import Entry, Model

    if not adapter_hash:
        return None
    with database.session() as session:
        return session.scalars(
            select(Entry.id)
            .join(Model)
            .where(Entry.track == TRACK, Model.adapter_hash == adapter_hash)
        ).first()


def _training_file(config: dict[str, Any]) -> Path | None:
    """The run's local instruction file, if it trained on one that is still there."""
    from medboard.federated.data import resolve_data_file

    data_path = config.get("data-path")
    if not data_path:
        return None
    path = resolve_data_file(str(data_path))
    return path if path.is_file() else None


def submit_run(
    folder: Path,
    team: str,
    code_url: str,
    reference: Path,
    db_url: str | None = None,
    base_model: str | None = None,
    name: str | None = None,
    date: str | None = None,
    dtype: str = "float32",
    allow_data_mismatch: bool = False,
    reporter: Any = None,
    backend_args: Mapping[str, Any] | None = None,
) -> tuple[int, CheckedRun, list[Any]]:
    """Check, evaluate and record one run; returns (entry id, the checked run, the results)."""
    from medboard.results.db import open_database

    if not team.strip():
        raise SubmissionError("--team is required (the name shown on the leaderboard)")
    run = check_run(folder, reference, base_model, allow_data_mismatch)
    database = open_database(db_url)
    evaluated = evaluate_adapter(
        run.base.spec,
        run.adapter,
        run.static,
        run.static.eval_limit,
        dtype=dtype,
        allow_data_mismatch=allow_data_mismatch,
        reporter=reporter,
        backend_args=backend_args,
    )
    existing = _existing_entry(database, evaluated.identity.get("adapter_hash"))
    if existing is not None:
        raise SubmissionError(f"this adapter is on the {TRACK} track already (entry {existing})")
    base_name = Path(run.base.spec).name if run.base.spec.endswith(".gguf") else run.base.spec
    details = {
        "name": name or f"{team}/{base_name}+fl-lora",
        "model_type": "federated",
        "base_model": run.base.spec,
        "team": team,
        "comm_cost_gb": gb(run.comm_bytes),
        "code_url": code_url or None,
        "date": date or time.strftime("%Y-%m-%d"),
    }
    config = run.state.get("run_config", {})
    extra: dict[str, Any] = {
        "federated": {
            "comm_bytes": run.comm_bytes,
            "comm_tensor_bytes": run.report["total"]["tensor_bytes"],
            "messages": run.report["total"]["messages"],
            "rounds": config.get("num-server-rounds"),
            "strategy": config.get("strategy.name"),
            "fraction_train": config.get("strategy.fraction-train"),
            "static": run.state.get("static"),
            "static_hash": run.state.get("static_hash"),
            "base_revision": run.base.revision,
            "wall_seconds": run.state.get("wall_seconds"),
        }
    }
    corpus = _training_file(config)
    if corpus is not None:  # how much of the suite the sites trained on, for the model page
        from medboard.checks import contamination_summary

        extra["contamination"] = contamination_summary(
            corpus, TRACK, allow_mismatch=allow_data_mismatch
        )
    entry = evaluated.record(database, TRACK, details, str(folder), extra=extra)
    return entry, run, evaluated.results
