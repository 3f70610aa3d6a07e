"""Commands that read finished evaluations: compare (paired tests of two models) and
contamination (n-gram overlap of the benchmarks with a training corpus)."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medboard.cli_options import AllowMismatch, message_console, utf8_located
from medboard.errors import DataError

out = message_console()


def read_output(folder: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(results.json, task -> sample records) of a `medboard eval --output` folder."""
    results_file = folder / "results.json"
    if not results_file.is_file():
        raise DataError(f"{folder} has no results.json: give a folder written by eval --output")
    summary = _read_json(results_file)
    if not isinstance(summary, dict) or not isinstance(summary.get("results", {}), dict):
        raise DataError(f"{results_file} is not a results.json written by eval --output")
    samples = {}
    for task in summary.get("results", {}):
        path = folder / f"samples_{task}.jsonl"
        if path.is_file():
            samples[task] = _read_samples(path)
    return summary, samples


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # invalid JSON, or bytes that are not UTF-8
        raise DataError(f"{path} is not valid JSON: {exc}") from None


def _read_samples(path: Path) -> list[dict[str, Any]]:
    """The sample records of a samples_<task>.jsonl; a bad line fails with its place."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise DataError(f"{path} is not UTF-8 text: {exc}") from None
    samples = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc})") from None
        if not isinstance(sample, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object (a sample record)")
        samples.append(sample)
    return samples


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The report as JSON at `path`; one line when it cannot be written there."""
    try:
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot write the report to {path}: {exc.strerror}") from None


def compare_outputs(
    first: Path, second: Path, n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per common task: both accuracies, the paired bootstrap difference and McNemar's test."""
    from medboard.leaderboard.analysis import paired_task

    _, samples_a = read_output(first)
    _, samples_b = read_output(second)
    tasks = [t for t in samples_a if t in samples_b]
    if not tasks:
        raise DataError(f"{first} and {second} have no task with samples in common")
    report: dict[str, Any] = {"a": str(first), "b": str(second), "tasks": {}}
    for task in tasks:
        found = paired_task(samples_a[task], samples_b[task], n_resamples, seed)
        if found is None:
            raise DataError(f"{task}: the two runs share no question id")
        report["tasks"][task] = found
    return report


def compare_command(
    first: Annotated[Path, typer.Argument(help="An eval --output folder (model A).")],
    second: Annotated[Path, typer.Argument(help="An eval --output folder (model B).")],
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.", min=100)] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
) -> None:
    """Paired comparison of two evaluations on the same questions: A - B with a 95% interval,
    the paired bootstrap p-value and McNemar's test, per task."""
    report = compare_outputs(first, second, resamples, seed)
    table = Table(title=f"A = {first}  B = {second}")
    for column in ("task", "n", "A (%)", "B (%)", "A - B (pt)", "95% interval", "p (bootstrap)"):
        table.add_column(column, justify="left" if column == "task" else "right")
    table.add_column("McNemar: A only / B only, p", justify="right")
    for task, row in report["tasks"].items():
        test = row["mcnemar"]
        low, high = row["interval"]
        table.add_row(
            task,
            str(row["n"]),
            f"{100 * row['acc_a']:.2f}",
            f"{100 * row['acc_b']:.2f}",
            f"{100 * row['difference']:+.2f}",
            f"{100 * low:+.2f} .. {100 * high:+.2f}",
            f"{row['p_bootstrap']:.4f}",
            f"{test['a_only']} / {test['b_only']}, {test['p_value']:.4f}"
            + (" (exact)" if test["exact"] else ""),
        )
    out.print(table, soft_wrap=False)
    if json_out is not None:
        write_report(json_out, report)
        out.print(f"report: {json_out}")


def contamination_command(
    corpus: Annotated[Path, typer.Argument(help="Training corpus: .jsonl or text lines.")],
    suite: Annotated[str | None, typer.Option(help="Suite to check.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated tasks.")] = None,
    field: Annotated[
        str | None, typer.Option(help="JSONL field holding the text (default: all strings).")
    ] = None,
    n: Annotated[int, typer.Option(help="Words per n-gram.", min=3)] = 8,
    min_ratio: Annotated[
        float, typer.Option(help="Flag an item when this share of its n-grams is found.")
    ] = 0.5,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
    allow_data_mismatch: AllowMismatch = False,
) -> None:
    """N-gram overlap of benchmark items with a training corpus, per task."""
    from medboard.checks import contamination_summary

    chosen = tasks or (None if suite else "open_medical")
    with utf8_located(corpus):
        summary = contamination_summary(
            corpus, suite, chosen, field, allow_data_mismatch, n=n, min_ratio=min_ratio
        )
    table = Table(title=f"{corpus}: {summary['distinct_ngrams']:,} distinct {n}-grams")
    for column in ("task", "items", "flagged", "share (%)", "too short", "examples"):
        table.add_column(column, justify="left" if column in ("task", "examples") else "right")
    for task, found in summary["tasks"].items():
        table.add_row(
            task,
            str(found["items"]),
            str(found["flagged"]),
            f"{100 * found['share']:.2f}",
            str(found["too_short"]),
            ", ".join(found["examples"]),
        )
    out.print(table, soft_wrap=False)
    if json_out is not None:
        write_report(json_out, summary)
        out.print(f"report: {json_out}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
    app.command("contamination")(contamination_command)
