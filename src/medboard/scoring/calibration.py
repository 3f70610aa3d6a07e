"""Calibration: does a model's confidence in its answer match how often it is right?

A medical model that is 95% sure and right 60% of the time is more dangerous than its accuracy
says. These functions read the per-choice log-likelihoods already stored in samples.jsonl, so
calibration costs no extra model call.

Choices made here, and why:
- Choice probabilities are the softmax of the choices' log-likelihoods: probabilities renormalized
  over the offered choices only (the model may put mass on other continuations). For letter
  choices this is the usual multiple-choice confidence; for text choices (HEAD-QA) longer texts
  are less likely, so their confidences mix length with belief.
- Confidence is the top probability and a question counts as correct when the top choice is gold
  (ties go to the first choice, as the accuracy does: medboard.scoring.choice.argmax).
- Expected calibration error (Guo et al. 2017): equal-width bins on [0, 1], each bin [lo, hi)
  except the last [0.9, 1.0]; ECE = sum over bins of (count / n) * |accuracy - mean confidence|.
  Equal-width bins keep the reliability diagram readable; the price is that bins below 1/k (k
  choices) are always empty.
- Brier score: the multi-class one, mean over questions of sum over choices of (p - onehot)^2, in
  [0, 2]. The binary top-label variant, mean of (confidence - correct)^2 in [0, 1], is offered as
  `top_label_brier`; it scores only the answer the model gave.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medboard.scoring.choice import argmax


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_confidence: float | None  # None for an empty bin
    accuracy: float | None


@dataclass(frozen=True)
class Calibration:
    ece: float
    brier: float  # multi-class
    top_label_brier: float
    accuracy: float
    mean_confidence: float
    n: int
    bins: tuple[ReliabilityBin, ...]


def choice_probabilities(logprobs: Sequence[float]) -> tuple[float, ...]:
    """Softmax over the choices' log-likelihoods (shifted by the max, so it never overflows)."""
    if not logprobs:
        raise ValueError("no log-likelihoods")
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return tuple(w / total for w in weights)


def _check_lengths(first: Sequence[Any], second: Sequence[Any], what: str) -> None:
    if len(first) != len(second):
        raise ValueError(f"{len(first)} {what} for {len(second)} questions")
    if not first:
        raise ValueError("no questions")


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool | float], n_bins: int = 10
) -> tuple[ReliabilityBin, ...]:
    """Equal-width bins on [0, 1]: count, mean confidence and accuracy of each."""
    _check_lengths(confidences, correct, "confidences")
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    members: list[list[tuple[float, float]]] = [[] for _ in range(n_bins)]
    for confidence, right in zip(confidences, correct, strict=True):
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence {confidence} is not a probability")
        index = min(int(confidence * n_bins), n_bins - 1)  # 1.0 goes to the last bin
        members[index].append((confidence, float(right)))
    bins = []
    for i, content in enumerate(members):
        count = len(content)
        bins.append(
            ReliabilityBin(
                low=i / n_bins,
                high=(i + 1) / n_bins,
                count=count,
                mean_confidence=sum(c for c, _ in content) / count if count else None,
                accuracy=sum(r for _, r in content) / count if count else None,
            )
        )
    return tuple(bins)


def _ece(bins: Sequence[ReliabilityBin]) -> float:
    n = sum(b.count for b in bins)
    return sum(
        b.count / n * abs(b.accuracy - b.mean_confidence)
        for b in bins
        if b.accuracy is not None and b.mean_confidence is not None
    )


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool | float], n_bins: int = 10
) -> float:
    """Sum over equal-width bins of (bin count / n) * |bin accuracy - bin mean confidence|."""
    return _ece(reliability_bins(confidences, correct, n_bins))


def brier_score(probabilities: Sequence[Sequence[float]], gold: Sequence[int]) -> float:
    """Multi-class Brier score: mean over questions of sum over choices of (p - onehot)^2."""
    _check_lengths(probabilities, gold, "probability vectors")
    total = 0.0
    for probs, target in zip(probabilities, gold, strict=True):
        if not 0 <= target < len(probs):
            raise ValueError(f"gold index {target} outside {len(probs)} choices")
        total += sum((p - (i == target)) ** 2 for i, p in enumerate(probs))
    return total / len(gold)


def top_label_brier(confidences: Sequence[float], correct: Sequence[bool | float]) -> float:
    """Binary Brier score of the answer given: mean of (confidence - correct)^2."""
    _check_lengths(confidences, correct, "confidences")
    pairs = zip(confidences, correct, strict=True)
    return sum((c - float(r)) ** 2 for c, r in pairs) / len(confidences)


def calibration(records: Iterable[Mapping[str, Any]], n_bins: int = 10) -> Calibration:
    """Calibration of one run from its sample records (samples.jsonl: `logprobs`, `gold`)."""
    probabilities: list[tuple[float, ...]] = []
    gold: list[int] = []
    correct: list[bool] = []
    for record in records:
        probabilities.append(choice_probabilities(record["logprobs"]))
        gold.append(int(record["gold"]))
        # argmax of the log-likelihoods themselves: the prediction the accuracy counted
        correct.append(argmax(record["logprobs"]) == gold[-1])
    if not probabilities:
        raise ValueError("no sample records")
    confidences = [max(p) for p in probabilities]
    bins = reliability_bins(confidences, correct, n_bins)
    n = len(gold)
    return Calibration(
        ece=_ece(bins),
        brier=brier_score(probabilities, gold),
        top_label_brier=top_label_brier(confidences, correct),
        accuracy=sum(correct) / n,
        mean_confidence=sum(confidences) / n,
        n=n,
        bins=bins,
    )
