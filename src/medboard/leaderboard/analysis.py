"""Beyond one accuracy per task: intervals, calibration, robustness and parse failures of an
entry, and rank intervals across a board, all computed from the stored per-question records.

Everything here reads sample records (the lines of a run's samples.jsonl) and returns plain
JSON-ready dicts, so the model page, its JSON twin and the CLI show the same numbers.

- Intervals: percentile bootstrap over questions (seeded, so a page shows the same interval on
  every load); the average's interval resamples each task's questions independently.
- Calibration needs the choices' log-likelihoods, so it exists for `loglik` runs only.
- Robustness pairs a task's run with the runs of its permuted copies (`task@shiftK`, see
  medboard.tasks.permute) when the entry has them.
- Rank intervals need every ranked model's answers on the same questions: entries without
  per-question records (published tables) or on other questions (a --limit run) are left out
  and listed as such.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from medboard.scoring.calibration import calibration
from medboard.scoring.robustness import robustness
from medboard.scoring.uncertainty import (
    Interval,
    average_ci,
    bootstrap_ci,
    mcnemar,
    paired_bootstrap,
    rank_intervals,
)

Records = Sequence[Mapping[str, Any]]
SHIFT_MARK = "@shift"
N_RESAMPLES = 1000
SEED = 0


def correct(record: Mapping[str, Any]) -> float:
    """1.0 when the record's answer is right (`acc`, else pred == gold)."""
    if record.get("acc") is not None:
        return float(record["acc"])
    pred = record.get("pred")
    return float(pred is not None and pred == record.get("gold"))


def _interval(found: Interval) -> dict[str, float]:
    return {"low": found.low, "high": found.high, "point": found.point, "level": found.level}


def split_shift(task: str) -> tuple[str, int | None]:
    """('medqa_4options', 2) for 'medqa_4options@shift2'; (task, None) for a plain task."""
    base, mark, shift = task.partition(SHIFT_MARK)
    if mark and shift.isdigit():
        return base, int(shift)
    return task, None


def _has_logprobs(records: Records) -> bool:
    return all(
        isinstance(r.get("logprobs"), list)
        and r["logprobs"]
        and len(r["logprobs"]) == len(r.get("choices") or [])
        for r in records
    )


def _calibration(records: Records) -> dict[str, Any]:
    found = calibration(records)
    result = asdict(found)
    result["bins"] = [asdict(b) for b in found.bins]
    return result


def _unparsed(records: Records) -> dict[str, Any] | None:
    if not any("parsed" in r for r in records):
        return None
    missed = sum(1 for r in records if not r.get("parsed", True))
    return {"n": len(records), "unparsed": missed, "share": missed / len(records)}


