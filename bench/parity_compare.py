"""Comparison for bench/parity.py: per-task deltas, agreement and criteria of two Runs, and the
report (JSON and markdown tables)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from parity_outputs import Run, Sample, TaskRun

from medboard.scoring.choice import argmax
from medboard.tasks import BUILTIN_TASKS

# Every medboard task has a reference config; the registry's order: the Open Medical-LLM
# Leaderboard's 9 tasks, then the others.
DEFAULT_TASKS = BUILTIN_TASKS

DELTA_THRESHOLD = 1e-3  # a choice "differs" above this |delta loglik|
F32_MAX_DELTA = 1e-3
F32_ACC_POINTS = 0.1
# Accuracy differences come from fractions: one question of 100 is 1.0000000000000009 points.
ROUNDING_POINTS = 1e-9
F32_AGREEMENT = 99.5  # percent
MAX_LISTED = 30  # disagreements printed (all of them go to the JSON report)


def _beyond(diff: float | None, limit: float) -> bool:
    """Whether an accuracy difference (points) is missing or over `limit`, up to rounding."""
    return diff is None or abs(diff) > limit + ROUNDING_POINTS


# ---------------------------------------------------------------------------------------------
# Comparison


def lmeval_predictions(logprobs: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(pred, pred_norm) as lm-eval's multiple_choice process_results computes them."""
    if len(logprobs) != len(choices):
        raise ValueError(f"{len(logprobs)} log-likelihoods for {len(choices)} choices")
    return argmax(logprobs), argmax(_normalized(logprobs, choices))


def _normalized(logprobs: Sequence[float], choices: Sequence[str]) -> list[float]:
    """acc_norm's scores: each log-likelihood divided by its choice's length in characters."""
    return [lp / float(len(c)) for lp, c in zip(logprobs, choices, strict=True)]


def top_two_gap(values: Sequence[float]) -> float:
    """Distance between the largest and the second largest value (inf with fewer than two)."""
    ordered = sorted(values, reverse=True)
    return ordered[0] - ordered[1] if len(ordered) > 1 else math.inf


@dataclass
class Disagreement:
    id: str
    kind: str  # "acc" (argmax) or "acc_norm"
    pred_a: int
    pred_b: int
    gold: int | None
    gap: float  # top-two gap of side A's (the reference's) scores for that kind


@dataclass
class TaskComparison:
    task: str
    n_a: int
    n_b: int
    n_matched: int
    only_a: list[str]
    only_b: list[str]
    n_choices: int
    max_abs_delta: float
    sum_abs_delta: float
    n_delta_over: int  # choices with |delta| > DELTA_THRESHOLD
    choice_count_mismatch: list[str]
    gold_mismatch: list[str]
    inconsistent_a: list[str]  # A's reported acc/acc_norm differ from its recomputed predictions
    reported: dict[str, float | None]  # the tools' results-file scores (over all their samples)
    acc_a: float | None
    acc_b: float | None
    acc_norm_a: float | None
    acc_norm_b: float | None
    agree: int
    agree_norm: int
    disagreements: list[Disagreement]
    failures: list[str] = field(default_factory=list)

    @property
    def mean_abs_delta(self) -> float:
        return self.sum_abs_delta / self.n_choices if self.n_choices else 0.0

    @property
    def acc_diff_points(self) -> float | None:
        return _diff_points(self.acc_a, self.acc_b)

    @property
    def acc_norm_diff_points(self) -> float | None:
        return _diff_points(self.acc_norm_a, self.acc_norm_b)

    @property
    def agreement(self) -> float | None:
        return 100.0 * self.agree / self.n_matched if self.n_matched else None

    @property
    def agreement_norm(self) -> float | None:
        return 100.0 * self.agree_norm / self.n_matched if self.n_matched else None

    @property
    def has_norm(self) -> bool:
        return self.acc_norm_a is not None and self.acc_norm_b is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n_a": self.n_a,
            "n_b": self.n_b,
            "n_matched": self.n_matched,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "n_choices": self.n_choices,
            "max_abs_delta": self.max_abs_delta,
            "mean_abs_delta": self.mean_abs_delta,
            "n_delta_over_1e-3": self.n_delta_over,
            "choice_count_mismatch": self.choice_count_mismatch,
            "gold_mismatch": self.gold_mismatch,
            "inconsistent_a": self.inconsistent_a,
            "reported": self.reported,
            "acc_a": self.acc_a,
            "acc_b": self.acc_b,
            "acc_diff_points": self.acc_diff_points,
            "acc_norm_a": self.acc_norm_a,
            "acc_norm_b": self.acc_norm_b,
            "acc_norm_diff_points": self.acc_norm_diff_points,
            "agreement_pct": self.agreement,
            "agreement_norm_pct": self.agreement_norm if self.has_norm else None,
            "disagreements": [d.__dict__ for d in self.disagreements],
            "failures": self.failures,
            "ok": not self.failures,
        }


