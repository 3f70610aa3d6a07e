"""The `medboard` command line: tasks, data, eval here; the leaderboard's commands in cli_board."""

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from medboard.cli_options import AllowMismatch, DbOption, message_console
from medboard.errors import MedboardError
from medboard.federated.cli import fl_app
from medboard.results.schema import RunResult

app = typer.Typer(
    help="medboard: evaluate language models on the medical QA suites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="The local dataset store: import, pull, list.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(fl_app, name="fl")

console = Console(stderr=True)
out = message_console()


class RichReporter:
    """Progress bars with rate and ETA, one per task; plain lines every 30 s when not a terminal."""

    LOG_EVERY = float(os.environ.get("MEDBOARD_LOG_EVERY", "30"))

    def __init__(self, progress: Progress) -> None:
        from medboard.runner import BatchPace  # the runner's imports wait for a command using it

        self.progress = progress
        self.current: TaskID | None = None
        self.plain = not progress.console.is_terminal
        self.logged_at = 0.0
        self.pace = BatchPace()

    def status(self, message: str) -> None:
        self.progress.console.print(f"[dim]{message}[/dim]")

    def start(self, task: str, total: int, done: int) -> None:
        self.current = self.progress.add_task(task, total=total, completed=done, eta=None)
        self.logged_at = time.time()
        if self.plain and done:
            self.progress.console.print(f"{task}: resuming at {done}/{total}")

    def batches(self, pending: int) -> None:
        self.pace.plan(pending)

    def advance(self, n: int) -> None:
        if self.current is None:
            return
        self.progress.update(self.current, advance=n, eta=self.pace.step())
        if self.plain and time.time() - self.logged_at >= self.LOG_EVERY:
            self.logged_at = time.time()
            self.progress.console.print(_progress_line(self.progress.tasks[self.current]))

    def finish(self, result: RunResult, cached: bool) -> None:
        if cached:
            self.progress.console.print(
                f"[dim]{result.spec.task}: finished run {result.key[:12]} reused[/dim]"
            )
        elif self.current is not None:
            self.progress.update(self.current, completed=result.n_samples)
            if self.plain:
                line = f"{result.spec.task}: {result.n_samples} done in {result.wall_seconds:.0f} s"
                self.progress.console.print(line)
        self.current = None


def _progress_line(task: Any) -> str:
    done, total = int(task.completed), int(task.total or 0)
    speed = task.speed or 0.0
    eta = task.fields.get("eta")
    left = "?" if eta is None else f"{eta} s"
    return f"{task.description}: {done}/{total} ({speed:.1f} q/s, ETA {left})"


class RateColumn(TextColumn):
    """Questions per second (blank until there is a rate)."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: "Any") -> "Any":
        from rich.text import Text

        return Text(f"{task.speed:6.1f} q/s" if task.speed else "    - q/s")


class EtaColumn(TextColumn):
    """The time the task has left, from the pace of its batches (runner.BatchPace)."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: "Any") -> "Any":
        from rich.text import Text

        eta = 0 if task.finished else task.fields.get("eta")
        if eta is None:
            return Text("-:--:--")
        minutes, seconds = divmod(int(eta), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours}:{minutes:02d}:{seconds:02d}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        EtaColumn(),
        console=console,
    )


@app.command("tasks")
def tasks_command() -> None:
    """List tasks and suites, with their sizes and whether their data is present."""
    from medboard.data.records import content_hash
    from medboard.data.store import DataStore
    from medboard.tasks import REGISTRY

    store = DataStore()
    table = Table(title="tasks")
    for column in ("task", "dataset/split", "size", "metrics", "data"):
        table.add_column(column)
    for task in REGISTRY.tasks():
        if not store.has(task.dataset, task.split):
            status = "[red]missing[/red]"
        else:
            records = task.select(store.load(task.dataset, task.split))
            ok = content_hash(records) == task.expected_hash
            status = (
                "[green]present[/green]" if ok else f"[yellow]differs ({len(records)})[/yellow]"
            )
        table.add_row(
            task.name,
            f"{task.dataset}/{task.split}",
            str(task.expected_size),
            ", ".join(task.metrics),
            status,
        )
    out.print(table, soft_wrap=False)
    suites = Table(title="suites")
    suites.add_column("suite")
    suites.add_column("tasks")
    suites.add_column("questions")
    for name, members in REGISTRY.suites().items():
        size = sum(REGISTRY.task(t).expected_size or 0 for t in members)
        suites.add_row(name, ", ".join(members), str(size))
    out.print(suites, soft_wrap=False)
    out.print(f"data store: {store.root}")


