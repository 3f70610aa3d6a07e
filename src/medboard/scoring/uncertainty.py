"""How sure a score is: confidence intervals, paired comparisons and rank intervals.

A leaderboard that ranks 0.612 above 0.608 on 1273 questions claims more than its data holds.
These functions say how much the numbers would move on another draw of questions, and which
models are not told apart by the benchmark.

Choices made here, and why:
- Intervals are percentile bootstraps over questions: no normality assumption, the same method
  for one task, for the mean of task means and for ranks. A resample is drawn as multinomial
  counts (how often each question is picked), so many models are scored on the same resample by
  one matrix product. Everything is seeded and deterministic.
- A task's resamples come from a generator seeded with (seed, the task's name), so a task is
  resampled the same way whichever other tasks are present.
- Paired bootstrap p-values shift the bootstrap distribution of the mean difference to the null:
  p = (1 + #{|d* - d| >= |d|}) / (B + 1), two-sided, never 0.
- McNemar's test is exact (binomial, two-sided) when the discordant pairs are fewer than 25, the
  usual rule of thumb below which the chi-square approximation is poor; otherwise chi-square with
  continuity correction. Tails are computed with the math module (no scipy).
- Analytic intervals (Wilson, normal) are offered for comparison with the bootstrap.
- A model is statistically indistinguishable from the leader when the paired bootstrap test of
  their averages (same resampled questions for both) is not significant at `alpha`.
"""

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

EXACT_BELOW = 25  # discordant pairs below which McNemar's test is exact
_CHUNK = 256  # resamples drawn at once: bounds memory at _CHUNK x n counts


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    point: float
    level: float = 0.95


@dataclass(frozen=True)
class PairedComparison:
    """a minus b on the same questions."""

    difference: float
    interval: Interval
    p_value: float
    n: int


@dataclass(frozen=True)
class McNemar:
    both_right: int
    a_only: int  # a right, b wrong
    b_only: int  # b right, a wrong
    both_wrong: int
    statistic: float  # min(a_only, b_only) when exact, else the corrected chi-square
    p_value: float
    exact: bool


@dataclass(frozen=True)
class ModelRank:
    model: str
    average: float  # plain mean of task means
    rank: int  # 1 = best; tied averages share the best rank
    low: int  # rank interval bounds (best and worst plausible rank)
    high: int
    p_vs_leader: float  # paired bootstrap p-value of the difference with the leader (1 for it)


@dataclass(frozen=True)
class RankIntervals:
    ranks: tuple[ModelRank, ...]  # by rank, then name
    leader: str
    indistinguishable: frozenset[str]  # models not told apart from the leader, leader included
    level: float
    alpha: float