def _diff_points(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else 100.0 * (b - a)


def _predictions(sample: Sample, choices: Sequence[str] | None) -> tuple[int, int | None]:
    """The tool's own (pred, pred_norm) if it reported them, else lm-eval's from the logprobs."""
    if sample.pred is not None:
        return sample.pred, sample.pred_norm
    if choices is None or len(choices) != len(sample.logprobs):
        return argmax(sample.logprobs), None
    return lmeval_predictions(sample.logprobs, choices)


def compare_task(a: TaskRun, b: TaskRun) -> TaskComparison:
    """Compare side A (the reference) with side B (medboard, or another reference run).

    Predictions: a side's reported pred/pred_norm if any, else recomputed lm-eval style from its
    log-likelihoods with the choice strings of B (medboard's `choices`), else of A.
    """
    matched = [sid for sid in a.samples if sid in b.samples]
    comparison = TaskComparison(
        task=a.task,
        n_a=len(a.samples),
        n_b=len(b.samples),
        n_matched=len(matched),
        only_a=sorted(set(a.samples) - set(b.samples)),
        only_b=sorted(set(b.samples) - set(a.samples)),
        n_choices=0,
        max_abs_delta=0.0,
        sum_abs_delta=0.0,
        n_delta_over=0,
        choice_count_mismatch=[],
        gold_mismatch=[],
        inconsistent_a=[],
        reported={
            "acc_a": a.acc,
            "acc_b": b.acc,
            "acc_norm_a": a.acc_norm,
            "acc_norm_b": b.acc_norm,
        },
        acc_a=a.metric("acc", matched),
        acc_b=b.metric("acc", matched),
        acc_norm_a=a.metric("acc_norm", matched),
        acc_norm_b=b.metric("acc_norm", matched),
        agree=0,
        agree_norm=0,
        disagreements=[],
    )
    for sid in matched:
        sa, sb = a.samples[sid], b.samples[sid]
        if len(sa.logprobs) != len(sb.logprobs):
            comparison.choice_count_mismatch.append(sid)
            continue
        for la, lb in zip(sa.logprobs, sb.logprobs, strict=True):
            delta = abs(la - lb)
            if math.isnan(delta):
                delta = math.inf
            comparison.n_choices += 1
            comparison.sum_abs_delta += delta
            comparison.max_abs_delta = max(comparison.max_abs_delta, delta)
            comparison.n_delta_over += delta > DELTA_THRESHOLD
        if sa.gold is not None and sb.gold is not None and sa.gold != sb.gold:
            comparison.gold_mismatch.append(sid)
        choices = sb.choices or sa.choices
        pred_a, norm_a = _predictions(sa, choices)
        pred_b, norm_b = _predictions(sb, choices)
        gold = sb.gold if sb.gold is not None else sa.gold
        if gold is not None and (
            (sa.acc is not None and sa.acc != float(pred_a == gold))
            or (
                sa.acc_norm is not None
                and norm_a is not None
                and sa.acc_norm != float(norm_a == gold)
            )
        ):
            comparison.inconsistent_a.append(sid)
        if pred_a == pred_b:
            comparison.agree += 1
        else:
            comparison.disagreements.append(
                Disagreement(sid, "acc", pred_a, pred_b, gold, top_two_gap(sa.logprobs))
            )
        if norm_a is not None and norm_a == norm_b:
            comparison.agree_norm += 1
        elif norm_a is not None and norm_b is not None and choices is not None:
            gap = top_two_gap(_normalized(sa.logprobs, choices))
            comparison.disagreements.append(
                Disagreement(sid, "acc_norm", norm_a, norm_b, gold, gap)
            )
    return comparison


def check_task(c: TaskComparison, criteria: str, tolerance: float) -> list[str]:
    """The failed criteria of one task ("float32", "lowp" or "ref-vs-ref")."""
    failures: list[str] = []
    acc_diff = c.acc_diff_points
    if c.only_a or c.only_b or c.n_matched == 0:
        # Also in the low-precision modes: different sample sets mean a misconfigured run.
        failures.append(
            f"samples differ: {len(c.only_a)} only in A, {len(c.only_b)} only in B, "
            f"{c.n_matched} matched"
        )
    if criteria == "float32":
        if c.choice_count_mismatch:
            failures.append(f"{len(c.choice_count_mismatch)} samples with other choice counts")
        if c.gold_mismatch:
            failures.append(f"{len(c.gold_mismatch)} samples with another gold label")
        if c.inconsistent_a:
            failures.append(
                f"{len(c.inconsistent_a)} samples where A's own acc/acc_norm disagree with its "
                "predictions recomputed from the log-likelihoods and B's choices"
            )
        if not c.max_abs_delta <= F32_MAX_DELTA:
            failures.append(f"max |delta loglik| {c.max_abs_delta:.3g} > {F32_MAX_DELTA:g}")
        if _beyond(acc_diff, F32_ACC_POINTS):
            failures.append(f"acc differs by {_fmt_signed(acc_diff)} points > {F32_ACC_POINTS}")
        if c.agreement is None or c.agreement < F32_AGREEMENT:
            failures.append(f"prediction agreement {_fmt(c.agreement)}% < {F32_AGREEMENT}%")
        norm = c.agreement_norm
        if c.has_norm and (norm is None or norm < F32_AGREEMENT):
            failures.append(f"acc_norm prediction agreement {_fmt(norm)}% < {F32_AGREEMENT}%")
    elif _beyond(acc_diff, tolerance):
        failures.append(f"acc differs by {_fmt_signed(acc_diff)} points > {tolerance}")
    return failures


@dataclass
class Report:
    mode: str  # "medboard-vs-ref" or "ref-vs-ref"
    criteria: str
    tolerance: float
    a: Run
    b: Run
    tasks: list[TaskComparison]
    missing: dict[str, list[str]]
    total: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        found = [f"{c.task}: {f}" for c in self.tasks for f in c.failures]
        found += [f"total: {f}" for f in self.total.get("failures", [])]
        if self.missing["only_a"] or self.missing["only_b"]:
            found.append(f"tasks not in both outputs: {self.missing}")
        if not self.tasks:
            found.append("no task in both outputs")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "criteria": self.criteria,
            "tolerance_points": self.tolerance,
            "a": {"tool": self.a.tool, "folder": self.a.folder, "dtype": self.a.dtype},
            "b": {"tool": self.b.tool, "folder": self.b.folder, "dtype": self.b.dtype},
            "thresholds": {
                "delta": DELTA_THRESHOLD,
                "f32_max_delta": F32_MAX_DELTA,
                "f32_acc_points": F32_ACC_POINTS,
                "f32_agreement_pct": F32_AGREEMENT,
            },
            "tasks": {c.task: c.to_json() for c in self.tasks},
            "total": self.total,
            "missing_tasks": self.missing,
            "failures": self.failures,
            "ok": not self.failures,
        }


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present and len(present) == len(values) else None