@data_app.command("import")
def data_import(
    path: Annotated[
        Path, typer.Argument(help="A file or folder: normalized JSONL, or a release format.")
    ],
    dataset: Annotated[str | None, typer.Option(help="Dataset name, for a single file.")] = None,
    split: Annotated[str | None, typer.Option(help="Split name, for a single file.")] = None,
) -> None:
    """Import evaluation data into the local store (each split is content-hashed)."""
    from medboard.data.importer import import_path
    from medboard.data.store import DataStore

    for info in import_path(path, DataStore(), dataset=dataset, split=split):
        out.print(
            f"{info.dataset}/{info.split}: {info.count} records, "
            f"hash {info.content_hash[:12]} ({info.format})"
        )


@data_app.command("pull")
def data_pull(
    task: Annotated[str, typer.Argument(help="Task name (see 'medboard tasks').")],
    revision: Annotated[
        str | None, typer.Option(help="Dataset revision (default: pinned).")
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(help="A local copy (save_to_disk folder or parquet) instead of the Hub."),
    ] = None,
) -> None:
    """Download a task's data from the Hugging Face Hub by pinned id and revision."""
    from medboard.data.hub import pull_task
    from medboard.data.store import DataStore
    from medboard.tasks import REGISTRY

    info = pull_task(REGISTRY.task(task), DataStore(), revision=revision, source=source)
    out.print(f"{info.dataset}/{info.split}: {info.count} records, hash {info.content_hash[:12]}")


@data_app.command("list")
def data_list() -> None:
    """List the splits in the local store."""
    from medboard.data.store import DataStore

    store = DataStore()
    table = Table()
    for column in ("dataset/split", "records", "hash", "format", "source", "imported"):
        table.add_column(column)
    for manifest in sorted(store.root.glob("*/*.manifest.json")):
        info = store.info(manifest.parent.name, manifest.name.removesuffix(".manifest.json"))
        if info is not None:
            table.add_row(
                f"{info.dataset}/{info.split}",
                str(info.count),
                info.content_hash[:12],
                info.format,
                info.source,
                info.imported_at,
            )
    out.print(table, soft_wrap=False)


@app.command("eval")
def eval_command(
    model: Annotated[
        str, typer.Option(help="Model directory, .gguf file, Hub id, or 'fake' for the test model.")
    ],
    suite: Annotated[
        str | None, typer.Option(help="Suite: open_medical, flowertune_medical.")
    ] = None,
    tasks: Annotated[
        str | None, typer.Option(help="Comma-separated tasks (a subset of --suite).")
    ] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    adapter: Annotated[str | None, typer.Option(help="A PEFT adapter directory.")] = None,
    revision: Annotated[str | None, typer.Option(help="Hub revision of the model.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N questions per task.", min=1)
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Folder for results.json and the samples.")
    ] = None,
    batch_tokens: Annotated[
        int | None, typer.Option(help="Tokens per scoring batch (default 4096).", min=1)
    ] = None,
    bf16_matmul: Annotated[
        str,
        typer.Option(
            help="How bfloat16 linear layers compute: auto (native on CUDA; on the CPU the "
            "faster of the two here, timed once), native or float32."
        ),
    ] = "auto",
    compile_mode: Annotated[
        str,
        typer.Option(
            "--compile",
            help="Run the decoder layers through torch.compile while scoring choices: auto "
            "(on for bfloat16 and float16 on the CPU when a C++ compiler is found; 6-20 s to "
            "compile), on or off.",
        ),
    ] = "auto",
    attention: Annotated[
        str,
        typer.Option(
            help="Attention while scoring choices: auto (medboard's AMX kernel for bfloat16 on "
            "a CPU with AMX where it is faster than torch's, timed once; built with the C "
            "compiler on first use; else torch's), torch or amx."
        ),
    ] = "auto",
    activation: Annotated[
        str,
        typer.Option(
            help="The gated MLPs (SiLU or tanh-GELU of gate, times up) while scoring choices: "
            "auto (medboard's kernels for bfloat16, built with the C compiler on first use: "
            "projections and activation in one on a CPU with AMX, the activation alone with "
            "AVX-512 BF16, each where it is faster than torch's, timed once; else torch's), "
            "torch or native."
        ),
    ] = "auto",
    protocol: Annotated[
        str,
        typer.Option(
            help="loglik (choice log-likelihood), flowertune (FlowerTune's generative "
            "evaluation, faithful: leaks the gold answer's length), generative or cot."
        ),
    ] = "loglik",
    max_new_tokens: Annotated[
        int | None,
        typer.Option(help="Override a generative protocol's budget of new tokens.", min=1),
    ] = None,
    shots: Annotated[
        int,
        typer.Option(
            help="Few-shot examples before each question (log-likelihood protocol; tasks with "
            "lm-eval's first-n pool: the MMLU subjects). A prefix that all questions share is "
            "computed once per batch.",
            min=0,
        ),
    ] = 0,
    permute: Annotated[
        str | None,
        typer.Option(
            help="Also evaluate each letter-choice task with its options rotated by these "
            "shifts (e.g. 1,2,3): robustness to option order."
        ),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record", help="Store the results as a leaderboard entry on the --suite track."
        ),
    ] = False,
    name: Annotated[
        str,
        typer.Option(help="With --record: how the leaderboard names the entry (default: MODEL)."),
    ] = "",
    db: DbOption = None,
    allow_data_mismatch: AllowMismatch = False,
) -> None:
    """Evaluate a model; ends with a table of acc ± stderr per task and the mean over tasks."""
    from medboard.backends import create_backend
    from medboard.runner import EvalOptions, evaluate
    from medboard.tasks import REGISTRY, TRACKS
    from medboard.tasks.permute import with_permutations
    from medboard.tasks.protocols import protocol_version

    version = protocol_version(protocol, max_new_tokens)  # fails before the model loads
    selected = REGISTRY.resolve(suite, tasks)
    if record and suite not in TRACKS:
        raise MedboardError(f"--record needs --suite set to a track ({', '.join(TRACKS)})")
    if name and not record:
        raise MedboardError("--name names the entry --record stores: give --record too")
    name = name.strip() or model
    if record:
        from medboard.queue.submissions import check_field

        check_field("name", name)  # the models table's limit, checked before the evaluation
    if shots and protocol != "loglik":
        raise MedboardError("--shots works with the loglik protocol only")
    if shots and record:
        raise MedboardError("--record stores zero-shot runs only: the tracks are zero-shot")
    if permute:
        selected, skipped = with_permutations(selected, _shifts(permute))
        for reason in skipped:
            out.print(f"[yellow]not permuted[/]: {reason}")
    backend = create_backend(
        model,
        dtype=dtype,
        device=device,
        adapter=adapter,
        revision=revision,
        batch_tokens=batch_tokens,
        matmul=bf16_matmul,
        compile_mode=compile_mode,
        attention=attention,
        activation=activation,
    )
    options = EvalOptions(
        limit=limit,
        allow_data_mismatch=allow_data_mismatch,
        output=output,
        protocol=protocol,
        max_new_tokens=max_new_tokens,
        shots=shots,
    )
    started = time.time()
    with _progress() as progress:
        results = evaluate(selected, backend, options=options, reporter=RichReporter(progress))
    title = f"{model} ({dtype})" if protocol == "loglik" else f"{model} ({dtype}, {protocol})"
    if shots:
        title = f"{title[:-1]}, {shots}-shot)"
    out.print(results_table(results, title=title), soft_wrap=False)
    out.print(f"wall time {time.time() - started:.1f} s")
    if output is not None:
        out.print(f"results: {output / 'results.json'}")
    if record:
        from medboard.results.db import open_database
        from medboard.results.record import record_entry

        entry_id = record_entry(
            open_database(db),
            str(suite),
            results,
            backend.identity(),
            {"name": name},
            source=str(output or "medboard eval"),
            extra={"protocol": version},
        )
        out.print(f"recorded as entry {entry_id} on {suite}: /model/{entry_id}")