def entry_analysis(
    records_by_task: Mapping[str, Records],
    track_tasks: Sequence[str] = (),
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Intervals, calibration, robustness and unparsed counts of one entry's runs."""
    plain = {t: r for t, r in records_by_task.items() if r and split_shift(t)[1] is None}
    values = {t: [correct(r) for r in records] for t, records in plain.items()}
    intervals = {
        t: _interval(bootstrap_ci(v, n_resamples=n_resamples, seed=seed)) for t, v in values.items()
    }
    average = None
    if track_tasks and all(t in values for t in track_tasks):
        found = average_ci({t: values[t] for t in track_tasks}, n_resamples=n_resamples, seed=seed)
        average = _interval(found)
    calibrations = {t: _calibration(r) for t, r in plain.items() if _has_logprobs(r)}
    shifted: dict[str, dict[int, Records]] = {}
    for task, records in records_by_task.items():
        base, shift = split_shift(task)
        if shift is not None and records and base in plain:
            shifted.setdefault(base, {})[shift] = records
    robust = {}
    for base, by_shift in shifted.items():
        found_r = robustness(plain[base], by_shift)
        robust[base] = {
            "n": found_r.n,
            "accuracy": found_r.accuracy,
            "accuracy_by_shift": {str(k): v for k, v in found_r.accuracy_by_shift.items()},
            "mean_permuted_accuracy": found_r.mean_permuted_accuracy,
            "drop": found_r.accuracy - found_r.mean_permuted_accuracy,
            "flip_rate": found_r.flip_rate,
            "flipped": len(found_r.flipped_ids),
            "pred_letters": dict(found_r.pred_letters),
            "gold_letters": dict(found_r.gold_letters),
        }
    unparsed = {t: u for t, r in plain.items() if (u := _unparsed(r)) is not None}
    return {
        "method": f"percentile bootstrap over questions, {n_resamples} resamples, seed {seed}",
        "intervals": intervals,
        "average": average,
        "calibration": calibrations,
        "robustness": robust,
        "unparsed": unparsed,
    }


def _common_ids(id_lists: Sequence[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The question set most entries were scored on (ties: the largest set)."""
    if not id_lists:
        return None
    counts = Counter(id_lists)
    return max(counts, key=lambda ids: (counts[ids], len(ids)))


def board_rank_intervals(
    entries: Mapping[str, Mapping[str, Records]],
    tasks: Sequence[str],
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Rank intervals of the entries (label -> task -> records) scored on the same questions.

    Returns {"ranks": {label: {rank, low, high, p_vs_leader, indistinguishable}}, "leader",
    "excluded": {label: reason}, "method"}. Fewer than two comparable entries: no ranks.
    """
    excluded: dict[str, str] = {}
    ordered: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for name, by_task in entries.items():
        missing = [t for t in tasks if not by_task.get(t)]
        if missing:
            excluded[name] = f"no per-question records for {', '.join(missing)}"
            continue
        ordered[name] = {t: sorted(by_task[t], key=lambda r: str(r.get("id"))) for t in tasks}
    common = {
        t: _common_ids([tuple(str(r.get("id")) for r in ordered[n][t]) for n in ordered])
        for t in tasks
    }
    values: dict[str, dict[str, list[float]]] = {}
    for name, by_task in ordered.items():
        other = [t for t in tasks if tuple(str(r.get("id")) for r in by_task[t]) != common[t]]
        if other:
            excluded[name] = f"scored on other questions than the rest for {', '.join(other)}"
            continue
        values[name] = {t: [correct(r) for r in by_task[t]] for t in tasks}
    method = (
        f"paired percentile bootstrap over questions ({n_resamples} resamples, seed {seed}); "
        "indistinguishable: paired test against the leader not significant at 0.05"
    )
    if len(values) < 2:
        return {"ranks": {}, "leader": None, "excluded": excluded, "method": method}
    found = rank_intervals(values, n_resamples=n_resamples, seed=seed)
    ranks = {
        r.model: {
            "rank": r.rank,
            "low": r.low,
            "high": r.high,
            "average": r.average,
            "p_vs_leader": r.p_vs_leader,
            "indistinguishable": r.model in found.indistinguishable,
        }
        for r in found.ranks
    }
    return {"ranks": ranks, "leader": found.leader, "excluded": excluded, "method": method}


def paired_task(
    a: Records, b: Records, n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> dict[str, Any] | None:
    """A - B on the questions both answered (matched by id): both accuracies, the paired
    bootstrap difference with its 95% interval and p-value, McNemar's test. None: no overlap."""
    by_id = {str(r.get("id")): r for r in b}
    common = [r for r in a if str(r.get("id")) in by_id]
    if not common:
        return None
    x = [correct(r) for r in common]
    y = [correct(by_id[str(r.get("id"))]) for r in common]
    paired = paired_bootstrap(x, y, n_resamples=n_resamples, seed=seed)
    test = mcnemar(x, y)
    return {
        "n": len(x),
        "acc_a": sum(x) / len(x),
        "acc_b": sum(y) / len(y),
        "difference": paired.difference,
        "interval": [paired.interval.low, paired.interval.high],
        "p_bootstrap": paired.p_value,
        "mcnemar": asdict(test),
    }