def total_of(tasks: Sequence[TaskComparison]) -> dict[str, Any]:
    """Pooled deltas and agreement over every sample; acc as the mean over tasks of each side."""
    n_matched = sum(c.n_matched for c in tasks)
    n_choices = sum(c.n_choices for c in tasks)
    norm_tasks = [c for c in tasks if c.has_norm]
    acc_a = _mean([c.acc_a for c in tasks])
    acc_b = _mean([c.acc_b for c in tasks])
    norm_a = _mean([c.acc_norm_a for c in norm_tasks]) if norm_tasks else None
    norm_b = _mean([c.acc_norm_b for c in norm_tasks]) if norm_tasks else None
    n_norm = sum(c.n_matched for c in norm_tasks)
    gaps = [d.gap for c in tasks for d in c.disagreements]
    return {
        "tasks": len(tasks),
        "n_matched": n_matched,
        "n_choices": n_choices,
        "max_abs_delta": max((c.max_abs_delta for c in tasks), default=0.0),
        "mean_abs_delta": sum(c.sum_abs_delta for c in tasks) / n_choices if n_choices else 0.0,
        "n_delta_over_1e-3": sum(c.n_delta_over for c in tasks),
        "acc_a": acc_a,
        "acc_b": acc_b,
        "acc_diff_points": _diff_points(acc_a, acc_b),
        "acc_norm_a": norm_a,
        "acc_norm_b": norm_b,
        "acc_norm_diff_points": _diff_points(norm_a, norm_b),
        "agreement_pct": 100.0 * sum(c.agree for c in tasks) / n_matched if n_matched else None,
        "agreement_norm_pct": (
            100.0 * sum(c.agree_norm for c in norm_tasks) / n_norm if n_norm else None
        ),
        "disagreements": len(gaps),
        "max_disagreement_gap": max(gaps) if gaps else None,
        "failures": [],
    }