def _as_array(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty sequence of numbers")
    return array


def _task_rng(seed: int, task: str) -> np.random.Generator:
    # Python's hash() of a str changes between processes; blake2b does not.
    key = int.from_bytes(hashlib.blake2b(task.encode("utf-8"), digest_size=8).digest(), "big")
    return np.random.default_rng([seed, key])


def _resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Chunks of bootstrap resamples as counts: row b says how often each question is drawn."""
    uniform = np.full(n, 1.0 / n)
    done = 0
    while done < n_resamples:
        size = min(_CHUNK, n_resamples - done)
        yield rng.multinomial(n, uniform, size=size).astype(float)
        done += size


def _resampled_means(rng: np.random.Generator, columns: np.ndarray, n_resamples: int) -> np.ndarray:
    """Means of each column of `columns` (questions x k) over resamples: (n_resamples x k)."""
    n = columns.shape[0]
    return np.vstack([c @ columns / n for c in _resample_counts(rng, n, n_resamples)])


def _bounds(draws: np.ndarray, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _check(n_resamples: int, level: float) -> None:
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")


def _shift_p_value(point: float, draws: np.ndarray) -> float:
    """Two-sided bootstrap p-value of point == 0, from draws shifted to the null."""
    extreme = int(np.sum(np.abs(draws - point) >= abs(point)))
    return (1 + extreme) / (draws.size + 1)


def _p_value(point: float, draws: np.ndarray, differences: Sequence[np.ndarray]) -> float:
    """The shifted bootstrap's p-value, unless no resample can differ from another: when every
    question of each task differs by the same amount (a run of one question, or one model right
    exactly where the other is wrong) the draws have no spread and the bootstrap said 1/(R+1)
    whatever the number of questions (one question: p = 0.001). Then the exact sign test on
    the questions that differ answers (2 x 2^-n when all n differ the same way)."""
    if any(np.ptp(d) > 0 for d in differences if d.size):
        return _shift_p_value(point, draws)
    pooled = np.concatenate(differences)
    nonzero = pooled[pooled != 0]
    return _binomial_two_sided(int(np.sum(nonzero > 0)), int(nonzero.size)) if nonzero.size else 1.0


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Percentile bootstrap interval of the mean of per-question values."""
    _check(n_resamples, level)
    array = _as_array(values, "values")
    draws = _resampled_means(np.random.default_rng(seed), array[:, None], n_resamples)[:, 0]
    low, high = _bounds(draws, level)
    return Interval(low, high, float(array.mean()), level)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion (analytic; good for small n and extreme p)."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes}/{n}")
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # the bounds are exactly 0 and 1 at the extremes; rounding would say otherwise
    low = 0.0 if successes == 0 else center - half
    high = 1.0 if successes == n else center + half
    return Interval(low, high, p, level)


def normal_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean +- z * standard error (sample standard deviation over sqrt(n))."""
    array = _as_array(values, "values")
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    half = z * float(array.std(ddof=1)) / math.sqrt(array.size) if array.size > 1 else math.nan
    mean = float(array.mean())
    return Interval(mean - half, mean + half, mean, level)


def _task_arrays(
    per_task: Mapping[str, Mapping[str, Sequence[float]]], models: Sequence[str]
) -> dict[str, np.ndarray]:
    """task -> (questions x models) matrix; every model must answer the same questions."""
    tasks = list(per_task[models[0]])
    if not tasks:
        raise ValueError("no tasks to rank on")
    matrices = {}
    for task in tasks:
        columns = []
        for model in models:
            if set(per_task[model]) != set(tasks):
                raise ValueError(
                    f"model '{model}' has tasks {sorted(per_task[model])}, expected {sorted(tasks)}"
                )
            columns.append(_as_array(per_task[model][task], f"{model}/{task}"))
        lengths = {c.size for c in columns}
        if len(lengths) != 1:
            raise ValueError(
                f"task '{task}': models answered different numbers of questions "
                f"({sorted(lengths)}); rank intervals need the same items"
            )
        matrices[task] = np.column_stack(columns)
    return matrices


def _average_draws(matrices: Mapping[str, np.ndarray], n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples x models) plain means of task means, tasks resampled independently."""
    total = sum(_resampled_means(_task_rng(seed, t), m, n_resamples) for t, m in matrices.items())
    return np.asarray(total) / len(matrices)


