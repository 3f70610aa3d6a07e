"""Metrics as objects: a per-sample value, an aggregation, a direction and a standard error."""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float:
    """Sample standard deviation over sqrt(n), as lm-evaluation-harness reports it."""
    n = len(values)
    if n < 2:
        return float("nan")
    mu = mean(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


@dataclass(frozen=True)
class Metric:
    name: str
    aggregate: Callable[[Sequence[float]], float] = mean
    stderr: Callable[[Sequence[float]], float] = mean_stderr
    higher_is_better: bool = True


METRICS = {
    "acc": Metric("acc"),
    "acc_norm": Metric("acc_norm"),
    # generative protocols: the share of answers from which no option could be read
    "unparsed": Metric("unparsed", higher_is_better=False),
}
