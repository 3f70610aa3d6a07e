"""Store finished medboard runs in the results database as one leaderboard entry."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medboard.results.db import Database, Entry, Model, Run, TaskScore
from medboard.results.schema import RunResult, json_safe


def _model(session: Session, identity: dict[str, Any], details: dict[str, Any]) -> Model:
    adapter_hash = identity.get("adapter_hash") or ""
    found = session.scalars(
        select(Model).where(
            Model.name == details.get("name", identity["model"]),
            Model.revision == identity["revision"],
            Model.dtype == identity["dtype"],
            Model.adapter_hash == adapter_hash,
        )
    ).first()
    if found is not None:
        return found
    model = Model(
        name=details.get("name", identity["model"]),
        revision=identity["revision"],
        dtype=identity["dtype"],
        adapter=identity.get("adapter"),
        adapter_hash=adapter_hash,
        parameters=details.get("parameters"),
        license=details.get("license"),
        model_type=details.get("model_type", "unknown"),
        base_model=details.get("base_model"),
    )
    session.add(model)
    session.flush()
    return model


def _run(session: Session, model: Model, result: RunResult) -> Run:
    found = session.scalars(select(Run).where(Run.key == result.key)).first()
    if found is not None:
        return found
    spec = result.spec
    run = Run(
        key=result.key,
        model_id=model.id,
        task=spec.task,
        task_version=spec.task_version,
        protocol=spec.protocol,
        data_hash=spec.data_hash,
        harness=spec.harness,
        harness_version=spec.harness_version,
        n_samples=result.n_samples,
        prompt_tokens=result.prompt_tokens,
        wall_seconds=result.wall_seconds,
        finished_at=result.finished_at,
        samples_path=result.samples_file,
        result=json_safe(result.model_dump(mode="json")),  # JSON has no nan: null
    )
    session.add(run)
    session.flush()
    return run


def record_entry(
    target: Database | Session,
    track: str,
    results: list[RunResult],
    identity: dict[str, Any],
    details: dict[str, Any] | None = None,
    origin: str = "evaluated",
    source: str = "",
    extra: dict[str, Any] | None = None,
) -> int:
    """One entry on `track` with a score per task and metric; returns the entry id.

    `target` is a database (the entry gets a transaction of its own) or a session (inside the
    caller's transaction: the worker marks its job finished in the same one). `identity` is
    the backend's (model, revision, dtype, adapter, adapter_hash); `details` may add name,
    parameters, license, model_type, base_model, team, comm_cost_gb, code_url, date.
    """
    if isinstance(target, Database):
        with target.session() as session:
            args = (track, results, identity, details, origin, source, extra)
            return record_entry(session, *args)
    session = target
    details = details or {}
    model = _model(session, identity, details)
    entry = Entry(
        track=track,
        model=model,
        origin=origin,
        source=source,
        team=details.get("team"),
        comm_cost_gb=details.get("comm_cost_gb"),
        code_url=details.get("code_url"),
        date=details.get("date") or (results[0].finished_at[:10] if results else None),
        extra=extra or {},
    )
    session.add(entry)
    for result in results:
        run = _run(session, model, result)
        for metric, score in result.scores.items():
            entry.scores.append(
                TaskScore(
                    task=result.spec.task,
                    metric=metric,
                    value=score.value,
                    stderr=score.stderr,
                    n=result.n_samples,
                    run_id=run.id,
                )
            )
    session.flush()
    return entry.id