def average_ci(
    per_task_values: Mapping[str, Sequence[float]],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Interval of the plain mean of task means; questions resampled within each task."""
    _check(n_resamples, level)
    if not per_task_values:
        raise ValueError("no tasks given")
    matrices = {task: _as_array(values, task)[:, None] for task, values in per_task_values.items()}
    draws = _average_draws(matrices, n_resamples, seed)[:, 0]
    point = sum(float(m.mean()) for m in matrices.values()) / len(matrices)
    low, high = _bounds(draws, level)
    return Interval(low, high, point, level)


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    if len(a) != len(b):
        raise ValueError(
            f"paired comparison needs the same questions in the same order: "
            f"got {len(a)} and {len(b)} values"
        )
    return _as_array(a, "a"), _as_array(b, "b")


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedComparison:
    """Mean of a - b over the same questions, its percentile interval and a two-sided p-value."""
    _check(n_resamples, level)
    left, right = _paired(a, b)
    differences = left - right
    draws = _resampled_means(np.random.default_rng(seed), differences[:, None], n_resamples)[:, 0]
    point = float(differences.mean())
    low, high = _bounds(draws, level)
    return PairedComparison(
        difference=point,
        interval=Interval(low, high, point, level),
        p_value=_p_value(point, draws, [differences]),
        n=int(differences.size),
    )


def _binomial_two_sided(k: int, n: int) -> float:
    """P(X <= min(k, n-k)) * 2 for X ~ Binomial(n, 1/2), capped at 1."""
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


def mcnemar(a: Sequence[float], b: Sequence[float]) -> McNemar:
    """McNemar's test on the paired 0/1 correctness of two models on the same questions."""
    left, right = _paired(a, b)
    if not (np.isin(left, (0.0, 1.0)).all() and np.isin(right, (0.0, 1.0)).all()):
        raise ValueError("McNemar's test needs 0/1 correctness values")
    a_right, b_right = left == 1.0, right == 1.0
    both_right = int(np.sum(a_right & b_right))
    a_only = int(np.sum(a_right & ~b_right))
    b_only = int(np.sum(~a_right & b_right))
    both_wrong = int(np.sum(~a_right & ~b_right))
    discordant = a_only + b_only
    if discordant < EXACT_BELOW:
        statistic = float(min(a_only, b_only))
        p_value = _binomial_two_sided(a_only, discordant) if discordant else 1.0
        exact = True
    else:
        statistic = (abs(a_only - b_only) - 1) ** 2 / discordant
        p_value = math.erfc(math.sqrt(statistic / 2))  # chi-square, 1 df, upper tail
        exact = False
    return McNemar(both_right, a_only, b_only, both_wrong, statistic, p_value, exact)


def _competition_ranks(averages: np.ndarray) -> np.ndarray:
    """Rank of each column in each row: 1 = highest, equal values share the best rank (1, 1, 3)."""
    ascending = np.sort(averages, axis=1)
    at_most = [
        np.searchsorted(s, row, side="right") for s, row in zip(ascending, averages, strict=True)
    ]
    return 1 + averages.shape[1] - np.asarray(at_most)


def rank_intervals(
    models: Mapping[str, Mapping[str, Sequence[float]]],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
) -> RankIntervals:
    """Ranks by the plain mean of task means, with bootstrap rank intervals.

    `models` maps model -> task -> per-question values, every model on the same questions in the
    same order. Within a task every model is scored on the same resampled questions, so the
    ranks reflect differences between models, not between draws. The leader is the model with
    the best average (ties: first by name); a model is indistinguishable from it when the paired
    bootstrap p-value of their difference in average is at least `alpha`.
    """
    _check(n_resamples, level)
    if not models:
        raise ValueError("no models to rank")
    names = list(models)
    matrices = _task_arrays(models, names)
    averages = sum(m.mean(axis=0) for m in matrices.values()) / len(matrices)
    draws = _average_draws(matrices, n_resamples, seed)  # (resamples x models)
    point_ranks = _competition_ranks(averages[None, :])[0]
    draw_ranks = _competition_ranks(draws)
    leader = min(range(len(names)), key=lambda i: (-averages[i], names[i]))
    tail = (1 - level) / 2
    ranks = []
    for i, name in enumerate(names):
        low, high = np.quantile(draw_ranks[:, i], [tail, 1 - tail], method="inverted_cdf")
        difference = float(averages[leader] - averages[i])
        per_task = [m[:, leader] - m[:, i] for m in matrices.values()]
        p = 1.0 if i == leader else _p_value(difference, draws[:, leader] - draws[:, i], per_task)
        ranks.append(
            ModelRank(name, float(averages[i]), int(point_ranks[i]), int(low), int(high), p)
        )
    ranks.sort(key=lambda r: (r.rank, r.model))
    return RankIntervals(
        ranks=tuple(ranks),
        leader=names[leader],
        indistinguishable=frozenset(r.model for r in ranks if r.p_vs_leader >= alpha),
        level=level,
        alpha=alpha,
    )