def compare_runs(
    a: Run, b: Run, criteria: str, tolerance: float, tasks: Sequence[str] | None = None
) -> Report:
    """Compare every task present in both runs (or the given tasks) and apply the criteria."""
    wanted = list(tasks) if tasks else sorted(set(a.tasks) | set(b.tasks), key=_task_order)
    missing = {
        "only_a": [t for t in wanted if t in a.tasks and t not in b.tasks],
        "only_b": [t for t in wanted if t in b.tasks and t not in a.tasks],
        "neither": [t for t in wanted if t not in a.tasks and t not in b.tasks],
    }
    comparisons = []
    for task in wanted:
        if task in a.tasks and task in b.tasks:
            comparison = compare_task(a.tasks[task], b.tasks[task])
            comparison.failures = check_task(comparison, criteria, tolerance)
            comparisons.append(comparison)
    mode = "ref-vs-ref" if b.tool == a.tool else "medboard-vs-ref"
    report = Report(mode, criteria, tolerance, a, b, comparisons, missing)
    report.total = total_of(comparisons)
    diff = report.total["acc_diff_points"]
    limit = F32_ACC_POINTS if criteria == "float32" else tolerance
    if comparisons and _beyond(diff, limit):
        report.total["failures"].append(f"mean acc differs by {_fmt_signed(diff)} > {limit}")
    return report


def _task_order(task: str) -> tuple[int, str]:
    return (DEFAULT_TASKS.index(task) if task in DEFAULT_TASKS else len(DEFAULT_TASKS), task)


def criteria_for(dtype: str | None, ref_vs_ref: bool) -> str:
    if ref_vs_ref:
        return "ref-vs-ref"
    return "float32" if dtype in (None, "float32", "fp32") else "lowp"


