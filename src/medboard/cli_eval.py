"""`medboard eval`: a model spec on tasks, with progress bars, a results table and, with
--record, an entry on a track (medboard.evaluation, the path the workers take too)."""

import math
import os
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

from medboard.cli_options import (
    DbOption,
    DeviceOption,
    ModelArgs,
    backend_args,
    message_console,
)
from medboard.errors import MedboardError
from medboard.results.schema import RunResult

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

    def where(self) -> str:
        """' at TASK N/TOTAL (the answers so far are kept)' while a task runs, else ''."""
        if self.current is None:
            return ""
        task = self.progress.tasks[self.current]
        return f" at {task.description} {task.completed:.0f}/{task.total:.0f} (answers so far kept)"

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
    rate = f"{task.speed:.1f}" if task.speed else "-"  # no rate until a batch has finished
    eta = task.fields.get("eta")
    left = "?" if eta is None else f"{eta} s"
    return f"{task.description}: {done}/{total} ({rate} q/s, ETA {left})"


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


def _legacy(name: str, key: str) -> Any:
    """A hidden option that the first releases had for a backend argument (-M KEY=...)."""
    return typer.Option(name, hidden=True, help=f"Old spelling of -M {key}=...")


ModelOption = Annotated[
    str,
    typer.Option(
        help="The model: a directory, .gguf file or Hub id (transformers), 'fake', or "
        "BACKEND:MODEL (see `medboard backends`)."
    ),
]
DtypeOption = Annotated[str | None, typer.Option(help="float32 (default), bfloat16 or float16.")]
SuiteOption = Annotated[
    str | None, typer.Option(help="A suite or track, e.g. open_medical (`medboard tasks`).")
]
TasksOption = Annotated[
    str | None, typer.Option(help="Comma-separated tasks (a subset of --suite).")
]
LimitOption = Annotated[
    int | None, typer.Option(help="Only the first N questions per task.", min=1)
]
ProtocolOption = Annotated[
    str,
    typer.Option(
        help="loglik (choice log-likelihood), flowertune (FlowerTune's generative "
        "evaluation, faithful: leaks the gold answer's length), generative or cot."
    ),
]
ShotsOption = Annotated[
    int, typer.Option(help="Few-shot examples (loglik; the MMLU subjects).", min=0)
]
PermuteOption = Annotated[
    str | None, typer.Option(help="Also with the options rotated by these shifts (e.g. 1,2,3).")
]
OutputOption = Annotated[Path | None, typer.Option(help="Folder for results.json and the samples.")]
RecordOption = Annotated[
    bool, typer.Option("--record", help="Store the results as an entry on the --suite track.")
]
NameOption = Annotated[str, typer.Option(help="With --record: the entry's name (default: MODEL).")]
BudgetOption = Annotated[
    int | None, typer.Option(hidden=True, help="A generative protocol's budget.", min=1)
]
HiddenMismatch = Annotated[bool, typer.Option("--allow-data-mismatch", hidden=True)]