def _shifts(text: str) -> list[int]:
    try:
        shifts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise MedboardError(f"--permute takes shifts like 1,2,3, not '{text}'") from None
    if not shifts or min(shifts) < 1:
        raise MedboardError(f"--permute takes positive shifts like 1,2,3, not '{text}'")
    return shifts


def _pct(value: float, stderr: float) -> str:
    return f"{100 * value:.2f} ± {100 * stderr:.2f}"


def results_table(results: list[RunResult], title: str) -> Table:
    """acc (and acc_norm) per task; generative runs show the share of unparsed answers."""
    generative = any("unparsed" in r.scores for r in results)
    second = "unparsed (%)" if generative else "acc_norm (%)"
    table = Table(title=title)
    for column in ("task", "n", "acc (%)", second, "seconds"):
        table.add_column(column, justify="right" if column != "task" else "left")
    for result in results:
        acc = result.scores["acc"]
        other = result.scores.get("unparsed" if generative else "acc_norm")
        table.add_row(
            result.spec.task,
            str(result.n_samples),
            _pct(acc.value, acc.stderr),
            _pct(other.value, other.stderr) if other else "",
            f"{result.wall_seconds:.1f}",
        )
    averaged = [r for r in results if "@shift" not in r.spec.task]  # not permuted copies
    mean = sum(r.scores["acc"].value for r in averaged) / max(len(averaged), 1)
    table.add_section()
    table.add_row(f"mean of {len(averaged)} tasks", "", f"{100 * mean:.2f}", "", "")
    return table


def _register_board_commands() -> None:
    from medboard.cli_analysis import register as register_analysis
    from medboard.cli_board import register

    register(app)
    register_analysis(app)


_register_board_commands()


def main() -> None:
    """Entry point: a MedboardError is one line on stderr and exit code 1, no traceback."""
    try:
        app()
    except MedboardError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted: run the same command again to resume")
        sys.exit(130)