# ---------------------------------------------------------------------------------------------
# Output


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fmt_signed(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _score_header(a: str, b: str) -> list[str]:
    return [f"acc {a}", f"acc {b}", "Δacc (pt)", f"norm {a}", f"norm {b}", "Δnorm (pt)"]


def _score_cells(
    acc_a: float | None, acc_b: float | None, norm_a: float | None, norm_b: float | None
) -> list[str]:
    """Both sides' acc and acc_norm with their differences; acc_norm only if both sides have it."""
    if norm_a is None or norm_b is None:
        norm_a = norm_b = None
    return [
        _pct(acc_a),
        _pct(acc_b),
        _fmt_signed(_diff_points(acc_a, acc_b)),
        _pct(norm_a),
        _pct(norm_b),
        _fmt_signed(_diff_points(norm_a, norm_b)),
    ]


def markdown_table(report: Report) -> str:
    """One row per task plus a total row."""
    a_name, b_name = ("A", "B") if report.mode == "ref-vs-ref" else ("ref", "mb")
    header = ["task", "n", "max abs Δ", "mean abs Δ", "Δ>1e-3", *_score_header(a_name, b_name)]
    header += ["agree %", "agree norm %", "disagree (max gap)", "ok"]
    lines = [_row(header), _row(["---"] * len(header))]

    def disagree_cell(count: int, gaps: Sequence[float]) -> str:
        return f"{count} ({max(gaps):.2g})" if count else "0"

    for c in report.tasks:
        gaps = [d.gap for d in c.disagreements]
        lines.append(
            _row(
                [
                    c.task,
                    str(c.n_matched),
                    _sci(c.max_abs_delta),
                    _sci(c.mean_abs_delta),
                    str(c.n_delta_over),
                    *_score_cells(c.acc_a, c.acc_b, c.acc_norm_a, c.acc_norm_b),
                    _fmt(c.agreement, 1),
                    _fmt(c.agreement_norm, 1) if c.has_norm else "-",
                    disagree_cell(len(gaps), gaps),
                    "yes" if not c.failures else "NO",
                ]
            )
        )
    t = report.total
    gaps = [d.gap for c in report.tasks for d in c.disagreements]
    lines.append(
        _row(
            [
                f"**total ({t['tasks']} tasks)**",
                str(t["n_matched"]),
                _sci(t["max_abs_delta"]),
                _sci(t["mean_abs_delta"]),
                str(t["n_delta_over_1e-3"]),
                *_score_cells(t["acc_a"], t["acc_b"], t["acc_norm_a"], t["acc_norm_b"]),
                _fmt(t["agreement_pct"], 1),
                _fmt(t["agreement_norm_pct"], 1),
                disagree_cell(len(gaps), gaps),
                "yes" if not report.failures else "NO",
            ]
        )
    )
    return "\n".join(lines)


def ref_vs_ref_table(report: Report) -> str:
    """Per-task acc of both reference runs and the difference (plus the loglik spread)."""
    header = ["task", "n", *_score_header("A", "B"), "max abs Δ", "agree %"]
    lines = [_row(header), _row(["---"] * len(header))]
    for c in report.tasks:
        scores = _score_cells(c.acc_a, c.acc_b, c.acc_norm_a, c.acc_norm_b)
        cells = [c.task, str(c.n_matched), *scores, _sci(c.max_abs_delta), _fmt(c.agreement, 1)]
        lines.append(_row(cells))
    t = report.total
    scores = _score_cells(t["acc_a"], t["acc_b"], t["acc_norm_a"], t["acc_norm_b"])
    cells = [f"**mean ({t['tasks']} tasks)**", str(t["n_matched"]), *scores]
    cells += [_sci(t["max_abs_delta"]), _fmt(t["agreement_pct"], 1)]
    lines.append(_row(cells))
    return "\n".join(lines)


def render_report(report: Report) -> str:
    a, b = report.a, report.b
    lines = [
        f"A: {a.tool} {a.folder} (dtype {a.dtype or '?'})",
        f"B: {b.tool} {b.folder} (dtype {b.dtype or '?'})",
        f"criteria: {report.criteria}"
        + ("" if report.criteria == "float32" else f" (tolerance {report.tolerance} points)"),
        "",
        ref_vs_ref_table(report) if report.mode == "ref-vs-ref" else markdown_table(report),
        "",
        "acc in % over the matched samples, Δ = B - A; total acc = mean over tasks; deltas and "
        "agreement pooled over samples; gap = top-two distance of A's log-likelihoods "
        "(length-normalized, for acc_norm).",
    ]
    listed = [(c.task, d) for c in report.tasks for d in c.disagreements]
    for task, d in listed[:MAX_LISTED]:
        lines.append(
            f"  {task} {d.id} {d.kind}: A picks {d.pred_a}, B picks {d.pred_b} "
            f"(gold {d.gold}), A's top-two gap {d.gap:.3g}"
        )
    if len(listed) > MAX_LISTED:
        lines.append(f"  ... {len(listed) - MAX_LISTED} more disagreements in the JSON report")
    if any(report.missing.values()):
        lines.append(f"tasks missing: {report.missing}")
    failures = report.failures
    lines.append("FAILED:\n  " + "\n  ".join(failures) if failures else "all criteria met")
    return "\n".join(lines)
