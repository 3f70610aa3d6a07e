"""`medboard fl ...`: prepare the instruction data, run the Flower app, evaluate, submit.

Registered in medboard/cli.py as `app.add_typer(fl_app, name="fl")`. Errors caused by input are
one line on stderr and exit code 1, as everywhere in medboard.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from medboard.cli_options import DeviceOption, ModelArgs, backend_args, command_group
from medboard.federated.cli_common import AllowMismatch, Reference, console, out
from medboard.federated.cli_common import input_errors as _errors
from medboard.federated.cli_common import reference_app as _reference
from medboard.federated.cli_deploy import deploy_command, partition_command

fl_app = command_group("Federated fine-tuning track (Flower): prepare data, run, evaluate, submit.")


@fl_app.command("prepare-data")
def prepare_data_command(
    benchmarks: Annotated[
        Path | None,
        typer.Option(help="The shared benchmarks folder (default: ../shared/benchmarks)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the pairs (default: <medboard home>/fl-data)."),
    ] = None,
) -> None:
    """Turn the training and few-shot splits into medical instruction pairs, with their sha256."""
    from medboard.federated.data import benchmarks_dir, prepare_instructions
    from medboard.paths import home

    with _errors():
        folder = out_dir or home() / "fl-data"
        manifest = prepare_instructions(benchmarks_dir(benchmarks), folder)
    for source, count in manifest["sources"].items():
        out.print(f"{source}: {count}")
    out.print(f"{manifest['records']} pairs in {folder / manifest['file']}")
    out.print(f"sha256 {manifest['sha256']}")


@fl_app.command("run")
def run_command(
    app_dir: Annotated[Path, typer.Argument(help="The Flower app folder.")] = Path("flower"),
    run_config: Annotated[
        list[str] | None,
        typer.Option(
            "--run-config",
            "-c",
            help="key=value overrides of the tool.flwr.app.config table "
            "(never of its static section).",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="The run folder (default: the app's out-dir).")
    ] = None,
    reference: Reference = None,
    quiet: Annotated[bool, typer.Option(help="Do not stream Flower's log.")] = False,
) -> None:
    """Run the app with `flwr run` on the simulation engine; stop every process it started."""
    from medboard.federated.config import parse_overrides
    from medboard.federated.launch import run_app

    echo: Callable[[str], None] | None = None
    if not quiet:
        echo = lambda line: console.out(line, highlight=False)  # noqa: E731
    with _errors():
        overrides = parse_overrides(run_config or [])
        outcome = run_app(app_dir, overrides, _reference(reference), out_dir, echo=echo)
    state = outcome.state
    table = Table(title="federated run")
    for column in ("round", "train_loss", "eval_loss"):
        table.add_column(column)
    for item in state.get("rounds", []):
        table.add_row(
            str(item["round"]),
            f"{item.get('train_loss', float('nan')):.4f}",
            f"{item['eval_loss']:.4f}" if "eval_loss" in item else "-",
        )
    out.print(table)
    comm = state["comm"]
    out.print(
        f"comm. cost {comm['bytes']} B ({comm['gb']:.6f} GB) in {comm['messages']} messages; "
        f"wall {outcome.wall_seconds:.1f} s"
    )
    out.print(f"adapter {state['adapter']}")
    out.print(f"next: medboard fl submit {outcome.out} --team NAME --code-url URL")


def _print_results(title: str, columns: dict[str, list[Any]]) -> None:
    table = Table(title=title)
    table.add_column("task")
    for name in columns:
        table.add_column(name, justify="right")
    tasks = [r.spec.task for r in next(iter(columns.values()))]
    for i, task in enumerate(tasks):
        table.add_row(task, *(f"{100 * rs[i].scores['acc'].value:.2f}" for rs in columns.values()))
    means = [sum(r.scores["acc"].value for r in rs) / len(rs) for rs in columns.values()]
    table.add_row("average", *(f"{100 * m:.2f}" for m in means))
    out.print(table)


@fl_app.command("evaluate")
def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (from fl run).")],
    limit: Annotated[
        int | None,
        typer.Option(help="The first N questions of each task (default: the static eval-limit)."),
    ] = None,
    base_model: Annotated[
        str | None, typer.Option(help="The base model (default: the run's).")
    ] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    model_arg: ModelArgs = None,
    device: DeviceOption = None,
    reference: Reference = None,
    allow_data_mismatch: AllowMismatch = False,
) -> None:
    """Accuracy of the base model before and after (adapter merged); records nothing."""
    from medboard.federated.submit import check_run, evaluate_adapter

    with _errors():
        args = backend_args(model_arg, device=device)
        run = check_run(run_dir, _reference(reference), base_model, allow_data_mismatch)
        n = limit if limit is not None else run.static.eval_limit
        before, after = (
            evaluate_adapter(
                run.base.spec, adapter, run.static, n, dtype, allow_data_mismatch,
                backend_args=args,
            ).results
            for adapter in (None, run.adapter)
        )  # fmt: skip
    summary = {
        "limit": n or None,
        "before": {r.spec.task: r.scores["acc"].value for r in before},
        "after": {r.spec.task: r.scores["acc"].value for r in after},
        "comm_bytes": run.comm_bytes,
    }
    (run_dir / "evaluation.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    _print_results(
        f"{run.static.eval_suite} (acc %, limit {n or 'none'})", {"before": before, "after": after}
    )


@fl_app.command("submit")
def submit_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (from fl run).")],
    team: Annotated[str, typer.Option(help="The team shown on the leaderboard.")],
    code_url: Annotated[str, typer.Option(help="Link to the code of the run.")] = "",
    base_model: Annotated[
        str | None, typer.Option(help="The base model (default: the run's).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The entries' model name.")] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today).")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            "--protocol",
            help="Score by this protocol only (repeatable): loglik, flowertune, generative "
            "(default: all three, one entry each).",
        ),
    ] = None,
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="Score the run's jobs here (an in-process worker, these jobs only) instead "
            "of leaving them to the board's workers.",
        ),
    ] = False,
    model_arg: ModelArgs = None,
    device: DeviceOption = None,
    reference: Reference = None,
    db: Annotated[str | None, typer.Option(help="The results database URL.")] = None,
    allow_data_mismatch: AllowMismatch = False,
) -> None:
    """Check a run and queue its adapter on the federated track, once per protocol; a worker
    scores each (--now: here) and records its entry. --device and -M apply with --now."""
    from medboard.federated.submit import PROTOCOLS, queue_run
    from medboard.results.db import open_database

    with _errors():
        args = backend_args(model_arg, device=device)
        database = open_database(db)
        jobs, run = queue_run(
            database,
            run_dir,
            team=team,
            reference=_reference(reference),
            code_url=code_url,
            base_model=base_model,
            name=name,
            date=date,
            dtype=dtype,
            protocols=protocol or PROTOCOLS,
            allow_data_mismatch=allow_data_mismatch,
        )
    out.print(f"comm. cost {run.comm_bytes} B = {run.comm_bytes / (1000 * 1024**2):.6f} GB")
    for job in jobs:
        out.print(f"queued #{job.id}: {job.model} + adapter on {job.track} ({job.protocol})")
    if not now:
        out.print("next: medboard worker (or serve's workers) scores them")
        return
    _score_now(database, [job.id for job in jobs], args, allow_data_mismatch)


def _score_now(
    database: Any, ids: list[int], args: dict[str, Any], allow_data_mismatch: bool
) -> None:
    """Run the queued jobs `ids` in this process, then print each one's outcome."""
    from medboard.queue.submissions import get_submission
    from medboard.queue.worker import run_worker
    from medboard.runner import EvalOptions

    with _errors():
        run_worker(
            database,
            "fl-submit",
            once=True,
            options=EvalOptions(allow_data_mismatch=allow_data_mismatch),
            backend_args=args,
            only=ids,
        )
    failed = False
    for job_id in ids:
        job = get_submission(database, job_id)
        if job is None or job.status != "finished":
            failed = True
            reason = job.reason if job is not None else "gone"
            console.print(f"[red]error:[/red] #{job_id}: {escape(str(reason))}", highlight=False)
            continue
        out.print(f"#{job.id} ({job.protocol}): entry {job.entry_id}")
    if failed:
        raise typer.Exit(1)


fl_app.command("partition")(partition_command)
fl_app.command("deploy")(deploy_command)

if __name__ == "__main__":  # python -m medboard.federated.cli
    fl_app()