def eval_command(
    model: ModelOption,
    model_arg: ModelArgs = None,
    dtype: DtypeOption = None,
    device: DeviceOption = None,
    suite: SuiteOption = None,
    tasks: TasksOption = None,
    limit: LimitOption = None,
    protocol: ProtocolOption = "loglik",
    shots: ShotsOption = 0,
    permute: PermuteOption = None,
    output: OutputOption = None,
    record: RecordOption = False,
    name: NameOption = "",
    db: DbOption = None,
    max_new_tokens: BudgetOption = None,
    allow_data_mismatch: HiddenMismatch = False,
    adapter: Annotated[str | None, _legacy("--adapter", "adapter")] = None,
    revision: Annotated[str | None, _legacy("--revision", "revision")] = None,
    batch_tokens: Annotated[int | None, _legacy("--batch-tokens", "batch_tokens")] = None,
    compile_mode: Annotated[str | None, _legacy("--compile", "compile")] = None,
    attention: Annotated[str | None, _legacy("--attention", "attention")] = None,
    activation: Annotated[str | None, _legacy("--activation", "activation")] = None,
    bf16_matmul: Annotated[str | None, _legacy("--bf16-matmul", "bf16_matmul")] = None,
) -> None:
    """Evaluate a model; ends with a table of acc ± stderr per task and the mean over tasks."""
    from medboard.backends import registry
    from medboard.evaluation import evaluate_spec
    from medboard.runner import EvalOptions
    from medboard.tasks import REGISTRY
    from medboard.tasks.protocols import protocol_version

    version = protocol_version(protocol, max_new_tokens)  # fails before the model loads
    args = backend_args(
        model_arg, dtype=dtype, device=device, adapter=adapter, revision=revision,
        batch_tokens=batch_tokens, compile=compile_mode, attention=attention,
        activation=activation, bf16_matmul=bf16_matmul,
    )  # fmt: skip
    spec = registry.resolve(model, args)
    selected = REGISTRY.resolve(suite, tasks)
    name = _entry_name(record, suite, name, model, shots, protocol)
    if permute:
        selected = _permuted(selected, permute)
    registry.check(spec)  # a missing package or device: one line before any work
    options = EvalOptions(
        limit=limit, allow_data_mismatch=allow_data_mismatch, output=output, protocol=protocol,
        max_new_tokens=max_new_tokens, shots=shots,
    )  # fmt: skip
    started = time.time()
    progress = _progress()
    reporter = RichReporter(progress)
    try:
        with progress:
            evaluated = evaluate_spec(spec, selected, options, reporter)
    except KeyboardInterrupt:  # typer would turn it into exit code 130 and say nothing
        line = f"interrupted{reporter.where()}: run the same command again to resume"
        console.print(line, soft_wrap=True)
        raise typer.Exit(130) from None
    shown = ", ".join([str(evaluated.identity["dtype"])] + [protocol] * (protocol != "loglik"))
    title = f"{model} ({shown}{f', {shots}-shot' if shots else ''})"
    out.print(results_table(evaluated.results, title=title), soft_wrap=False)
    out.print(f"wall time {time.time() - started:.1f} s")
    if output is not None:
        out.print(f"results: {output / 'results.json'}")
    if record:
        from medboard.results.db import open_database

        source = str(output or "medboard eval")
        entry_id = evaluated.record(
            open_database(db), str(suite), {"name": name}, source, extra={"protocol": version}
        )
        out.print(f"recorded as entry {entry_id} on {suite}: /model/{entry_id}")


def _entry_name(
    record: bool, suite: str | None, name: str, model: str, shots: int, protocol: str
) -> str:
    """What --record, --name and --shots ask is possible (checked before any work); the name
    of the entry --record stores."""
    from medboard.tasks import TRACKS

    if record and suite not in TRACKS:
        raise MedboardError(f"--record needs --suite set to a track ({', '.join(TRACKS)})")
    if name.strip() and not record:
        raise MedboardError("--name names the entry --record stores: give --record too")
    name = name.strip() or model
    if record:
        from medboard.queue.submissions import check_field

        check_field("name", name)  # the models table's limit, checked before the evaluation
    if shots and protocol != "loglik":
        raise MedboardError("--shots works with the loglik protocol only")
    if shots and record:
        raise MedboardError("--record stores zero-shot runs only: the tracks are zero-shot")
    return name


def _permuted(selected: list[Any], permute: str) -> list[Any]:
    """The tasks with their rotated copies (--permute); says which cannot be rotated."""
    from medboard.tasks.permute import with_permutations

    selected, skipped = with_permutations(selected, _shifts(permute))
    for reason in skipped:
        out.print(f"[yellow]not permuted[/]: {reason}")
    return selected


def _shifts(text: str) -> list[int]:
    try:
        shifts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise MedboardError(f"--permute takes shifts like 1,2,3, not '{text}'") from None
    if not shifts or min(shifts) < 1:
        raise MedboardError(f"--permute takes positive shifts like 1,2,3, not '{text}'")
    return shifts


def _pct(value: float, stderr: float) -> str:
    """A share in percent with its standard error (none shown where it is undefined: n < 2)."""
    if math.isnan(stderr):
        return f"{100 * value:.2f}"
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
    tasks = f"{len(averaged)} task" + "s" * (len(averaged) != 1)
    table.add_row(f"mean of {tasks}", "", f"{100 * mean:.2f}", "", "")
    benchmarks = benchmark_means(averaged)
    if len(benchmarks) < len(averaged):  # a benchmark of several subjects: the board's average
        board = sum(benchmarks.values()) / len(benchmarks)
        table.add_row(f"mean of {len(benchmarks)} benchmarks", "", f"{100 * board:.2f}", "", "")
    return table


def benchmark_means(results: list[RunResult]) -> dict[str, float]:
    """acc per benchmark: a benchmark's subjects weighted by their questions (as the board)."""
    from medboard.tasks import REGISTRY, UnknownTaskError

    sums: dict[str, tuple[float, int]] = {}
    for result in results:
        try:
            name = REGISTRY.task(result.spec.task).benchmark
        except UnknownTaskError:
            name = result.spec.task
        total, count = sums.get(name, (0.0, 0))
        n = max(result.n_samples, 1)
        sums[name] = (total + n * result.scores["acc"].value, count + n)
    return {name: total / count for name, (total, count) in sums.items()}


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
